"""Exported encoders: an ONNX graph run by onnxruntime, with no torch at all.

An exported encoder is a folder (inside an exported model folder) of three files:

- ``encoder.onnx``: the graph, items' model inputs in, the embedding out;
- ``encoder.json``: what the runtime needs around it (:data:`CONFIG_FILE`): the
  modality, the graph's input names, the embedding size, and for text the
  tokenizer settings (``max_seq_length``, special tokens, padding), for images
  the preprocessing steps (resize, centre crop, scale, normalise) that timm's
  eval transform runs, replayed here with PIL and numpy;
- ``tokenizer.json`` (text): the model's tokenizer, read by the ``tokenizers`` library.

:func:`fewshot.export.export_model` writes them; :func:`load_onnx_encoder` reads them.
The encoder's id hashes the three files, so a replaced graph never matches the model.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._progress import progress
from fewshot.encoders.base import Encoder
from fewshot.errors import ImageReadError, ModelError, UsageError

__all__ = ["CONFIG_FILE", "GRAPH_FILE", "ONNX_FILES", "TOKENIZER_FILE", "OnnxEncoder",
           "OnnxImageEncoder", "OnnxTextEncoder", "load_onnx_encoder"]

GRAPH_FILE = "encoder.onnx"
CONFIG_FILE = "encoder.json"
TOKENIZER_FILE = "tokenizer.json"
#: Every file an exported encoder may have.
ONNX_FILES = (GRAPH_FILE, CONFIG_FILE, TOKENIZER_FILE)
#: PIL's resampling filters by the names torchvision gives its interpolation modes.
_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
_REEXPORT = "export the model again with fewshot export"


def read_onnx_config(folder: str | Path) -> dict[str, Any]:
    """``encoder.json`` of an exported encoder folder, checked for the runtime's keys."""
    file = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError:
        raise ModelError(f"{Path(folder)} is incomplete (missing {CONFIG_FILE}); "
                         f"{_REEXPORT}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{file} is corrupt ({e}); {_REEXPORT}") from e
    missing = [k for k in ("modality", "inputs", "dim") if not isinstance(config, dict)
               or k not in config]
    if missing:
        raise ModelError(f"{file} is corrupt (missing {', '.join(missing)}); {_REEXPORT}")
    return dict(config)


def load_onnx_encoder(folder: str | Path, **kwargs: Any) -> OnnxEncoder:
    """The exported encoder in ``folder`` (an exported model folder), for its modality."""
    modality = read_onnx_config(folder)["modality"]
    cls = {"text": OnnxTextEncoder, "image": OnnxImageEncoder}.get(modality)
    if cls is None:
        raise ModelError(f"{Path(folder) / CONFIG_FILE} names modality {modality!r}, which "
                         "this fewshot does not know; upgrade fewshot")
    return cls(str(folder), **kwargs)


