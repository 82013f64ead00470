"""FewShotClassifier: a frozen encoder plus a light head, saved as a safe folder."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from fewshot._version import __version__
from fewshot.cache import EmbeddingCache, as_cache, embed
from fewshot.encoders import Encoder, get_encoder
from fewshot.encoders.base import item_list
from fewshot.errors import DataError, EncoderMismatchError, ModelError, UsageError
from fewshot.heads import HEADS, Head, make_head

__all__ = ["FORMAT_VERSION", "FewShotClassifier", "guess_modality"]

#: Version of the saved-model folder layout; loading refuses newer ones.
#: 2 added body.safetensors (tuned encoders); 3 added the text modules' configs
#: (pooling mode etc.) to encoder ids. Folders of versions 1 and 2 still load: their
#: encoder is checked against the id computed as they computed it.
FORMAT_VERSION = 3
MANIFEST = "fewshot.json"
HEAD_FILE = "head.safetensors"
#: Calibrator and out-of-fold predictions; only in folders of calibrated models.
CALIBRATION_FILE = "calibration.safetensors"
#: The tuned encoder's changed tensors; only in folders of models fitted with ``tune``.
BODY_FILE = "body.safetensors"
#: Everything a model folder may hold; ``save(overwrite=True)`` replaces only such folders.
MODEL_FILES = (MANIFEST, HEAD_FILE, CALIBRATION_FILE, BODY_FILE)


def _saved_tune(tuning: Any) -> dict[str, Any] | None:
    """The ``tune`` setting a saved model was fitted with (None if it was not tuned)."""
    if not tuning or tuning.get("distilled_from"):
        return None  # a distilled student is made by fewshot.tuning.distill, not by fit()
    # Models saved before "requested" was recorded hold the settings that ran.
    requested = dict(tuning.get("requested") or tuning.get("settings") or {})
    ran = tuning.get("settings") or {}
    if requested and "defaults" not in tuning and requested.get("learning_rate") is None:
        # Saved before auto's many-class defaults (revision 2): pin the learning rate
        # that ran, so a refit tunes as the model was made.
        requested["learning_rate"] = ran.get("learning_rate")
    return requested or None


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
    calibration:
        ``"temperature"``, ``"isotonic"`` or ``None`` (default: the head's own
        probabilities). Fitted on out-of-fold predictions over the labelled set
        (``calibration_folds`` folds), which are kept (``oof_proba_``,
        ``oof_labels_``) for review thresholds and conformal sets; see
        :mod:`fewshot.confidence.calibration` for the few-shot fallbacks.
    label_descriptions:
        ``{label: "short description"}``: each description, embedded by the same
        encoder, is one more training example of its class, so a text model works
        with zero or two examples per class (see :mod:`fewshot.confidence.priors`).
    self_training_rounds, pseudo_label_threshold, pseudo_labels_per_class:
        Used when ``fit`` gets ``unlabelled`` items: up to this many rounds, each
        adding at most ``pseudo_labels_per_class`` (default: the labelled examples
        per class, at least 8) pool items per class whose calibrated confidence is
        at least the threshold (see :mod:`fewshot.confidence.selftrain`).
    tune:
        Fine-tune the encoder contrastively on the labelled examples before
        fitting the head (SetFit-style): ``True`` (the tuner's defaults), an
        objective name (``"auto"``, ``"cosine"``, ``"supcon"``, ``"pairs"``), a dict of
        :class:`~fewshot.tuning.ContrastiveTuner` settings, or a tuner. The
        encoder given is copied, never changed; the tuned one is ``encoder_``
        and is saved with the model (``body.safetensors``).
    cache:
        ``True`` for the default embedding cache, a folder or an
        :class:`~fewshot.cache.EmbeddingCache`, or ``False`` to always encode.
        Tuned encoders have their own id, so frozen-encoder vectors are never
        served for them.

    >>> clf = FewShotClassifier().fit(texts, labels)    # doctest: +SKIP
    >>> clf.predict(["what a film"])                    # doctest: +SKIP
    array(['positive'], dtype='<U8')
    """

    def __init__(
        self,
        encoder: str | Encoder | None = None,
        head: str | Head = "logreg",
        *,
        calibration: str | None = None,
        calibration_folds: int = 5,
        label_descriptions: Mapping[Any, str] | None = None,
        self_training_rounds: int = 5,
        pseudo_label_threshold: float = 0.9,
        pseudo_labels_per_class: int | None = None,
        tune: Any = None,
        cache: bool | str | Path | EmbeddingCache = True,
        batch_size: int = 32,
        device: str | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.encoder = encoder
        self.tune = tune
        self.head = head
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.label_descriptions = label_descriptions
        self.self_training_rounds = self_training_rounds
        self.pseudo_label_threshold = pseudo_label_threshold
        self.pseudo_labels_per_class = pseudo_labels_per_class
        self.cache = cache
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress

    # -- helpers ------------------------------------------------------------------
    def _cache(self) -> EmbeddingCache | None:
        return as_cache(self.cache)

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
        items = item_list(items, "predict(), predict_proba() and embed()")
        return embed(self.encoder_, items, self._cache(), show_progress=self.show_progress)

    # -- scikit-learn contract ----------------------------------------------------
    def fit(
        self, X: Sequence[Any], y: Sequence[Any], *, unlabelled: Sequence[Any] | None = None
    ) -> FewShotClassifier:
        """Embed ``X`` and fit the head on ``y`` (any hashable labels).

        With ``label_descriptions``, ``X`` and ``y`` may be empty (zero-shot).
        With ``calibration``, also fits the calibrator on out-of-fold predictions.
        With ``unlabelled`` items (needs ``calibration``), self-trains on them;
        ``self_training_`` reports the rounds.
        """
        X, y = item_list(X, "fit()"), list(y)
        if unlabelled is not None:
            unlabelled = item_list(unlabelled, "fit(unlabelled=...)")
        descriptions = _keys_like_labels(self._descriptions(), y)
        if not X and not descriptions:
            raise DataError("no training examples; give at least one item per class")
        if len(X) != len(y):
            raise DataError(f"got {len(X)} items but {len(y)} labels; give one label per item")
        missing = next((i for i, v in enumerate(y) if v is None
                        or (isinstance(v, float | np.floating) and np.isnan(v))
                        or type(v).__name__ == "NAType"), None)  # pandas.NA
        if missing is not None:
            raise DataError(
                f"label {missing} is {y[missing]!r}; give every item a label (drop the "
                "unlabelled ones, or pass them as unlabelled=...)"
            )
        if self.calibration not in (None, "none", "temperature", "isotonic"):
            raise UsageError(
                f"unknown calibration '{self.calibration}'; choose temperature, isotonic or None"
            )
        if self.calibration not in (None, "none") and not (
            isinstance(self.calibration_folds, int | np.integer) and self.calibration_folds >= 2
        ):
            raise UsageError(
                f"calibration_folds must be a whole number of at least 2, got "
                f"{self.calibration_folds!r}; use 5 (the default) or pass calibration=None"
            )
        if unlabelled is not None and self.calibration in (None, "none"):
            raise UsageError(
                "self-training picks pseudo-labels by calibrated confidence; set calibration "
                "('temperature' or 'isotonic') to use unlabelled items"
            )
        if X and descriptions:
            seen = set(y)
            alone = ", ".join(repr(k) for k in descriptions if k not in seen)
            if alone:
                warnings.warn(
                    f"label descriptions name labels with no examples ({alone}): "
                    "each becomes a class learned from its description alone; if that is a "
                    "typo, use the labels of y",
                    stacklevel=2,
                )
        modality = guess_modality(X) if X else "text"
        if descriptions and modality != "text":
            raise UsageError(
                "label descriptions are embedded as text, so they work with text data only; "
                "drop label_descriptions for images"
            )
        self.encoder_ = self._make_encoder(modality)
        self.tuning_: dict[str, Any] | None = None
        # A distilled student refitted on labels is no longer the distillation's result.
        self.__dict__.pop("distillation_", None)
        tuner = self._tuner()
        if tuner is not None:
            self._tune(tuner, X, y)
        start = time.perf_counter()
        Z = self._embed_rows(X)
        D = self._embed_rows(list(descriptions.values())) if descriptions else None
        self.embed_seconds_ = time.perf_counter() - start
        extra = (D, list(descriptions)) if D is not None else None
        self.self_training_: dict[str, Any] | None = None
        self.label_shift_: dict[str, Any] | None = None
        self.class_prior_: np.ndarray | None = None
        pool = list(unlabelled) if unlabelled is not None else []
        if pool:
            self._self_train(Z, y, extra, self._embed_rows(pool))
        else:
            self._fit_embeddings(Z, y, extra=extra)
        self.n_train_ = len(X)
        return self

    def _tuner(self) -> Any:
        if self.tune is None or self.tune is False:
            return None
        from fewshot.tuning import as_tuner

        return as_tuner(self.tune, show_progress=self.show_progress)

    def _tune(self, tuner: Any, X: list[Any], y: list[Any]) -> None:
        """Tune a private copy of the encoder, so the one passed in is never changed."""
        if not X:
            raise DataError("tuning needs labelled examples; pass some or drop tune")
        # An Encoder or a model object (a SentenceTransformer, a timm module) is the
        # caller's: tune a copy. Only a name or folder was loaded for this fit alone.
        passed_in = not isinstance(self.encoder, (str, os.PathLike, type(None)))
        if passed_in or self.encoder_.is_tuned:
            self.encoder_ = self.encoder_.loaded_copy()
        try:
            report = tuner.tune(self.encoder_, X, y)
        except BaseException:
            del self.encoder_  # half-tuned weights must not be used as a fitted encoder
            raise
        requested, ran = tuner.settings_record()
        self.tuning_ = {"settings": ran, "requested": requested, "report": report.to_dict(),
                        "defaults": tuner.DEFAULTS_REVISION}

    def _self_train(
        self, Z: np.ndarray, y: list[Any], extra: tuple[np.ndarray, list[Any]] | None,
        pool: np.ndarray,
    ) -> None:
        from fewshot._progress import progress
        from fewshot.confidence.selftrain import self_train

        base_y = list(extra[1]) if extra is not None else []
        per_class = self.pseudo_labels_per_class
        if per_class is None:
            counts = np.unique(np.asarray(y), return_counts=True)[1] if y else [0]
            per_class = max(8, int(np.median(counts)))

        def fit(rows: np.ndarray, labels: np.ndarray) -> Any:
            pseudo = self.classes_[labels].tolist() if len(labels) else []
            self._fit_embeddings(Z, y, extra=extra, pseudo=(pool[rows], pseudo))
            return lambda E: self.calibrate(self.head_.predict_proba(E))

        # The head's classes: labels and description labels, sorted as np.unique sorts.
        names = [str(c) for c in np.unique(np.asarray(list(y) + base_y)).tolist()]
        with progress("self-training", self.self_training_rounds, self.show_progress) as advance:
            _, report = self_train(
                fit, pool, rounds=self.self_training_rounds,
                threshold=self.pseudo_label_threshold, per_class=per_class,
                class_names=names, progress=advance,
            )
        self.self_training_ = {**report.to_dict(), "pool": len(pool), "per_class": per_class}

    def _descriptions(self) -> dict[Any, str]:
        if self.label_descriptions is None:
            return {}
        from fewshot.confidence.priors import check_label_descriptions

        return check_label_descriptions(self.label_descriptions)

    def _embed_rows(self, items: list[Any]) -> np.ndarray:
        if not items:
            return np.zeros((0, self.encoder_.dim), dtype=np.float32)
        return embed(self.encoder_, items, self._cache(), show_progress=self.show_progress)

    def _fit_embeddings(
        self, Z: np.ndarray, y: Sequence[Any], *, extra: tuple[np.ndarray, Sequence[Any]] | None,
        pseudo: tuple[np.ndarray, Sequence[Any]] | None = None,
    ) -> None:
        """Fit head (and calibrator) on embeddings ``Z`` plus never-held-out ``extra`` rows.

        ``pseudo`` rows (self-training's pseudo-labels) train the head only, never
        the calibration folds: they were picked by a model that saw every labelled
        row, so in a fold they would hand the held-out rows their own labels back
        and flatter the calibrator.
        """
        from sklearn.base import clone

        head = make_head(self.head)
        Ze = extra[0] if extra is not None else np.zeros((0, Z.shape[1]), np.float32)
        ye = list(extra[1]) if extra is not None else []
        Zp = pseudo[0] if pseudo is not None else Ze[:0]
        yp = list(pseudo[1]) if pseudo is not None else []
        y_all = np.asarray(list(y) + ye + yp)
        try:
            self.head_ = clone(head).fit(np.concatenate([Z, Ze, Zp]), y_all)
        except ValueError as e:
            raise DataError(f"cannot fit the {head.name} head: {e}") from e
        self.classes_ = self.head_.classes_
        # The class mix the head learned: the training prior a label-shift correction moves from.
        self.class_counts_: np.ndarray | None = np.asarray(
            [int(np.sum(y_all == c)) for c in self.classes_.tolist()], dtype=np.int64
        )
        self.calibrator_ = None
        self.calibration_info_: dict[str, Any] = {}
        self.oof_proba_ = np.zeros((0, len(self.classes_)), np.float32)
        self.oof_labels_ = np.zeros(0, np.int64)
        if self.calibration in (None, "none"):
            return
        from fewshot.confidence.calibration import fit_calibrator, out_of_fold_proba

        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        all_idx = np.asarray([index[v] for v in y_all.tolist()], dtype=np.int64)
        y_idx, ye_idx = all_idx[: len(Z)], all_idx[len(Z) : len(Z) + len(Ze)]
        proba, held = out_of_fold_proba(
            head, Z, y_idx, len(self.classes_), n_splits=self.calibration_folds,
            extra=(Ze, ye_idx),
        )
        self.calibrator_, fallback = fit_calibrator(
            self.calibration, proba, y_idx,
            zero_probabilities=head.zero_probabilities,
        )
        self.oof_proba_ = proba[held].astype(np.float32)
        self.oof_labels_ = y_idx[held]
        self.calibration_info_ = {
            "method": self.calibrator_.name, "requested": self.calibration,
            "fallback": fallback, "folds": self.calibration_folds,
            "n_held_out": int(held.sum()),
        }
        if getattr(self, "tuning_", None):
            # The body was tuned on every fold, so held-out items are not truly unseen:
            # out-of-fold probabilities (and the calibrator) lean over-confident.
            self.calibration_info_["body_tuned_on_all_folds"] = True

    def predict_proba(self, X: Sequence[Any], *, calibrated: bool = True) -> np.ndarray:
        """Probabilities, columns in the order of ``classes_``.

        Calibrated when the model was fitted with ``calibration`` (pass
        ``calibrated=False`` for the head's own probabilities).
        With a class prior from :meth:`adapt_prior`, calibrated probabilities are
        also moved to that class mix.
        """
        check_is_fitted(self, "head_")
        proba = self.head_.predict_proba(self.embed(X))
        if not calibrated:
            return proba
        return self.apply_prior(self.calibrate(proba))

    def apply_prior(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities moved to the class prior of :meth:`adapt_prior`.

        Unchanged when no prior is in use (``class_prior_`` is None).
        """
        prior = getattr(self, "class_prior_", None)
        if prior is None:
            return proba
        from fewshot.confidence.label_shift import apply_class_prior

        return apply_class_prior(proba, self._training_prior(), prior).astype(np.float32)

    def adapt_prior(self, X: Sequence[Any]) -> FewShotClassifier:
        """Estimate the class mix of unlabelled ``X`` and use it from now on.

        For a labelled set whose class mix (often balanced, N per class) differs
        from the data the model will see: the deployment prior is fitted by EM on
        the calibrated probabilities of ``X``, and used only when the model's
        out-of-fold confusions can tell such a shift apart (see
        :mod:`fewshot.confidence.label_shift`). ``label_shift_`` reports the
        estimate and the decision; ``class_prior_`` is the prior in use (None when
        it was not used). Needs ``calibration``. Returns ``self``.
        """
        check_is_fitted(self, "head_")
        self._check_adaptable()
        items = item_list(X, "adapt_prior()")
        if not items:
            raise DataError("no unlabelled items to estimate the class prior from; give some")
        return self._adapt_to(self.head_.predict_proba(self.embed(items)))

    def _check_adaptable(self) -> None:
        if getattr(self, "calibrator_", None) is None:
            raise UsageError(
                "estimating the class prior needs calibrated probabilities and out-of-fold "
                "predictions; fit with calibration='temperature' (--calibration temperature)"
            )

    def _adapt_to(self, raw: np.ndarray) -> FewShotClassifier:
        """:meth:`adapt_prior` from the head's own probabilities of the unlabelled items."""
        from fewshot.confidence.calibration import held_out_calibrated
        from fewshot.confidence.label_shift import estimate_label_shift

        self._check_adaptable()
        proba = self.calibrate(raw)
        oof = np.asarray(self.oof_proba_, dtype=np.float64).reshape(-1, len(self.classes_))
        report = estimate_label_shift(
            proba, held_out_calibrated(self, oof, self.oof_labels_), self.oof_labels_,
            self._training_prior(), vote_shares=self.head_.zero_probabilities,
        )
        self.label_shift_ = report.to_dict()
        self.class_prior_ = np.asarray(report.prior) if report.used else None
        return self

    def _training_prior(self) -> np.ndarray:
        counts = getattr(self, "class_counts_", None)
        if counts is None or len(counts) != len(self.classes_):
            raise ModelError(
                "this model does not record the class counts it was fitted on (saved by an "
                "older fewshot); re-run fewshot train to use a class prior"
            )
        return np.asarray(counts, dtype=np.float64) / float(np.sum(counts))

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """The fitted calibrator applied to head probabilities (unchanged without one)."""
        calibrator = getattr(self, "calibrator_", None)
        return proba if calibrator is None else calibrator.transform(proba)

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        """Predicted labels, as given at fit time."""
        proba = self.predict_proba(X)  # first, so an unfitted model raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self) -> Any:  # sklearn.utils.Tags (sklearn ships no types)
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    # -- persistence ----------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder atomically: ``fewshot.json`` + ``head.safetensors``."""
        check_is_fitted(self, "head_")
        from safetensors.numpy import save_file

        from fewshot._io import ReplaceRefusedError, atomic_dir

        path = Path(path)
        config, arrays = self.head_.get_state()
        calibration = self._calibration_state()
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
        descriptions = self._descriptions()
        if descriptions:
            manifest["label_descriptions"] = {str(k): v for k, v in descriptions.items()}
        if calibration is not None:
            manifest["calibration"] = calibration[0]
        if getattr(self, "self_training_", None):
            manifest["self_training"] = self.self_training_
        if getattr(self, "distillation_", None):
            manifest["distillation"] = self.distillation_
        counts = getattr(self, "class_counts_", None)
        if counts is not None:
            manifest["class_counts"] = [int(v) for v in counts]
        if getattr(self, "label_shift_", None):
            manifest["label_shift"] = self.label_shift_
        body = None
        if self.encoder_.is_tuned:
            body = self.encoder_.tuned_state()
            manifest["tuning"] = getattr(self, "tuning_", None) or {}
        try:
            with atomic_dir(path, overwrite=overwrite, replaceable=MODEL_FILES) as tmp:
                save_file(arrays, str(tmp / HEAD_FILE), metadata={"format": str(FORMAT_VERSION)})
                if body is not None:
                    from safetensors.torch import save_file as save_torch

                    save_torch(body, str(tmp / BODY_FILE), metadata={"format": str(FORMAT_VERSION)})
                if calibration is not None:
                    save_file(
                        calibration[1], str(tmp / CALIBRATION_FILE),
                        metadata={"format": str(FORMAT_VERSION)},
                    )
                text = json.dumps(manifest, indent=2, default=_json_scalar)
                (tmp / MANIFEST).write_text(text + "\n")
        except ReplaceRefusedError as e:
            raise UsageError(str(e)) from None
        except FileExistsError:
            raise UsageError(
                f"{path} already exists; choose another folder or overwrite it (--force)"
            ) from None
        return path

    def _calibration_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        calibrator = getattr(self, "calibrator_", None)
        if calibrator is None:
            return None
        config, arrays = calibrator.get_state()
        config = {**self.calibration_info_, **config}
        arrays = {
            **arrays,
            "oof_proba": np.ascontiguousarray(self.oof_proba_, dtype=np.float32),
            "oof_labels": np.ascontiguousarray(self.oof_labels_, dtype=np.int64),
        }
        return config, {k: np.ascontiguousarray(v) for k, v in arrays.items()}

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
        calibration = manifest.get("calibration")
        saved_name = ref["name"]
        origin = ref.get("resolved_from") or {}
        if origin.get("source") == "path" and Path(origin.get("location", "")).is_dir():
            # A folder given as a relative path: its absolute location still works
            # from another working directory (the id check below still applies).
            saved_name = origin["location"]
        self = cls(
            encoder=encoder if encoder is not None else saved_name,
            # The head's settings too, so get_params() and clone() refit it as saved.
            head=head_cls(**head_cfg.get("params", {})), cache=cache, batch_size=batch_size,
            device=device, show_progress=show_progress,
            calibration=calibration.get("requested") if calibration else None,
            calibration_folds=int(calibration.get("folds", 5)) if calibration else 5,
            label_descriptions=manifest.get("label_descriptions"),
            # So clone(loaded).fit() tunes again, as the saved model was made.
            tune=_saved_tune(manifest.get("tuning")),
        )
        self._load_calibration(path, calibration)
        self.self_training_ = manifest.get("self_training")
        if manifest.get("distillation"):
            self.distillation_ = manifest["distillation"]
        self._load_label_shift(path, manifest, len(head.classes_))
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
        version = int(manifest["format_version"])
        if version >= 3:
            enc_id = cache_obj.identify(enc) if cache_obj is not None else enc.id
        else:
            enc_id = enc.id_for_format(version)
        base_id = ref.get("base_id", ref["id"]) if ref.get("tuned") else ref["id"]
        if enc_id != base_id:
            raise EncoderMismatchError(
                f"encoder '{enc.name}' now has id {enc_id}, but {path} was trained with "
                f"'{ref['name']}' (id {base_id}); pass the original encoder with --encoder"
            )
        self.tuning_ = manifest.get("tuning")
        if ref.get("tuned"):
            if isinstance(encoder, Encoder):
                enc = enc.loaded_copy()  # the caller's encoder stays frozen
            _load_body(enc, path, ref, version)
        self.encoder_ = enc
        self.head_ = head
        self.classes_ = head.classes_
        self.n_train_ = int(manifest.get("n_train", 0))
        return self

    def _load_label_shift(self, path: Path, manifest: dict[str, Any], n_classes: int) -> None:
        counts = manifest.get("class_counts")
        shift = manifest.get("label_shift")
        self.class_counts_ = None
        self.label_shift_ = shift or None
        self.class_prior_ = None
        try:
            if counts is not None:
                self.class_counts_ = np.asarray(counts, dtype=np.int64)
                if self.class_counts_.shape != (n_classes,):
                    raise ValueError(f"{len(counts)} class counts for {n_classes} classes")
                if self.class_counts_.min() <= 0:
                    raise ValueError(f"class counts {counts} hold a count below 1")
            if shift is not None and not isinstance(shift, dict):
                raise ValueError(f"label_shift is a {type(shift).__name__}, not an object")
            if shift and shift.get("used"):
                prior = np.asarray(shift["prior"], dtype=np.float64)
                if prior.shape != (n_classes,) or not np.all(np.isfinite(prior)) or prior.min() < 0:
                    raise ValueError(f"label_shift prior {shift['prior']!r} does not fit "
                                     f"{n_classes} classes")
                if self.class_counts_ is None:
                    raise ValueError("label_shift without class_counts")
                self.class_prior_ = prior
        except (TypeError, ValueError, KeyError) as e:
            raise ModelError(
                f"{path / MANIFEST} is corrupt ({e}); re-run fewshot train to rebuild the model"
            ) from e

    def _load_calibration(self, path: Path, config: dict[str, Any] | None) -> None:
        self.calibrator_ = None
        self.calibration_info_ = {}
        self.oof_proba_ = np.zeros((0, 0), np.float32)
        self.oof_labels_ = np.zeros(0, np.int64)
        if not config:
            return  # a model saved without calibration (or by fewshot before it)
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from fewshot.confidence.calibration import CALIBRATORS

        file = path / CALIBRATION_FILE
        if not file.is_file():
            raise ModelError(
                f"{path} is incomplete (missing {CALIBRATION_FILE}); re-run fewshot train "
                "to rebuild it"
            )
        method = config.get("method")
        cal_cls = CALIBRATORS.get(method) if isinstance(method, str) else None
        if cal_cls is None:
            raise ModelError(
                f"{path} uses calibration '{config.get('method')}', which this fewshot does "
                "not know; upgrade fewshot"
            )
        try:
            arrays = load_file(str(file))
            self.calibrator_ = cal_cls.from_state(config, arrays)
            self.oof_proba_ = arrays["oof_proba"].astype(np.float32)
            self.oof_labels_ = arrays["oof_labels"].astype(np.int64)
        except (OSError, KeyError, TypeError, ValueError, SafetensorError) as e:
            raise ModelError(
                f"{file} is corrupt ({e}); re-run fewshot train to rebuild the model"
            ) from e
        self.calibration_info_ = {
            k: config[k] for k in ("method", "requested", "fallback", "folds", "n_held_out",
                                   "body_tuned_on_all_folds")
            if k in config
        }


def _load_body(enc: Encoder, path: Path, ref: dict[str, Any], version: int) -> None:
    """Put the saved tuned tensors into the base encoder; check the result's id."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = path / BODY_FILE
    if not file.is_file():
        raise ModelError(
            f"{path} is incomplete (missing {BODY_FILE}); re-run fewshot train to rebuild it"
        )
    try:
        tensors = load_file(str(file), device="cpu")
        # The base's id as this fewshot computes it, so a re-save records it.
        enc.load_tuned_state(tensors, {"base_id": enc.id})
    except (OSError, KeyError, RuntimeError, ValueError, SafetensorError) as e:
        raise ModelError(
            f"{file} is corrupt ({e}); re-run fewshot train to rebuild the model"
        ) from e
    tuned_id = enc.id_for_format(version)
    if tuned_id != ref["id"]:
        raise ModelError(
            f"{file} does not give the tuned encoder the model was saved with (id {tuned_id}, "
            f"expected {ref['id']}); re-run fewshot train to rebuild the model"
        )


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
    if not isinstance(manifest, dict):
        raise ModelError(
            f"{manifest_path} is corrupt (a JSON {type(manifest).__name__}, not an object); "
            "re-run fewshot train"
        )
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


def _json_scalar(value: Any) -> Any:
    """A numpy scalar in the manifest (``KNNHead(k=np.int64(3))`` from a grid over
    ``np.arange``, ``calibration_folds=np.int64(3)``) as the Python value it holds."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _keys_like_labels(descriptions: dict[Any, str], y: Sequence[Any]) -> dict[Any, str]:
    """String keys ``"0"``, ``"1"`` as the int labels they name, when the labels are ints.

    Description files (and saved models) hold JSON object keys, always strings.
    """
    ints = [v for v in y if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
    if not descriptions or not y or len(ints) != len(y):
        return descriptions
    if not all(isinstance(k, str) and k.strip().lstrip("+-").isdigit() for k in descriptions):
        return descriptions
    return {int(k): text for k, text in descriptions.items()}
