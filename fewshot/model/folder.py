"""The model folder: ``fewshot.json`` (manifest) + safetensors files, written atomically.

Loading reads JSON and safetensors only, so it never executes code from the
folder. Every problem is a :class:`~fewshot.errors.ModelError` naming the fix.

An exported model (``fewshot export``) is the same folder with its encoder as
files instead of a name: ``encoder.onnx``, ``encoder.json`` and, for text,
``tokenizer.json`` (see :mod:`fewshot.encoders.onnx`), and its manifest's encoder
says ``"format": "onnx"``. The layout version stays 1: a fewshot that predates
exports loads the PyTorch encoder by name, whose id never matches the exported
one, so it refuses the folder (EncoderMismatchError) rather than predict with it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._version import __version__
from fewshot.encoders.onnx import ONNX_FILES
from fewshot.errors import EncoderMismatchError, EncoderNotFoundError, ModelError, UsageError
from fewshot.model.state import PARTS, RECORDS, FittedModel, UnknownPartError

__all__ = ["FORMAT", "FORMAT_VERSION", "MODEL_FILES", "load_model", "read_manifest",
           "save_model"]

#: Names the layout of the manifest; folders without it predate the layout.
FORMAT = "fewshot-model"
#: Version of the folder layout; loading refuses newer ones.
FORMAT_VERSION = 1
MANIFEST = "fewshot.json"
HEAD_FILE = "head.safetensors"
#: The tuned encoder's changed tensors; only in folders of tuned models.
BODY_FILE = "body.safetensors"
#: Everything a model folder may hold; saving with ``overwrite`` replaces only such folders.
MODEL_FILES = (MANIFEST, HEAD_FILE, BODY_FILE, *ONNX_FILES,
               *(part.file for part in PARTS.values() if part.file))
_RETRAIN = "re-run fewshot train to rebuild the model"


def save_model(model: FittedModel, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` to the folder ``path`` in one atomic step."""
    from safetensors.numpy import save_file

    from fewshot._io import ReplaceRefusedError, atomic_dir, json_default

    path = Path(path)
    head_config, head_arrays = model.head.get_state()
    ref = model.encoder.reference()
    resolved = getattr(model.encoder, "resolved_", None)
    if resolved is not None:
        ref["resolved_from"] = {"source": resolved.source, "location": resolved.location}
    exported = ref.get("format") == "onnx"
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fewshot_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "encoder": ref, "head": head_config,
        "classes": model.classes.tolist(), "class_counts": model.class_counts.tolist(),
        "n_train": int(model.n_train),
    }
    if model.label_descriptions:
        manifest["label_descriptions"] = {str(k): v for k, v in model.label_descriptions.items()}
    manifest.update({name: getattr(model, name) for name in RECORDS if getattr(model, name)})
    files: dict[str, dict[str, np.ndarray]] = {HEAD_FILE: head_arrays}
    for part in model.parts().values():
        manifest[part.key], arrays = part.to_saved()
        if part.file:
            files[part.file] = arrays
    meta = {"format": str(FORMAT_VERSION)}
    try:
        with atomic_dir(path, overwrite=overwrite, replaceable=MODEL_FILES) as tmp:
            for name, arrays in files.items():
                save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                          str(tmp / name), metadata=meta)
            if exported:
                import shutil

                for file in model.encoder.files():
                    shutil.copyfile(file, tmp / file.name)
            elif model.encoder.is_tuned:
                from safetensors.torch import save_file as save_torch

                save_torch(model.encoder.tuned_state(), str(tmp / BODY_FILE), metadata=meta)
            text = json.dumps(manifest, indent=2, default=json_default)
            (tmp / MANIFEST).write_text(text + "\n")
    except ReplaceRefusedError as e:
        raise UsageError(str(e)) from None
    except FileExistsError:
        raise UsageError(
            f"{path} already exists; choose another folder or overwrite it (--force)"
        ) from None
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """``fewshot.json`` of a model folder, checked for completeness and version."""
    if not path.is_dir():
        raise ModelError(f"no model folder at {path}; train one with fewshot train")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(f"{path} is not a fewshot model folder (no {MANIFEST}); point at the "
                         "folder written by fewshot train")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{manifest_path} is corrupt ({e}); {_RETRAIN}") from e
    if not isinstance(manifest, dict):
        raise ModelError(f"{manifest_path} is corrupt (a JSON {type(manifest).__name__}, not "
                         f"an object); {_RETRAIN}")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelError(f"{manifest_path} has no format_version; {_RETRAIN}")
    if manifest.get("format") != FORMAT:
        raise ModelError(
            f"{path} is in the pre-release model layout (format {version}, fewshot "
            f"{manifest.get('fewshot_version', '?')}), which fewshot {__version__} does not "
            f"read; {_RETRAIN}"
        )
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written in model format {version} by a newer fewshot "
            f"({manifest.get('fewshot_version', '?')}); this fewshot {__version__} reads "
            f"format {FORMAT_VERSION}: upgrade fewshot (pip install -U fewshot)"
        )
    missing = [k for k in ("encoder", "head", "classes", "class_counts", "n_train")
               if k not in manifest]
    if missing or not (path / HEAD_FILE).is_file():
        raise ModelError(f"{path} is incomplete (missing {', '.join(missing) or HEAD_FILE}); "
                         f"{_RETRAIN}")
    return manifest