class OnnxEncoder(Encoder):
    """An exported encoder: ``model`` is the folder holding its files.

    ``device``: ``None``, ``"auto"`` or ``"cpu"`` run on the CPU; ``"cuda"`` uses
    onnxruntime's CUDA provider when the installed onnxruntime has it.
    ``threads`` sets onnxruntime's intra-op threads (default: its own choice, the
    physical cores).
    """

    _LIBRARIES = ("onnxruntime", "tokenizers", "pillow")
    _RUNTIME_PARAMS = frozenset({"batch_size", "show_progress", "threads"})
    #: Set by the exporter, kept by the model folder: how the export was made and checked.
    export_record: dict[str, Any] | None = None

    def __init__(
        self,
        model: Any,
        *,
        device: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        show_progress: bool | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(model, device=device, normalize=normalize, batch_size=batch_size,
                         show_progress=show_progress)
        self.threads = threads

    @property
    def folder(self) -> Path:
        return Path(str(self.model))

    @property
    def config(self) -> dict[str, Any]:
        if not hasattr(self, "config_"):
            self.config_ = read_onnx_config(self.folder)
        return self.config_

    @property
    def name(self) -> str:
        """The name of the encoder the graph was exported from."""
        return str(self.config.get("source", {}).get("name") or self.folder)

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def files(self) -> list[Path]:
        """The exported encoder's files, for a model folder to copy."""
        return [self.folder / f for f in ONNX_FILES if (self.folder / f).is_file()]

    def _load(self) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        graph = self.folder / GRAPH_FILE
        if not graph.is_file():
            raise ModelError(f"{self.folder} is incomplete (missing {GRAPH_FILE}); {_REEXPORT}")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        options.log_severity_level = 3  # onnxruntime's warnings are about its own graph rewrites
        try:
            session = ort.InferenceSession(str(graph), options, providers=self._providers(ort))
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{graph} does not load in onnxruntime "
                             f"({str(e).strip().splitlines()[0][:200]}); {_REEXPORT}") from e
        names = [i.name for i in session.get_inputs()]
        if names != list(self.config["inputs"]):
            raise ModelError(f"{graph} takes inputs {names}, but {CONFIG_FILE} says "
                             f"{self.config['inputs']}; {_REEXPORT}")
        self.model_ = session
        self.name_ = self.name
        self.device_ = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        self.dim_ = self.dim

    def _providers(self, ort: Any) -> list[str]:
        device = str(self.device or "auto")
        if device in ("auto", "cpu"):
            return ["CPUExecutionProvider"]
        if device.split(":")[0] == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UsageError(f"device '{device}' needs onnxruntime with CUDA "
                                 "(pip install onnxruntime-gpu); use --device cpu")
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        raise UsageError(f"an exported model runs on cpu or cuda, not '{device}'; use "
                         "--device cpu")

    def _identity(self) -> dict[str, Any]:
        return {"kind": "onnx"}

    def _compute_id(self) -> str:
        """Hash of the files and ``normalize``: no session is needed to know the id."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps({"modality": self.modality, "normalize": bool(self.normalize),
                             "kind": "onnx"}, sort_keys=True).encode())
        for file in self.files():
            h.update(f"{file.name}\n".encode())
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        return f"{self.modality}-onnx-{h.hexdigest()}"

    def fingerprint(self) -> str | None:
        """File names, sizes, inodes and times of the exported files (no reading)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([type(self).__name__, str(self.folder.resolve()),
                             bool(self.normalize), "onnx"]).encode())
        for p in self.files():
            st = p.stat()
            h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}\n"
                     .encode())
        return h.hexdigest()

    def reference(self) -> dict[str, Any]:
        ref = {"modality": self.modality, "name": self.name, "id": self.id,
               "normalize": bool(self.normalize), "format": "onnx",
               "files": [p.name for p in self.files()],
               "quantize": self.config.get("quantize"),
               "source_id": self.config.get("source", {}).get("id")}
        if self.export_record:
            ref["export"] = self.export_record
        return ref

    def loaded_copy(self) -> Encoder:
        raise UsageError("an exported (ONNX) encoder cannot be tuned; tune the original "
                         "model and export it again")

    def training_module(self) -> Any:
        return self.loaded_copy()

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self.model_.run(None, feeds)[0]
        return np.asarray(out, dtype=np.float32)


class OnnxTextEncoder(OnnxEncoder):
    """Texts through ``tokenizer.json`` (the ``tokenizers`` library) and the ONNX graph,
    cut to the model's ``max_seq_length`` tokens and padded per batch, as
    sentence-transformers does."""

    modality = "text"

    def _load(self) -> None:
        super()._load()
        from tokenizers import Tokenizer

        file = self.folder / TOKENIZER_FILE
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises plain Exceptions
            raise ModelError(f"{file} does not load ({str(e)[:200]}); {_REEXPORT}") from e
        tok.no_padding()
        limit = self.config.get("max_seq_length")
        if limit is not None:
            tok.enable_truncation(int(limit))
        self.tokenizer_ = tok

    def item_key(self, item: Any) -> bytes:
        return hashlib.blake2b(str(item).encode("utf-8"), digest_size=16).digest()

    def check_items(self, items: Sequence[Any]) -> None:
        from fewshot.encoders.text import TextEncoder

        TextEncoder.check_items(self, items)  # type: ignore[arg-type]  # borrows the checks

    def _tokenize(self, texts: list[str]) -> list[Any]:
        return list(self.tokenizer_.encode_batch(
            texts, add_special_tokens=bool(self.config.get("add_special_tokens", True))))

    def warn_inputs(self, items: Sequence[Any]) -> None:
        """Warn (once per call) about texts cut to the model's length."""
        self._ensure_loaded()
        limit = self.config.get("max_seq_length")
        if limit is None:
            return
        texts = [str(t) for t in items]
        cut = sum(1 for e in self._tokenize(texts) if e.overflowing)
        if cut:
            warnings.warn(
                f"{cut} of {len(texts)} texts are longer than the model's {limit} tokens and "
                "were cut (an exported model reads the first tokens only)", stacklevel=3)

    def _encode(
        self, items: Sequence[Any], batch_size: int, show_progress: bool | None
    ) -> np.ndarray:
        texts = [str(t) for t in items]
        if not self._inputs_warned:
            self.warn_inputs(texts)
        cfg = self.config
        inputs = list(cfg["inputs"])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers batches: little padding per batch.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with progress("Embedding texts", len(texts), show_progress) as advance:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                feeds = text_feeds(self._tokenize([texts[i] for i in idx]), cfg)
                emb = self._run({k: feeds[k] for k in inputs})
                truncate_dim = cfg.get("truncate_dim")
                out[idx] = emb[:, : int(truncate_dim)] if truncate_dim else emb
                advance(len(idx))
        return out


