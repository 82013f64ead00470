"""Text encoder: any sentence-transformers model, by hub id or local folder."""

from __future__ import annotations

import hashlib
import json
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._progress import progress, quiet_library_bars
from fewshot.encoders.base import Encoder, require_torch, resolve_device
from fewshot.encoders.resolve import (
    DEFAULT_TEXT_ENCODER,
    check_hub,
    hub_failure,
    local_failure,
    resolve_text_model,
)

__all__ = ["TextEncoder"]

# Texts handed to SentenceTransformer.encode per call: large enough that its own
# length-sorted batching works as usual, small enough for a live progress bar.
_CHUNK_BATCHES = 32
#: Tokens shared by consecutive windows of a text embedded with long_texts="chunk".
CHUNK_OVERLAP = 32
#: Models trained on English text alone (lower-cased last part of the name): input
#: mostly in other scripts gets a warning naming a multilingual model.
ENGLISH_ONLY = frozenset({"all-minilm-l6-v2", "all-minilm-l12-v2", "all-mpnet-base-v2",
                          "all-distilroberta-v1", "paraphrase-minilm-l6-v2"})
MULTILINGUAL_TEXT_ENCODER = "paraphrase-multilingual-MiniLM-L12-v2"


def _module_config(module: Any) -> dict[str, Any]:
    """A sentence-transformers module's saved config (what ``save_config`` writes)."""
    get = getattr(module, "get_config_dict", None)
    return get() if callable(get) else {}


