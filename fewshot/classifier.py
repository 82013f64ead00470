"""FewShotClassifier: a frozen encoder plus a light head, saved as a safe folder."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from fewshot._version import __version__
from fewshot.cache import EmbeddingCache, embed
from fewshot.encoders import Encoder, get_encoder
from fewshot.errors import DataError, EncoderMismatchError, ModelError, UsageError
from fewshot.heads import HEADS, Head, make_head

__all__ = ["FORMAT_VERSION", "FewShotClassifier", "guess_modality"]

#: Version of the saved-model folder layout; loading refuses newer ones.
FORMAT_VERSION = 1
MANIFEST = "fewshot.json"
HEAD_FILE = "head.safetensors"


def guess_modality(items: Sequence[Any]) -> str:
    """``"text"`` for strings, ``"image"`` for paths and PIL images."""
    first = items[0]
    if isinstance(first, str):
        return "text"
    if isinstance(first, os.PathLike) or hasattr(first, "convert"):
        return "image"
    raise UsageError(
        f"cannot tell text from images by a {type(first).__name__}; pass str for text, "
        "pathlib.Path or PIL images for images"
    )


class FewShotClassifier(ClassifierMixin, BaseEstimator):
    """Encoder + head, with the scikit-learn classifier contract.

    Parameters
    ----------
    encoder:
        A name (``"all-MiniLM-L6-v2"``, a timm name, ``local-dir:PATH``, a folder),
        an :class:`~fewshot.encoders.Encoder`, or ``None`` for the default of the
        data's modality (text: all-MiniLM-L6-v2; images: DINOv2 ViT-S/14).
    head:
        ``"logreg"`` (default), ``"knn"``, ``"centroid"`` or a head instance.
    cache:
        ``True`` for the default embedding cache, a folder or an
        :class:`~fewshot.cache.EmbeddingCache`, or ``False`` to always encode.

    >>> clf = FewShotClassifier().fit(texts, labels)    # doctest: +SKIP
    >>> clf.predict(["what a film"])                    # doctest: +SKIP
    array(['positive'], dtype='<U8')
    """

    def __init__(
        self,
        encoder: str | Encoder | None = None,
        head: str | Head = "logreg",
        *,
        cache: bool | str | Path | EmbeddingCache = True,
        batch_size: int = 32,
        device: str | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.cache = cache
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress

    # -- helpers ------------------------------------------------------------------
    def _cache(self) -> EmbeddingCache | None:
        if self.cache is False or self.cache is None:
            return None
        if self.cache is True:
            return EmbeddingCache()
        if isinstance(self.cache, EmbeddingCache):
            return self.cache
        return EmbeddingCache(self.cache)

    def _make_encoder(self, modality: str) -> Encoder:
        if isinstance(self.encoder, Encoder):
            return get_encoder(self.encoder, modality)
        return get_encoder(
            self.encoder, modality, device=self.device, batch_size=self.batch_size,
            show_progress=self.show_progress,
        )

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Embeddings of ``items`` from the fitted encoder (through the cache)."""
        check_is_fitted(self, "encoder_")
        return embed(self.encoder_, list(items), self._cache(), show_progress=self.show_progress)

    # -- scikit-learn contract ----------------------------------------------------
    def fit(self, X: Sequence[Any], y: Sequence[Any]) -> FewShotClassifier:
        """Embed ``X`` and fit the head on ``y`` (any hashable labels)."""
        X, y = list(X), list(y)
        if not X:
            raise DataError("no training examples; give at least one item per class")
        if len(X) != len(y):
            raise DataError(f"got {len(X)} items but {len(y)} labels; give one label per item")
        self.encoder_ = self._make_encoder(guess_modality(X))
        start = time.perf_counter()
        Z = embed(self.encoder_, X, self._cache(), show_progress=self.show_progress)
        self.embed_seconds_ = time.perf_counter() - start
        head = make_head(self.head)
        from sklearn.base import clone

        try:
            self.head_ = clone(head).fit(Z, np.asarray(y))
        except ValueError as e:
            raise DataError(f"cannot fit the {head.name} head: {e}") from e
        self.classes_ = self.head_.classes_
        self.n_train_ = len(X)
        return self

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        """Probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(self.embed(X))

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        """Predicted labels, as given at fit time."""
        proba = self.predict_proba(X)  # first, so an unfitted model raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    # -- persistence ----------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder atomically: ``fewshot.json`` + ``head.safetensors``."""
        check_is_fitted(self, "head_")
        from safetensors.numpy import save_file

        from fewshot._io import atomic_dir

        path = Path(path)
        config, arrays = self.head_.get_state()
        ref = self.encoder_.reference()
        resolved = getattr(self.encoder_, "resolved_", None)
        if resolved is not None:
            ref["resolved_from"] = {"source": resolved.source, "location": resolved.location}
        manifest = {
            "format_version": FORMAT_VERSION,
            "fewshot_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "encoder": ref,
            "head": config,
            "classes": self.classes_.tolist(),
            "n_train": int(self.n_train_),
        }
        try:
            with atomic_dir(path, overwrite=overwrite) as tmp:
                save_file(arrays, str(tmp / HEAD_FILE), metadata={"format": str(FORMAT_VERSION)})
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        except FileExistsError:
            raise UsageError(
                f"{path} already exists; choose another folder or overwrite it (--force)"
            ) from None
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder: str | Encoder | None = None,
        cache: bool | str | Path | EmbeddingCache = True,
        device: str | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> FewShotClassifier:
        """Load a saved model; checks the encoder still resolves to the same weights.

        ``encoder`` overrides the saved encoder name (for a model folder moved to
        another machine); its id must still match. Loading reads JSON and
        safetensors only, so it never executes code from the folder.
        """
        path = Path(path)
        manifest = read_manifest(path)
        ref = manifest["encoder"]
        head_cfg = manifest["head"]
        head_cls = HEADS.get(head_cfg.get("type"))
        if head_cls is None:
            raise ModelError(
                f"{path} uses head '{head_cfg.get('type')}', which this fewshot does not know; "
                "upgrade fewshot"
            )
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path / HEAD_FILE))
            head = head_cls.from_state(head_cfg, arrays)
        except (OSError, KeyError, TypeError, ValueError, SafetensorError) as e:
            raise ModelError(
                f"{path / HEAD_FILE} is corrupt ({e}); re-run fewshot train to rebuild the model"
            ) from e
        self = cls(
            encoder=encoder if encoder is not None else ref["name"],
            head=head_cfg["type"], cache=cache, batch_size=batch_size, device=device,
            show_progress=show_progress,
        )
        if isinstance(encoder, Encoder):
            enc = get_encoder(encoder, ref["modality"])
        else:
            # An image encoder saved with pretrained=False is rebuilt the same way.
            random_weights = encoder is None and ref.get("pretrained") is False
            extra = {"pretrained": False} if random_weights else {}
            enc = get_encoder(
                self.encoder, ref["modality"], device=device, batch_size=batch_size,
                show_progress=show_progress, normalize=bool(ref.get("normalize", True)), **extra,
            )
        cache_obj = self._cache()
        enc_id = cache_obj.identify(enc) if cache_obj is not None else enc.id
        if enc_id != ref["id"]:
            raise EncoderMismatchError(
                f"encoder '{enc.name}' now has id {enc_id}, but {path} was trained with "
                f"'{ref['name']}' (id {ref['id']}); pass the original encoder with --encoder"
            )
        self.encoder_ = enc
        self.head_ = head
        self.classes_ = head.classes_
        self.n_train_ = int(manifest.get("n_train", 0))
        return self


def read_manifest(path: Path) -> dict[str, Any]:
    """``fewshot.json`` of a model folder, checked for completeness and version."""
    if not path.is_dir():
        raise ModelError(f"no model folder at {path}; train one with fewshot train")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(
            f"{path} is not a fewshot model folder (no {MANIFEST}); point at the folder "
            "written by fewshot train"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{manifest_path} is corrupt ({e}); re-run fewshot train") from e
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelError(f"{manifest_path} has no format_version; re-run fewshot train")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written in model format {version} by a newer fewshot "
            f"({manifest.get('fewshot_version', '?')}); this fewshot {__version__} reads "
            f"format {FORMAT_VERSION}: upgrade fewshot (pip install -U fewshot)"
        )
    missing = [k for k in ("encoder", "head", "classes") if k not in manifest]
    if missing or not (path / HEAD_FILE).is_file():
        what = ", ".join(missing) if missing else HEAD_FILE
        raise ModelError(
            f"{path} is incomplete (missing {what}); re-run fewshot train to rebuild it"
        )
    return manifest