def text_feeds(encodings: Sequence[Any], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64) of a batch of
    ``tokenizers`` encodings, padded to the longest on the side the model pads."""
    pad_id = int(config.get("pad_id", 0))
    left = config.get("padding_side") == "left"
    width = max(1, max((len(e.ids) for e in encodings), default=1))
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros((len(encodings), width), dtype=np.int64)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = e.ids
        mask[row, span] = 1
        types[row, span] = e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class OnnxImageEncoder(OnnxEncoder):
    """Images decoded with PIL, preprocessed with numpy as the recorded timm eval
    transform does (resize the short side, centre crop, scale to [0, 1], normalise),
    then the ONNX graph."""

    modality = "image"

    def item_key(self, item: Any) -> bytes:
        from fewshot.encoders.image import ImageEncoder

        return ImageEncoder.item_key(self, item)  # type: ignore[arg-type]  # same keys

    def _encode(
        self, items: Sequence[Any], batch_size: int, show_progress: bool | None
    ) -> np.ndarray:
        from fewshot.encoders.image import _decode

        out = np.empty((len(items), self.dim), dtype=np.float32)
        steps = self.config["preprocess"]
        name = self.config["inputs"][0]
        with progress("Embedding images", len(items), show_progress) as advance:
            for start in range(0, len(items), batch_size):
                batch = []
                for item in items[start : start + batch_size]:
                    img, error = _decode(item)
                    if error is not None:
                        raise ImageReadError(*error)
                    batch.append(preprocess_image(img, steps))
                out[start : start + len(batch)] = self._run({name: np.stack(batch)})
                advance(len(batch))
        return out


def preprocess_image(img: Any, steps: list[dict[str, Any]]) -> np.ndarray:
    """A PIL RGB image through the recorded steps, as a float32 ``(3, H, W)`` array.

    The steps are torchvision's, computed as torchvision computes them on PIL images:
    ``resize`` (an int: the short side, the long side ``int(size * long / short)``;
    a pair: height and width), ``center_crop`` (offsets rounded, zero padding when the
    image is smaller), ``to_float`` (``/ 255``, channels first) and ``normalize``.
    """
    arr: np.ndarray | None = None
    for step in steps:
        op = step["op"]
        if op == "resize":
            size, (w, h) = step["size"], img.size
            if isinstance(size, int):
                short, long = (w, h) if w <= h else (h, w)
                new_short, new_long = size, int(size * long / short)
                new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            else:
                new_h, new_w = size
            if (new_w, new_h) != (w, h):
                img = img.resize((new_w, new_h), _RESAMPLE[step["interpolation"]])
        elif op == "center_crop":
            ch, cw = step["size"]
            w, h = img.size
            if cw > w or ch > h:
                from PIL import Image

                padded = Image.new(img.mode, (max(w, cw), max(h, ch)))
                padded.paste(img, ((cw - w + 1) // 2 if cw > w else 0,
                                   (ch - h + 1) // 2 if ch > h else 0))
                img = padded
                w, h = img.size
            top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
            img = img.crop((left, top, left + cw, top + ch))
        elif op == "to_float":
            arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
        elif op == "normalize":
            if arr is None:
                raise ModelError("normalize before to_float in the preprocessing steps; "
                                 f"{_REEXPORT}")
            mean = np.asarray(step["mean"], dtype=np.float32)[:, None, None]
            std = np.asarray(step["std"], dtype=np.float32)[:, None, None]
            arr = (arr - mean) / std
        else:
            raise ModelError(f"unknown preprocessing step {op!r}; upgrade fewshot")
    if arr is None:
        raise ModelError(f"the preprocessing steps never make an array; {_REEXPORT}")
    return np.ascontiguousarray(arr, dtype=np.float32)
