"""The encoder interface: items in, float32 embeddings out, with a stable id."""

from __future__ import annotations

import contextlib
import hashlib
import json
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fewshot._estimator import BaseEstimator, TransformerMixin
from fewshot.errors import FewShotError

__all__ = ["Encoder", "MissingTorchError", "item_list", "require_torch", "resolve_device"]


class MissingTorchError(FewShotError, ImportError):
    """A PyTorch code path (train, tune, embed with a PyTorch encoder) without PyTorch."""


def require_torch(what: str, modules: Sequence[str] = ("torch",)) -> None:
    """Raise :class:`MissingTorchError` naming ``what`` when a module of ``modules`` is not
    installed (an install of ``fewshot[runtime]`` runs exported models only)."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a broken or blocked install cannot be used either
            return True

    missing = [m for m in modules if absent(m)]
    if missing:
        raise MissingTorchError(f"{what} needs PyTorch ({', '.join(missing)} not installed): "
                                "pip install 'fewshot[torch]'")


def check_device(device: str) -> str:
    """``device`` if torch can name it, else a UsageError (availability is not checked).

    The usual names are checked without importing torch; anything else goes to
    ``torch.device``, which knows every backend this torch build has.
    """
    import re

    if re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", device):
        return device
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        from fewshot.errors import UsageError

        raise UsageError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps") from None
    return device


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> cuda when available, then mps, else cpu.

    An explicit device is checked here, so a typo or a missing GPU is one clear
    :class:`~fewshot.errors.UsageError` rather than a torch traceback on load.
    """
    require_torch(f"device '{device or 'auto'}' of a PyTorch encoder")
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    from fewshot.errors import UsageError

    dev = torch.device(check_device(str(device)))
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            raise UsageError(
                f"device '{device}' is not available ({count} CUDA GPU(s) found); "
                "use --device auto or cpu (device='cpu' in Python)"
            )
    if dev.type == "mps" and not mps_ok:
        raise UsageError(f"device '{device}' is not available here; use --device auto or cpu "
                         "(device='cpu' in Python)")
    return str(device)


# Bumped whenever Encoder.id changes for the same model (3: text ids include the
# modules' configs), so a cache's remembered fingerprint -> id entries are not reused.
_ID_SCHEME = 3


def hash_module(h: Any, module: Any) -> None:
    """Feed every parameter and buffer of a torch module (names, shapes, bytes) to ``h``."""
    import torch

    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