class TextEncoder(Encoder):
    """Embed texts with a sentence-transformers model.

    ``model`` is a name (``"all-MiniLM-L6-v2"``, ``"org/model"``), a local folder,
    or a loaded ``SentenceTransformer``. Names resolve offline first (see
    :mod:`fewshot.encoders.resolve`).

    A text longer than the model's ``max_seq_length`` tokens is cut there (with a
    warning) when ``long_texts="truncate"``; with ``"chunk"`` it is split into windows
    of that length overlapping by ``CHUNK_OVERLAP`` tokens (at most half a window), and
    the windows' embeddings are averaged.

    >>> enc = TextEncoder("all-MiniLM-L6-v2")          # doctest: +SKIP
    >>> enc.encode(["a great film", "dull"]).shape     # doctest: +SKIP
    (2, 384)
    """

    modality = "text"

    def __init__(
        self,
        model: Any = DEFAULT_TEXT_ENCODER,
        *,
        device: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        show_progress: bool | None = None,
        long_texts: str = "truncate",
    ) -> None:
        super().__init__(
            model, device=device, normalize=normalize, batch_size=batch_size,
            show_progress=show_progress,
        )
        self.long_texts = long_texts

    _OUTPUT_PARAMS = frozenset({"normalize", "long_texts"})
    _LIBRARIES = ("torch", "transformers", "tokenizers", "sentence-transformers")

    def _load(self) -> None:
        require_torch(f"the text encoder {self.model if isinstance(self.model, str) else ''}"
                      .rstrip(), ("torch", "sentence_transformers"))
        from sentence_transformers import SentenceTransformer

        device = resolve_device(self.device)
        if isinstance(self.model, SentenceTransformer):
            st = self.model.to(device)
            name = getattr(st, "model_card_data", None)
            name = getattr(name, "base_model", None) or "in-memory-sentence-transformer"
        else:
            name = str(self.model)
            resolved = resolve_text_model(name)
            check_hub("text", resolved)
            try:
                with quiet_library_bars(self.show_progress):
                    st = SentenceTransformer(
                        resolved.location, device=device, local_files_only=resolved.is_local
                    )
            except Exception as e:  # hub errors come in many types
                if resolved.is_local:
                    raise local_failure("text", resolved, e) from e
                raise hub_failure("text", resolved, e) from e
            modalities = getattr(st, "modalities", None) or ["text"]
            if "text" not in modalities:  # e.g. a timm image folder, wrapped by transformers
                from fewshot.errors import EncoderNotFoundError

                raise EncoderNotFoundError(
                    f"text encoder '{name}' is a model for {', '.join(map(str, modalities))}, "
                    "not text; pass a sentence-transformers model with --encoder (or give "
                    "this one image data)"
                )
            self.resolved_ = resolved
        st.eval()
        self.model_ = st
        self.name_ = name
        self.device_ = device
        dim = st.get_embedding_dimension()
        if dim is None:  # no module reports its output size: measure it on one text
            dim = st.encode(["dimension"], convert_to_numpy=True, show_progress_bar=False).shape[-1]
        self.dim_ = int(dim)

    def _resolve(self) -> Any:
        return resolve_text_model(str(self.model))

    def _identity(self) -> dict[str, Any]:
        st = self.model_
        tok = getattr(st, "tokenizer", None)
        # Duck-typed: a tokenizer without to_str (or none at all) is the AttributeError below.
        backend: Any = getattr(tok, "backend_tokenizer", tok)
        try:
            # Truncation/padding are set on the backend at call time: leave them out,
            # or the id would change after the first encode().
            spec = json.loads(backend.to_str())
            spec.pop("truncation", None)
            spec.pop("padding", None)
            tok_id = hashlib.blake2b(
                json.dumps(spec, sort_keys=True).encode(), digest_size=16
            ).hexdigest()
        except (AttributeError, ValueError):
            tok_id = type(tok).__name__
        ident = {
            "kind": "sentence-transformers",
            "modules": [type(m).__name__ for m in st],
            # Settings without weights (the pooling mode, for one): two models with the
            # same weights and different pooling must not share an id or a cache entry.
            "module_configs": [_module_config(m) for m in st],
            "max_seq_length": st.max_seq_length,
            "tokenizer": tok_id,
        }
        # encode() prepends the default prompt and cuts vectors to truncate_dim. Only
        # recorded when set, so the ids of models without them stay as they were.
        prompt_name = getattr(st, "default_prompt_name", None)
        if prompt_name:
            ident["default_prompt"] = _default_prompt(st)
        truncate_dim = getattr(st, "truncate_dim", None)
        if truncate_dim is not None:
            ident["truncate_dim"] = int(truncate_dim)
        if self._chunking():
            ident.update(long_texts="chunk", chunk_overlap=CHUNK_OVERLAP)
        return ident

    def _chunking(self) -> bool:
        """True for ``long_texts="chunk"``; an unknown mode is a UsageError."""
        if self.long_texts not in ("truncate", "chunk"):
            from fewshot.errors import UsageError

            raise UsageError(f"unknown long_texts '{self.long_texts}' (--long-texts); "
                             "use truncate or chunk")
        return bool(self.long_texts == "chunk")

    def item_key(self, item: Any) -> bytes:
        return hashlib.blake2b(str(item).encode("utf-8"), digest_size=16).digest()

    def check_items(self, items: Sequence[Any]) -> None:
        """Texts must be strings: ``None`` or a pandas ``NaN`` would be embedded as "nan"."""
        bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
        if bad is not None:
            from fewshot.errors import DataError

            raise DataError(
                f"item {bad} is {repr(items[bad])[:40]} ({type(items[bad]).__name__}), not "
                "text; give strings only (drop or fill missing values such as None or NaN)"
            )

    def warn_inputs(self, items: Sequence[Any]) -> None:
        """Warn about texts the model reads only in part (cut to its length, unless
        chunking) or in a script it was not trained on: once per call, with counts."""
        self._ensure_loaded()
        texts = [str(t) for t in items]
        self._check_script(texts)
        if not self._chunking() and (cut := len(self._windows(texts))):
            warnings.warn(
                f"{cut} of {len(texts)} texts are longer than the model's "
                f"{self.model_.max_seq_length} tokens and were cut; pass long_texts='chunk' "
                "(--long-texts chunk) to embed the whole text", stacklevel=3)

    def _encode(
        self, items: Sequence[Any], batch_size: int, show_progress: bool | None
    ) -> np.ndarray:
        texts = [str(t) for t in items]
        if not self._inputs_warned:
            self.warn_inputs(texts)
        windows = self._windows(texts) if self._chunking() else {}
        if not windows:
            return self._embed(texts, batch_size, show_progress)
        spans = [windows.get(i, [(0, len(t))]) for i, t in enumerate(texts)]
        owner = np.repeat(np.arange(len(texts)), [len(s) for s in spans])
        pieces = [t[a:b] for t, s in zip(texts, spans, strict=True) for a, b in s]
        out = np.zeros((len(texts), self.dim_), dtype=np.float32)
        np.add.at(out, owner, self._embed(pieces, batch_size, show_progress))
        return out / np.bincount(owner)[:, None]

    def _windows(self, texts: list[str]) -> dict[int, list[tuple[int, int]]]:
        """Character spans of the token windows of each text over the model's limit."""
        st = self.model_
        tok: Any = getattr(st, "tokenizer", None)
        # No limit (StaticEmbedding's is inf), or no tokenizer that gives offsets: cut as is.
        if not isinstance(st.max_seq_length, int) or not getattr(tok, "is_fast", False):
            return {}
        prompt = _default_prompt(st)
        room = st.max_seq_length - tok.num_special_tokens_to_add(pair=False) - (
            len(tok(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0)
        # A token covers at least one byte (a leading SentencePiece mark excepted), so
        # only texts of at least `room` bytes can be too long: only they are tokenized.
        long = [i for i, t in enumerate(texts) if len(t.encode()) >= room]
        if not long:
            return {}
        offsets = tok([texts[i] for i in long], add_special_tokens=False, truncation=False,
                      return_offsets_mapping=True, verbose=False)["offset_mapping"]
        step = room - min(CHUNK_OVERLAP, room // 2)
        return {
            i: [(off[s][0], off[min(s + room, len(off)) - 1][1])
                for s in range(0, len(off) - room + step, step)]
            for i, off in zip(long, offsets, strict=True) if len(off) > room
        }

    def _check_script(self, texts: list[str]) -> None:
        """Warn when most letters of (up to 200) texts are outside Latin script and the
        model is known to be English-only."""
        name = Path(str(self.model)).name if isinstance(self.model, str) else ""
        if name.lower() not in ENGLISH_ONLY:
            return
        scripts: Counter[str] = Counter(
            unicodedata.name(ch, "?").split(" ")[0]
            for t in texts[:: max(1, len(texts) // 200)][:200] for ch in t[:500] if ch.isalpha()
        )
        letters = sum(scripts.values())
        other = letters - scripts.pop("LATIN", 0)
        if other > letters / 2:
            names = ", ".join("Han" if s == "CJK" else s.title() for s, _ in scripts.most_common(3))
            warnings.warn(
                f"{other / letters:.0%} of the text is in non-Latin scripts ({names}), but {name} "
                "was trained on English; pass a multilingual encoder such as "
                f"{MULTILINGUAL_TEXT_ENCODER} (--encoder {MULTILINGUAL_TEXT_ENCODER})",
                stacklevel=4)

    def _embed(self, texts: list[str], batch_size: int, show_progress: bool | None) -> np.ndarray:
        out = np.empty((len(texts), self.dim_), dtype=np.float32)
        chunk = batch_size * _CHUNK_BATCHES
        with progress("Embedding texts", len(texts), show_progress) as advance:
            for start in range(0, len(texts), chunk):
                part = texts[start : start + chunk]
                out[start : start + len(part)] = self.model_.encode(
                    part,
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
                advance(len(part))
        return out

    # -- training hooks -------------------------------------------------------------
    def training_items(self, items: Sequence[Any], *, train_layers: int | None = None
                       ) -> list[Any]:
        """Texts; with ``train_layers``, each text's tokens and the output of the layers
        below the top ``train_layers``, computed once here (eval mode, no gradients) so
        that training steps run the top layers alone."""
        texts = [str(t) for t in items]
        if train_layers is None:
            return texts
        return self._cache_lower_layers(texts, int(train_layers))

    #: Texts per forward pass inside a training batch (grouped by length).
    _TRAIN_CHUNK = 8

    def _tokenizer_fn(self) -> Any:
        """Texts -> model inputs, with the prompt encode() puts in front."""
        st = self.model_
        prompt = _default_prompt(st)
        preprocess = getattr(st, "preprocess", None)  # sentence-transformers >= 6
        if preprocess is not None:
            def prepare(texts: list[str]) -> Any:
                return preprocess(texts, prompt=prompt) if prompt else preprocess(texts)
        else:  # sentence-transformers < 6 tokenizes, and encode() prepends the prompt as text
            def prepare(texts: list[str]) -> Any:
                return st.tokenize([prompt + t for t in texts] if prompt else texts)
        return prepare

    def training_batch(self, items: Sequence[Any], *, augment: bool = False) -> Any:
        """Length-sorted chunks of the batch, so short texts are not padded to the longest."""
        import torch

        if items and isinstance(items[0], _CachedText):
            return _cached_batch(list(items), self._TRAIN_CHUNK)
        prepare = self._tokenizer_fn()
        texts = list(items)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = []
        for start in range(0, len(order), self._TRAIN_CHUNK):
            part = [texts[i] for i in order[start : start + self._TRAIN_CHUNK]]
            chunks.append({
                k: v.to(self.device_) if isinstance(v, torch.Tensor) else v
                for k, v in prepare(part).items()
            })
        return {"chunks": chunks, "order": order}

    def training_forward(self, batch: Any) -> Any:
        import torch

        cut = batch.get("cut")
        if cut is None:
            emb = torch.cat([self.model_(f)["sentence_embedding"] for f in batch["chunks"]])
        else:
            with self._replaying(cut) as replay:
                parts = []
                for chunk in batch["chunks"]:
                    replay.hidden = chunk["hidden"]
                    features = {k: v for k, v in chunk.items() if k != "hidden"}
                    parts.append(self.model_(features)["sentence_embedding"])
            emb = torch.cat(parts)
        truncate_dim = getattr(self.model_, "truncate_dim", None)
        if truncate_dim is not None:  # as encode() cuts its vectors
            emb = emb[:, : int(truncate_dim)]
        inverse = torch.empty(len(batch["order"]), dtype=torch.long, device=emb.device)
        inverse[torch.as_tensor(batch["order"], device=emb.device)] = torch.arange(
            len(batch["order"]), device=emb.device)
        return emb[inverse]

    # -- training the top layers alone ----------------------------------------------
    def training_layers(self) -> int:
        """How many transformer layers the body has (``train_layers`` counts from the top)."""
        self._ensure_loaded()
        return len(self._layer_stack()[2])

    def _layer_stack(self) -> tuple[Any, Any, Any, str]:
        """``(transformers model, owner of the layer list, the list, its attribute name)``
        of a body whose embeddings module feeds a list of layers (BERT, RoBERTa, MPNet,
        DistilBERT, ...); any other body is refused in one line."""
        import torch

        from fewshot.errors import UsageError

        first = self.model_[0] if len(self.model_) else None
        hf = getattr(first, "auto_model", None)
        if hf is not None and isinstance(getattr(hf, "embeddings", None), torch.nn.Module):
            for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
                *parents, attr = path.split(".")
                owner = hf
                for name in parents:
                    owner = getattr(owner, name, None)
                layers = getattr(owner, attr, None) if owner is not None else None
                if isinstance(layers, torch.nn.ModuleList) and len(layers):
                    return hf, owner, layers, attr
        kind = type(hf if hf is not None else first).__name__
        raise UsageError(
            f"train_layers needs a transformer body (an embeddings module feeding a list of "
            f"layers); {self.name_} has a {kind}. Tune it with trainable_fraction instead"
        )

    def _replaying(self, cut: int) -> Any:
        """Context in which the body starts at layer ``cut``: its embeddings module
        returns ``replay.hidden`` (the cached output of the layers below) and only the
        layers from ``cut`` up run."""
        import contextlib

        import torch

        hf, owner, layers, attr = self._layer_stack()

        @contextlib.contextmanager
        def swapped() -> Any:
            replay, embeddings = _replay_module(), hf.embeddings
            hf.embeddings = replay
            setattr(owner, attr, torch.nn.ModuleList(list(layers)[cut:]))
            try:
                yield replay
            finally:
                hf.embeddings = embeddings
                setattr(owner, attr, layers)

        return swapped()

    def _cache_lower_layers(self, texts: list[str], train_layers: int) -> list[Any]:
        import contextlib

        import torch

        from fewshot.errors import UsageError

        self._ensure_loaded()
        hf, _, layers, _ = self._layer_stack()
        if not 1 <= train_layers <= len(layers):
            raise UsageError(f"train_layers must be between 1 and {len(layers)} (the layers "
                             f"of {self.name_}), got {train_layers}")
        cut = len(layers) - train_layers
        captured: dict[str, Any] = {}

        def hook(module: Any, args: Any, output: Any) -> None:
            captured["hidden"] = output[0] if isinstance(output, tuple) else output
            raise _Captured  # the layers above are not needed here

        prepare = self._tokenizer_fn()
        st = self.model_
        cached: list[Any] = [None] * len(texts)
        was_training = st.training
        handle = (layers[cut - 1] if cut else hf.embeddings).register_forward_hook(hook)
        st.eval()
        try:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            with torch.no_grad():
                for start in range(0, len(order), 32):
                    idx = order[start : start + 32]
                    features = {k: v.to(self.device_) if isinstance(v, torch.Tensor) else v
                                for k, v in prepare([texts[i] for i in idx]).items()}
                    mask = features.get("attention_mask")
                    if not isinstance(mask, torch.Tensor):
                        raise UsageError(f"train_layers needs an attention mask from "
                                         f"{self.name_}'s tokenizer; tune it without "
                                         "train_layers")
                    # Per-text features are cut to each text's tokens; the rest
                    # (prompt_length, say) is the same for every text and kept as it is.
                    per_text = {k for k, v in features.items()
                                if isinstance(v, torch.Tensor) and v.shape == mask.shape}
                    shared = {k: v for k, v in features.items() if k not in per_text}
                    if any(isinstance(v, torch.Tensor) for v in shared.values()):
                        raise UsageError(f"train_layers cannot cache {self.name_}'s input "
                                         f"{sorted(shared)}; tune it without train_layers")
                    with contextlib.suppress(_Captured):
                        st[0](dict(features))
                    if "hidden" not in captured:
                        raise UsageError(f"train_layers found no output of layer {cut} in "
                                         f"{self.name_}; tune it with trainable_fraction")
                    hidden, keep_all = captured.pop("hidden"), mask.bool()
                    for row, i in enumerate(idx):
                        keep = keep_all[row]
                        tokens = {k: features[k][row][keep] for k in per_text}
                        cached[i] = _CachedText(tokens, hidden[row][keep].clone(), cut, shared)
        finally:
            handle.remove()
            st.train(was_training)
        self._check_replay(texts[:4], cached[:4])
        return cached

    def _check_replay(self, texts: list[str], cached: list[Any]) -> None:
        """The top layers run on cached outputs must embed as the whole body does: a body
        whose layers take more than the hidden states and a mask is refused here."""
        import torch

        from fewshot.errors import UsageError

        st = self.model_
        was_training = st.training
        st.eval()
        try:
            with torch.no_grad():
                replayed = self.training_forward(self.training_batch(cached))
                whole = self.training_forward(self.training_batch(texts))
        finally:
            st.train(was_training)
        gap = float((replayed - whole).abs().max()) / max(float(whole.abs().max()), 1e-12)
        # Batches of other sizes round differently: more so in half precision.
        tolerance = 1e-4 if whole.dtype == torch.float32 else 2e-2
        if not gap < tolerance:
            raise UsageError(
                f"train_layers cannot split {self.name_} ({type(self._layer_stack()[0]).__name__}"
                f"): its top layers on cached inputs differ from the whole model by {gap:.2g} "
                f"(at most {tolerance:g} allowed); tune it with trainable_fraction instead"
            )


class _Captured(Exception):
    """Raised by the hook that caches the lower layers' output, to stop the forward pass."""


class _CachedText:
    """One training text: its tokens and the output of the frozen layers below ``cut``."""

    __slots__ = ("tokens", "hidden", "cut", "shared")

    def __init__(self, tokens: dict[str, Any], hidden: Any, cut: int,
                 shared: dict[str, Any]) -> None:
        self.tokens, self.hidden, self.cut, self.shared = tokens, hidden, cut, shared


def _replay_module() -> Any:
    import torch

    class Replay(torch.nn.Module):
        """Stands in for the embeddings module: returns the cached hidden states."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden: Any = None

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.hidden

    return Replay()


def _cached_batch(items: list[_CachedText], chunk: int) -> dict[str, Any]:
    """Length-sorted chunks of cached texts, each padded to its longest text."""
    import torch

    order = sorted(range(len(items)), key=lambda i: len(items[i].hidden))
    chunks = []
    for start in range(0, len(order), chunk):
        part = [items[i] for i in order[start : start + chunk]]
        pad = {k: torch.nn.utils.rnn.pad_sequence([p.tokens[k] for p in part], batch_first=True)
               for k in part[0].tokens}
        pad.update(part[0].shared)
        pad["hidden"] = torch.nn.utils.rnn.pad_sequence([p.hidden for p in part],
                                                        batch_first=True)
        chunks.append(pad)
    return {"chunks": chunks, "order": order, "cut": items[0].cut}


def _default_prompt(st: Any) -> str | None:
    """The prompt ``st.encode()`` puts in front of every text when given none."""
    name = getattr(st, "default_prompt_name", None)
    return (getattr(st, "prompts", None) or {}).get(name) if name else None