def load_model(
    path: str | Path, *, encoder: Any = None, cache: Any = None, **encoder_options: Any
) -> FittedModel:
    """Read a model folder; checks that the encoder still resolves to the same weights.

    ``encoder`` overrides the saved encoder name (a moved model); its id must
    still match. ``cache`` (an :class:`~fewshot.cache.EmbeddingCache` or None)
    remembers encoder ids, so a warm load need not read the weights.
    ``encoder_options`` (device, batch_size, show_progress) go to the encoder.
    """
    from fewshot.heads import HEADS

    path = Path(path)
    manifest = read_manifest(path)
    head_config = manifest["head"]
    head_cls = HEADS.get(head_config.get("type"))
    if head_cls is None:
        raise ModelError(f"{path} uses head '{head_config.get('type')}', which this fewshot "
                         "does not know; upgrade fewshot")
    head = _from_state(path / HEAD_FILE, head_cls.from_state, head_config,
                       _read_arrays(path / HEAD_FILE))
    n_classes = len(head.classes_)
    counts = _from_state(path / MANIFEST, _class_counts, manifest["class_counts"], n_classes)
    parts = {}
    for name, part in PARTS.items():
        if part.key in manifest:
            file = path / (part.file or MANIFEST)
            arrays = _read_arrays(file) if part.file else {}
            parts[name] = _from_state(file, part.from_saved, manifest[part.key], arrays,
                                      n_classes)
    reports = _from_state(path / MANIFEST, _reports, manifest)
    # A multi-label head's columns are label indices; the names are the manifest's classes.
    names = np.asarray(manifest["classes"]) if getattr(head, "multi_label_", False) else None
    if names is not None and len(names) != n_classes:
        raise ModelError(f"{path / MANIFEST} is corrupt ({len(names)} classes for "
                         f"{n_classes} label columns); {_RETRAIN}")
    return FittedModel(
        encoder=_load_encoder(path, manifest["encoder"], encoder, cache, encoder_options),
        head=head, class_counts=counts, label_names=names, **parts, **reports,
    )


def _class_counts(counts: Any, n_classes: int) -> np.ndarray:
    array = np.asarray(counts, dtype=np.int64)
    if array.shape != (n_classes,) or array.min() <= 0:
        raise ValueError(f"class counts {counts} for {n_classes} classes")
    return array


def _reports(manifest: dict[str, Any]) -> dict[str, Any]:
    """``n_train``, label descriptions and the JSON reports, checked for their types."""
    out = {name: manifest.get(name) for name in (*RECORDS, "label_descriptions")}
    wrong = [name for name, value in out.items() if not isinstance(value, dict | None)]
    if wrong or not isinstance(manifest.get("n_train"), int):
        raise ValueError(f"{', '.join(wrong) or 'n_train'} has the wrong type")
    return {**out, "n_train": manifest["n_train"]}