class Encoder(TransformerMixin, BaseEstimator):
    """Base class of fewshot encoders; a scikit-learn transformer too.

    Subclasses load their model lazily on first use (``__init__`` only stores
    parameters), and return float32 arrays of shape ``(n, dim)``, L2-normalised
    when ``normalize`` is true. ``id`` changes whenever the weights or the
    preprocessing change, so cached embeddings and saved models can be checked.
    """

    modality: ClassVar[str] = ""
    #: Image encoders can be built with random weights; text encoders always load theirs.
    pretrained: bool = True
    #: Set by tuning (:meth:`mark_tuned`): what changed, from which base.
    tuned_: dict[str, Any] | None = None
    #: The loaded model and its name (set on first use by the subclass).
    model_: Any
    name_: str

    def __init__(
        self,
        model: Any,
        *,
        device: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.normalize = normalize
        self.batch_size = batch_size
        self.show_progress = show_progress

    # -- subclass hooks -----------------------------------------------------------
    @abstractmethod
    def _load(self) -> None:
        """Load the model; set ``model_``, ``dim_``, ``device_`` and ``name_``."""

    @abstractmethod
    def _identity(self) -> dict[str, Any]:
        """Preprocessing settings that change the output, for the id."""

    @abstractmethod
    def _encode(
        self, items: Sequence[Any], batch_size: int, show_progress: bool | None
    ) -> np.ndarray:
        """Raw float32 embeddings, in input order."""

    @abstractmethod
    def item_key(self, item: Any) -> bytes:
        """A digest of an item's content, for the embedding cache."""

    def check_items(self, items: Sequence[Any]) -> None:
        """Raise a one-line ``DataError`` for an item this encoder cannot embed."""

    # -- public API ---------------------------------------------------------------
    # Settings that change only how work is batched or shown: same model, same id.
    _RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset(
        {"batch_size", "show_progress", "num_workers"}
    )
    # Settings that change the output but not the weights: changing one keeps the loaded
    # model. Each one not at its default is in the fingerprint and the saved reference; a
    # subclass puts those beyond normalize in its _identity().
    _OUTPUT_PARAMS: ClassVar[frozenset[str]] = frozenset({"normalize"})
    # Libraries whose versions can change the preprocessing an id stands for.
    _LIBRARIES: ClassVar[tuple[str, ...]] = ("torch",)

    def set_params(self, **params: Any) -> Encoder:
        """Set parameters; a changed model or setting drops what was loaded for the old one.

        ``normalize`` (any of ``_OUTPUT_PARAMS``) only changes the id; ``model``,
        ``device`` or ``pretrained`` unload the model, so the next use loads the new one
        (a tuned encoder refuses those: its weights would be lost).
        """
        current = self.get_params(deep=False)
        changed = {k for k, v in params.items() if k in current and not _same(current[k], v)}
        reload = changed - self._RUNTIME_PARAMS - self._OUTPUT_PARAMS
        if reload and self.is_tuned:
            from fewshot.errors import UsageError

            raise UsageError(
                f"cannot change {', '.join(sorted(reload))} of a tuned encoder (its tuned "
                "weights would be lost); build a new encoder and tune it again"
            )
        super().set_params(**params)
        if reload:
            for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
                delattr(self, attr)
        elif changed & self._OUTPUT_PARAMS:
            self.__dict__.pop("id_", None)
        return self

    def _ensure_loaded(self) -> None:
        if not hasattr(self, "model_"):
            self._load()

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        if not hasattr(self, "dim_"):
            self._ensure_loaded()
        return int(self.dim_)

    @property
    def name(self) -> str:
        """The name the encoder was asked for (a hub id, registry name or path)."""
        if isinstance(self.model, str):
            return self.model
        self._ensure_loaded()
        return str(self.name_)

    def fingerprint(self) -> str | None:
        """A cheap key for the exact local model files and settings, or None.

        Computed without loading the model (file names, sizes, inodes and
        modification and change times), so a cache can remember ``(id, dim)`` and
        a warm run need not load weights at all. None when the model is not a
        local folder.
        """
        if not isinstance(self.model, str) or self.tuned_:
            return None  # tuned weights are not the files': the id must come from them
        folder = self._local_folder()
        if folder is None:
            return None
        h = hashlib.blake2b(digest_size=16)
        # _ID_SCHEME names how ids are computed: a cached id from another scheme never matches.
        settings = [type(self).__name__, self.model, self.normalize, self.pretrained, _ID_SCHEME,
                    _versions(self._LIBRARIES)]
        if self._settings():
            settings.append(self._settings())
        h.update(json.dumps(settings).encode())
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                st = p.stat()
                # ctime cannot be set by cp -p or rsync -a: a replaced file always shows.
                h.update(
                    f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
                    f"|{st.st_ino}\n".encode()
                )
        return h.hexdigest()

    def _resolve(self) -> Any:
        """Where ``self.model`` resolves (a ResolvedModel), or None if it cannot."""
        return None

    def _local_folder(self) -> str | None:
        """The resolved local model folder, without loading (None if not local)."""
        from fewshot.errors import EncoderNotFoundError

        try:
            resolved = self._resolve()
        except EncoderNotFoundError:
            return None
        if resolved is None or not resolved.is_local:
            return None
        # Set here too: a warm cache may identify the encoder without loading it,
        # and a saved model still records where the encoder came from.
        self.resolved_ = resolved
        return resolved.location

    def _settings(self) -> dict[str, Any]:
        """Output settings beyond ``normalize`` that differ from their defaults, by name."""
        import inspect

        params = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in sorted(self._OUTPUT_PARAMS - {"normalize"})
                if getattr(self, k) != params[k].default}

    def adopt_identity(self, encoder_id: str, dim: int) -> None:
        """Take a remembered ``(id, dim)`` for this fingerprint instead of loading."""
        self.id_ = encoder_id
        self.dim_ = int(dim)

    @property
    def id(self) -> str:
        """Content hash of weights + preprocessing: equal ids give equal embeddings."""
        if not hasattr(self, "id_"):
            self.id_ = self._compute_id()
        return str(self.id_)

    def _compute_id(self) -> str:
        self._ensure_loaded()
        h = hashlib.blake2b(digest_size=16)
        ident = {"modality": self.modality, "normalize": bool(self.normalize)}
        ident.update(self._identity())
        h.update(json.dumps(ident, sort_keys=True, default=str).encode())
        hash_module(h, self._torch_module())
        return f"{self.modality}-{h.hexdigest()}"

    def _torch_module(self) -> Any:
        return self.model_

    # -- training hooks, used by fewshot.tuning -----------------------------------
    def loaded_copy(self) -> Encoder:
        """An independent copy with the model loaded, to tune without changing this one."""
        import copy

        self._ensure_loaded()
        return copy.deepcopy(self)

    def training_module(self) -> Any:
        """The torch module whose parameters tuning updates (loads the model)."""
        self._ensure_loaded()
        return self._torch_module()

    def training_items(self, items: Sequence[Any]) -> list[Any]:
        """Items prepared once before training (e.g. images decoded)."""
        return list(items)

    def training_batch(self, items: Sequence[Any], *, augment: bool = False) -> Any:
        """Model inputs for a batch of prepared items, on the encoder's device."""
        from fewshot.errors import UsageError

        raise UsageError(f"{type(self).__name__} cannot be tuned; use a TextEncoder or "
                         "ImageEncoder, or train without tuning")

    def training_forward(self, batch: Any) -> Any:
        """Embeddings (a torch tensor with gradients) of a training batch."""
        from fewshot.errors import UsageError

        raise UsageError(f"{type(self).__name__} cannot be tuned; use a TextEncoder or "
                         "ImageEncoder, or train without tuning")

    def mark_tuned(self, info: dict[str, Any]) -> None:
        """Record that the weights were changed in place; the id is recomputed from them.

        A tuned encoder never borrows the id of its base model's files, so the
        embedding cache can never serve frozen-encoder vectors for it.
        """
        self._torch_module().eval()
        self.tuned_ = dict(info)
        self.__dict__.pop("id_", None)

    def tuned_state(self) -> dict[str, Any]:
        """The tensors tuning changed (CPU, contiguous), for ``body.safetensors``."""
        state = self._torch_module().state_dict()
        names = (self.tuned_ or {}).get("parameters") or list(state)
        return {n: state[n].detach().to("cpu").contiguous().clone() for n in names}

    def load_tuned_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:
        """Load tensors saved by :meth:`tuned_state` into the loaded base model."""
        self._ensure_loaded()
        module = self._torch_module()
        state = module.state_dict()
        unknown = sorted(set(tensors) - set(state))
        if unknown:
            raise ValueError(f"tensors {', '.join(unknown[:3])} are not in the encoder")
        for name, t in tensors.items():
            if tuple(t.shape) != tuple(state[name].shape):
                raise ValueError(f"tensor {name} has shape {tuple(t.shape)}, "
                                 f"expected {tuple(state[name].shape)}")
        module.load_state_dict(tensors, strict=False)
        self.mark_tuned({**info, "parameters": sorted(tensors)})

    @property
    def is_tuned(self) -> bool:
        return bool(self.tuned_)

    def reference(self) -> dict[str, Any]:
        """What a saved model records about its encoder."""
        ref = {"modality": self.modality, "name": self.name, "id": self.id,
               "normalize": bool(self.normalize)}
        if self._settings():  # passed back to the encoder when the model is loaded
            ref["settings"] = self._settings()
        if self.is_tuned:
            ref["tuned"] = True
            ref["base_id"] = (self.tuned_ or {})["base_id"]
        return ref

    _inputs_warned = False

    @contextlib.contextmanager
    def inputs_warned(self) -> Iterator[None]:
        """Encode without warning again: the caller warned about all the items at once."""
        self._inputs_warned = True
        try:
            yield
        finally:
            self._inputs_warned = False

    def encode(
        self,
        items: Sequence[Any],
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed ``items``; returns float32 ``(len(items), dim)``."""
        items = item_list(items, "encode()")
        self.check_items(items)
        self._ensure_loaded()
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._encode(
            items,
            batch_size or self.batch_size,
            self.show_progress if show_progress is None else show_progress,
        )
        out = np.ascontiguousarray(out, dtype=np.float32)
        if self.normalize:
            normalize_rows(out)
        return out

    # -- scikit-learn transformer -------------------------------------------------
    def fit(self, X: Any = None, y: Any = None) -> Encoder:
        """No-op apart from loading the model; encoders are frozen."""
        self._ensure_loaded()
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        return self.encode(X)

    def __sklearn_tags__(self) -> Any:  # sklearn.utils.Tags (sklearn ships no types)
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = False
        return tags


def item_list(items: Any, where: str) -> list[Any]:
    """``items`` as a list; a lone string is refused, not split into characters."""
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{where} takes a sequence of items, not a single "
                        f"{type(items).__name__}; wrap it in a list: [{items[:20]!r}]")
    return list(items)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # objects without a plain truth value for ==
        return False


def _versions(libraries: Sequence[str]) -> list[str]:
    """Installed versions of ``libraries``: an upgrade may change preprocessing."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for lib in libraries:
        try:
            out.append(f"{lib}=={version(lib)}")
        except PackageNotFoundError:
            out.append(f"{lib}==none")
    return out


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows in place (zero rows stay zero); returns ``x``."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x