def _from_state(file: Path, build: Any, *args: Any) -> Any:
    """``build(*args)``, with a broken or unknown saved part as a one-line ModelError."""
    try:
        return build(*args)
    except UnknownPartError as e:
        raise ModelError(f"{file.parent} uses {e}, which this fewshot does not know; "
                         "upgrade fewshot") from e
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{file} is corrupt ({e}); {_RETRAIN}") from e


def _read_arrays(file: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not file.is_file():
        raise ModelError(f"{file.parent} is incomplete (missing {file.name}); {_RETRAIN}")
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise ModelError(f"{file} is corrupt ({e}); {_RETRAIN}") from e


def _load_encoder(
    path: Path, ref: dict[str, Any], given: Any, cache: Any, options: dict[str, Any]
) -> Any:
    """The saved encoder (or ``given``), checked by id; tuned tensors put back in."""
    from fewshot.encoders import Encoder, get_encoder

    if ref.get("format") == "onnx":
        return _load_onnx_encoder(path, ref, given, cache, options)
    if isinstance(given, Encoder):
        enc = get_encoder(given, ref["modality"])
    else:
        name = given
        if name is None:
            name = ref["name"]
            origin = ref.get("resolved_from") or {}
            if origin.get("source") == "path" and Path(origin.get("location", "")).is_dir():
                # A folder saved as a relative path still loads from another directory.
                name = origin["location"]
        if given is None and ref.get("pretrained") is False:
            options = {**options, "pretrained": False}  # rebuilt as it was saved
        # Output settings (normalize, long_texts) come back as saved.
        enc = get_encoder(name, ref["modality"], normalize=bool(ref.get("normalize", True)),
                          **{**options, **ref.get("settings", {})})
    try:
        enc_id = cache.identify(enc) if cache is not None else enc.id
    except EncoderNotFoundError as e:
        if given is not None:  # the caller's own encoder: its error says it all
            raise
        from fewshot.encoders.resolve import recorded_encoder_missing

        location = (ref.get("resolved_from") or {}).get("location")
        raise recorded_encoder_missing(ref["modality"], ref["name"], location, e) from e
    base_id = ref["base_id"] if ref.get("tuned") else ref["id"]
    if enc_id != base_id:
        raise EncoderMismatchError(
            f"encoder '{enc.name}' now has id {enc_id}, but {path} was trained with "
            f"'{ref['name']}' (id {base_id}); pass the original encoder with --encoder"
        )
    if not ref.get("tuned"):
        return enc
    if isinstance(given, Encoder):
        enc = enc.loaded_copy()  # the caller's encoder stays frozen
    file = path / BODY_FILE
    if not file.is_file():
        raise ModelError(f"{path} is incomplete (missing {BODY_FILE}); {_RETRAIN}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        enc.load_tuned_state(load_file(str(file), device="cpu"), {"base_id": enc.id})
    except (OSError, KeyError, RuntimeError, ValueError, SafetensorError) as e:
        raise ModelError(f"{file} is corrupt ({e}); {_RETRAIN}") from e
    if enc.id != ref["id"]:
        raise ModelError(f"{file} does not give the tuned encoder the model was saved with "
                         f"(id {enc.id}, expected {ref['id']}); {_RETRAIN}")
    return enc


def _load_onnx_encoder(
    path: Path, ref: dict[str, Any], given: Any, cache: Any, options: dict[str, Any]
) -> Any:
    """The exported encoder in the folder itself, checked by the hash of its files."""
    from fewshot.encoders.onnx import load_onnx_encoder

    if given is not None:
        raise UsageError(f"{path} is an exported model: its encoder is in the folder "
                         "(encoder.onnx); drop --encoder (encoder= in Python)")
    missing = [f for f in ref.get("files", []) if not (path / f).is_file()]
    if missing:
        raise ModelError(f"{path} is incomplete (missing {', '.join(missing)}); export the "
                         "model again with fewshot export")
    enc = load_onnx_encoder(path, normalize=bool(ref.get("normalize", True)), **options)
    enc.export_record = ref.get("export")
    enc_id = cache.identify(enc) if cache is not None else enc.id
    if enc_id != ref["id"]:
        raise EncoderMismatchError(
            f"the exported encoder in {path} has id {enc_id}, but the model was saved with "
            f"{ref['id']} (a file was changed or replaced); export the model again with "
            "fewshot export"
        )
    return enc
