"""FewShotClassifier: a frozen encoder plus a light head, with the scikit-learn contract."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._estimator import BaseEstimator, ClassifierMixin, check_is_fitted, clone
from fewshot.cache import EmbeddingCache, as_cache, embed
from fewshot.encoders import Encoder, get_encoder, guess_modality
from fewshot.encoders.base import item_list
from fewshot.errors import DataError, UsageError
from fewshot.heads import Head
from fewshot.model import FittedModel, LabelShift, load_model, save_model
from fewshot.training.fitting import DEFAULT_CALIBRATION

__all__ = ["FewShotClassifier"]


def _view(get: Callable[[FittedModel], Any], doc: str) -> Any:
    """A read-only fitted attribute, taken from the fitted model."""
    return property(lambda self: get(self.model_), doc=doc)


class FewShotClassifier(ClassifierMixin, BaseEstimator):
    """Encoder + head, with the scikit-learn classifier contract.

    Parameters
    ----------
    encoder:
        A name (``"all-MiniLM-L6-v2"``, a timm name, ``local-dir:PATH``, a folder),
        an :class:`~fewshot.encoders.Encoder`, or ``None`` for the default of the
        data's modality (text: all-MiniLM-L6-v2; images: DINOv2 ViT-S/14).
    head:
        ``"auto"`` (default: nearest centroid when the labelled rows are few, otherwise
        the best of centroid and balanced logistic regression by 5-fold cross-validation
        on the labelled rows), ``"logreg"``, ``"knn"``, ``"centroid"`` or a head instance.
    calibration:
        ``"temperature"`` (default, as ``fewshot train``), ``"isotonic"`` or ``None``
        (the head's own probabilities). Fitted on out-of-fold predictions over the labelled set
        (``calibration_folds`` folds), which are kept (``oof_proba_``,
        ``oof_labels_``) for review thresholds and conformal sets; see
        :mod:`fewshot.confidence.calibration` for the few-shot fallbacks.
    label_descriptions:
        ``{label: "short description"}``: each description, embedded by the same
        encoder, is one more training example of its class, so a text model works
        with zero or two examples per class (see :mod:`fewshot.training.descriptions`).
    self_training_rounds, pseudo_label_threshold, pseudo_labels_per_class:
        Used when ``fit`` gets ``unlabelled`` items: up to this many rounds, each
        adding at most ``pseudo_labels_per_class`` (default: the labelled examples
        per class, at least 8) pool items per class whose calibrated confidence is
        at least the threshold (see :mod:`fewshot.training.self_training`).
    tune:
        Fine-tune the encoder contrastively on the labelled examples before
        fitting the head (SetFit-style): ``True`` (the tuner's defaults), an
        objective name (``"auto"``, ``"cosine"``, ``"supcon"``, ``"pairs"``), a dict of
        :class:`~fewshot.tuning.ContrastiveTuner` settings, or a tuner. The
        encoder given is copied, never changed; the tuned one is ``encoder_``
        and is saved with the model (``body.safetensors``).
    threshold, min_labels:
        Multi-label models (fitted on label lists or an indicator matrix): a label
        is predicted when its probability reaches its own threshold, chosen on
        out-of-fold probabilities to maximise its F1 (``threshold`` sets one for
        all labels instead); with ``min_labels=1`` no row is left without a label
        (its most probable label).
    cache:
        ``True`` for the default embedding cache, a folder or an
        :class:`~fewshot.cache.EmbeddingCache`, or ``False`` to always encode.
        Tuned encoders have their own id, so frozen-encoder vectors are never
        served for them.

    Multi-label data comes as label lists (``[["billing", "urgent"], [], ...]``;
    ``predict`` then returns label lists) or, as in scikit-learn, as a 0/1
    indicator matrix of shape ``(n_items, n_labels)`` (NumPy, SciPy sparse or a
    pandas DataFrame); ``predict`` then returns an indicator matrix with the same
    columns. The label names of the columns are ``fit(..., label_names=[...])``,
    a DataFrame's column names, or else the column numbers 0..n_labels-1;
    ``classes_`` is then in column order. ``multi_label_`` is True for both;
    ``predict_proba`` gives every label's own probability, columns in
    ``classes_`` order.

    The fitted state is ``model_`` (a :class:`~fewshot.model.FittedModel`);
    ``classes_``, ``encoder_``, ``head_`` and the reports below read from it.

    >>> clf = FewShotClassifier().fit(texts, labels)    # doctest: +SKIP
    >>> clf.predict(["what a film"])                    # doctest: +SKIP
    array(['positive'], dtype='<U8')
    """

    def __init__(
        self,
        encoder: str | Encoder | None = None,
        head: str | Head = "auto",
        *,
        calibration: str | None = DEFAULT_CALIBRATION,
        calibration_folds: int = 5,
        label_descriptions: Mapping[Any, str] | None = None,
        self_training_rounds: int = 5,
        pseudo_label_threshold: float = 0.9,
        pseudo_labels_per_class: int | None = None,
        tune: Any = None,
        threshold: float | None = None,
        min_labels: int = 0,
        cache: bool | str | Path | EmbeddingCache = True,
        batch_size: int = 32,
        device: str | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.encoder = encoder
        self.tune = tune
        self.threshold = threshold
        self.min_labels = min_labels
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

    classes_ = _view(lambda m: m.classes, "Labels, in the order of predict_proba's columns.")
    encoder_ = _view(lambda m: m.encoder, "The fitted (possibly tuned) encoder.")
    head_ = _view(lambda m: m.head, "The fitted head.")
    n_train_ = _view(lambda m: m.n_train, "Labelled items fitted on.")
    multi_label_ = _view(lambda m: m.multi_label,
                         "Multi-label: fitted on label lists or an indicator matrix.")
    class_counts_ = _view(lambda m: m.class_counts, "Training rows per class.")
    tuning_ = _view(lambda m: m.tuning, "Tuning settings and report, or None.")
    self_training_ = _view(lambda m: m.self_training, "Self-training report, or None.")
    distillation_ = _view(lambda m: m.distillation, "Distillation report, or None.")
    calibrator_ = _view(lambda m: m.calibration and m.calibration.calibrator,
                        "The fitted calibrator, or None.")
    calibration_info_ = _view(lambda m: m.calibration.info if m.calibration else {},
                              "What calibration was asked for and what ran.")
    oof_proba_ = _view(
        lambda m: m.calibration.oof_proba if m.calibration
        else np.zeros((0, len(m.classes)), np.float32), "Out-of-fold head probabilities.")
    oof_labels_ = _view(lambda m: m.calibration.oof_labels if m.calibration
                        else np.zeros(0, np.int64), "Class indices of oof_proba_'s rows.")
    label_shift_ = _view(lambda m: m.label_shift and m.label_shift.report,
                         "The last label-shift estimate and decision, or None.")
    class_prior_ = _view(lambda m: m.label_shift and m.label_shift.prior,
                         "The class prior probabilities are moved to, or None.")

    # -- fitting ------------------------------------------------------------------
    def fit(
        self, X: Sequence[Any], y: Any, *, unlabelled: Sequence[Any] | None = None,
        label_names: Sequence[Any] | None = None,
    ) -> FewShotClassifier:
        """Embed ``X`` and fit the head on ``y``: one hashable label per item, a list
        of labels per item (multi-label; an empty list is an item with no label), or a
        0/1 indicator matrix (multi-label, one column per label, named by
        ``label_names``; ``predict`` then returns an indicator matrix too).

        With ``label_descriptions``, ``X`` and ``y`` may be empty (zero-shot).
        With ``calibration``, also fits the calibrator on out-of-fold predictions.
        With ``unlabelled`` items (needs ``calibration``), self-trains on them;
        ``self_training_`` reports the rounds.
        """
        from fewshot.training.descriptions import descriptions_for
        from fewshot.training.fitting import check_calibration, fit_embeddings, is_multi_label
        from fewshot.training.self_training import fit_self_trained
        from fewshot.tuning import as_tuner

        self.__dict__.pop("model_", None)  # a failed refit leaves no half-fitted model
        X = item_list(X, "fit()")
        y, names = _from_indicator(y, label_names)
        pool = item_list(unlabelled, "fit(unlabelled=...)") if unlabelled is not None else []
        modality = guess_modality(X) if X else "text"
        descriptions = descriptions_for(self.label_descriptions, y, modality)
        _check_labels(X, y, descriptions)
        calibration = check_calibration(self.calibration, self.calibration_folds)
        if is_multi_label(y) and unlabelled is not None:
            raise UsageError("self-training works with one label per item; drop unlabelled "
                             "for multi-label data")
        if unlabelled is not None and calibration is None:
            raise UsageError(
                "self-training picks pseudo-labels by calibrated confidence; set calibration "
                "('temperature' or 'isotonic') to use unlabelled items"
            )
        encoder = self._make_encoder(modality)
        tuner = as_tuner(self.tune, show_progress=self.show_progress)
        tuning = self._tune(tuner, encoder, X, y) if tuner is not None else None
        if tuning is not None:
            encoder = tuning.pop("encoder")
        extra = None
        if descriptions:
            extra = (self._embed(encoder, list(descriptions.values())), list(descriptions))
        options: dict[str, Any] = {
            "head": self.head, "calibration": calibration,
            "calibration_folds": self.calibration_folds, "extra": extra, "n_train": len(X),
            "tuning": tuning, "label_descriptions": {str(k): v for k, v in descriptions.items()}
            or None,
        }
        Z = self._embed(encoder, X)
        if pool:
            self.model_ = fit_self_trained(
                encoder, Z, y, self._embed(encoder, pool), rounds=self.self_training_rounds,
                threshold=self.pseudo_label_threshold, per_class=self.pseudo_labels_per_class,
                show_progress=self.show_progress, **options,
            )
        else:
            model = fit_embeddings(encoder, Z, y, **options)
            if names is not None:  # fitted on column numbers: the columns get their names
                assert model.thresholds is not None
                model = dataclasses.replace(
                    model, label_names=names, thresholds=dataclasses.replace(
                        model.thresholds, info={**model.thresholds.info, "y": INDICATOR}))
            self.model_ = model
        return self

    def _make_encoder(self, modality: str) -> Encoder:
        if isinstance(self.encoder, Encoder):
            return get_encoder(self.encoder, modality)
        return get_encoder(
            self.encoder, modality, device=self.device, batch_size=self.batch_size,
            show_progress=self.show_progress,
        )

    def _tune(self, tuner: Any, encoder: Encoder, X: list[Any], y: list[Any]) -> dict[str, Any]:
        """Tune a private copy of the encoder, so the one passed in is never changed."""
        if not X:
            raise DataError("tuning needs labelled examples; pass some or drop tune")
        # An Encoder or a model object (a SentenceTransformer, a timm module) is the
        # caller's: tune a copy. Only a name or folder was loaded for this fit alone.
        if not isinstance(self.encoder, str | os.PathLike | None) or encoder.is_tuned:
            encoder = encoder.loaded_copy()
        report = tuner.tune(encoder, X, y)
        requested, ran = tuner.settings_record()
        return {"settings": ran, "requested": requested, "report": report.to_dict(),
                "encoder": encoder}

    def _embed(self, encoder: Encoder, items: list[Any]) -> np.ndarray:
        if not items:
            return np.zeros((0, encoder.dim), dtype=np.float32)
        return embed(encoder, items, as_cache(self.cache), show_progress=self.show_progress)

    # -- predicting ---------------------------------------------------------------
    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Embeddings of ``items`` from the fitted encoder (through the cache)."""
        check_is_fitted(self, "model_")
        items = item_list(items, "predict(), predict_proba() and embed()")
        return self._embed(self.encoder_, items)

    def predict_proba(
        self, X: Sequence[Any], *, calibrated: bool = True, adapt_prior: bool = False
    ) -> np.ndarray:
        """Probabilities, columns in the order of ``classes_``.

        Calibrated when the model was fitted with ``calibration`` (pass
        ``calibrated=False`` for the head's own probabilities), and moved to the
        class prior of :meth:`adapt_prior` when one is in use. ``adapt_prior=True``
        first estimates the class mix of ``X`` itself (one encoder pass serves
        both), as :meth:`adapt_prior` does.
        """
        check_is_fitted(self, "model_")
        raw = self.model_.head.predict_proba(self.embed(X))
        if adapt_prior:
            self._estimate_prior(raw)
        return self.model_.adjust(raw) if calibrated else raw

    def predict(self, X: Sequence[Any]) -> Any:
        """Predicted labels, as given at fit time: an array of labels; for a
        multi-label model a list of label lists (in the order of ``classes_``), or a
        0/1 indicator matrix (int64, columns ``classes_``) if fitted on one."""
        proba = self.predict_proba(X)  # first, so an unfitted model raises NotFittedError
        if not self.model_.multi_label:
            return self.classes_[np.argmax(proba, axis=1)]
        chosen = self.model_.decide(proba, threshold=self.threshold, min_labels=self.min_labels)
        if self.fitted_on_indicator_:
            return chosen
        return [self.classes_[row.astype(bool)].tolist() for row in chosen]

    @property
    def fitted_on_indicator_(self) -> bool:
        """Fitted on an indicator matrix (``predict`` returns one)."""
        check_is_fitted(self, "model_")
        t = self.model_.thresholds
        return t is not None and t.info.get("y") == INDICATOR

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """The fitted calibrator applied to head probabilities (unchanged without one)."""
        return self.model_.calibrate(proba)

    def apply_prior(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities moved to the class prior of :meth:`adapt_prior`."""
        return self.model_.apply_prior(proba)

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
        check_is_fitted(self, "model_")
        items = item_list(X, "adapt_prior()")
        self._estimate_prior(self.model_.head.predict_proba(self.embed(items)) if items else None)
        return self

    def _estimate_prior(self, raw: np.ndarray | None) -> None:
        """Label-shift estimate from the head's own probabilities of unlabelled items."""
        from fewshot.confidence.calibration import held_out_calibrated
        from fewshot.confidence.label_shift import estimate_label_shift

        model = self.model_
        if model.multi_label:
            raise UsageError("a class prior moves one distribution over the classes; a "
                             "multi-label model has independent per-label probabilities")
        if model.calibration is None:
            raise UsageError(
                "estimating the class prior needs calibrated probabilities and out-of-fold "
                "predictions; fit with calibration='temperature' (--calibration temperature)"
            )
        if raw is None:
            raise DataError("no unlabelled items to estimate the class prior from; give some")
        oof, oof_labels = model.calibration.oof_proba, model.calibration.oof_labels
        oof = np.asarray(oof, dtype=np.float64).reshape(-1, len(model.classes))
        report = estimate_label_shift(
            model.calibrate(raw), held_out_calibrated(self, oof, oof_labels), oof_labels,
            model.training_prior, vote_shares=model.head.zero_probabilities,
        )
        # A new model object: copies of this classifier (and the loaded model) keep theirs.
        self.model_ = dataclasses.replace(model, label_shift=LabelShift(
            report.to_dict(), np.asarray(report.prior) if report.used else None))

    def __sklearn_tags__(self) -> Any:  # sklearn.utils.Tags (sklearn ships no types)
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    # -- persistence ----------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder atomically (see :mod:`fewshot.model.folder`)."""
        check_is_fitted(self, "model_")
        return save_model(self.model_, path, overwrite=overwrite)

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
        options = {"device": device, "batch_size": batch_size, "show_progress": show_progress}
        model = load_model(path, encoder=encoder, cache=as_cache(cache), **options)
        return cls.from_model(model, encoder=encoder, cache=cache, **options)

    @classmethod
    def from_model(
        cls, model: FittedModel, *, encoder: str | Encoder | None = None, **options: Any
    ) -> FewShotClassifier:
        """A classifier holding ``model``, with the parameters that refit it the same way
        (so ``clone(clf).fit(...)`` tunes and calibrates as ``model`` was made)."""
        tuning = model.tuning or {}
        info = model.calibration.info if model.calibration else {}
        self = cls(
            encoder=encoder if encoder is not None else model.encoder.name,
            head=clone(model.head), calibration=info.get("requested"),
            calibration_folds=int(info.get("folds", 5)),
            label_descriptions=model.label_descriptions,
            tune=None if tuning.get("distilled_from") else tuning.get("requested"), **options,
        )
        self.model_ = model
        return self


#: ``Thresholds.info["y"]`` of a model fitted on an indicator matrix (saved with it).
INDICATOR = "indicator"


def _from_indicator(y: Any, label_names: Sequence[Any] | None) -> tuple[list[Any], Any]:
    """``(labels, names)``: an indicator matrix becomes label lists of column numbers
    (so the fitted columns keep their order) and the names of its columns; other
    labels pass through as a list, with names None."""
    columns = getattr(y, "columns", None)
    dense = y.toarray() if hasattr(y, "toarray") else y  # SciPy sparse
    if not (isinstance(dense, np.ndarray) and dense.ndim == 2 or columns is not None):
        if label_names is not None:
            raise UsageError("label_names names the columns of an indicator matrix; y is not "
                             "one: drop label_names, or pass y as a 0/1 array of shape "
                             "(n_items, n_labels)")
        return list(y), None
    Y = np.asarray(dense)
    if Y.ndim != 2 or not np.isin(Y, (0, 1)).all():
        raise DataError("an indicator matrix y holds only 0 and 1 (or False and True), one "
                        "column per label; binarise it first")
    if label_names is None:
        label_names = list(columns) if columns is not None else list(range(Y.shape[1]))
    names = list(label_names)
    if len(names) != Y.shape[1] or len(set(names)) != len(names):
        raise UsageError(f"label_names has {len(names)} names ({len(set(names))} distinct) for "
                         f"{Y.shape[1]} columns of y; give one distinct name per column")
    empty = [str(names[j]) for j in np.flatnonzero(Y.sum(axis=0) == 0)]
    if empty:
        raise DataError(f"label(s) {', '.join(empty[:5])} have no positive row in y; drop "
                        "those columns or add examples of them")
    return [np.flatnonzero(row).tolist() for row in Y], np.asarray(names)


def _check_labels(X: list[Any], y: list[Any], descriptions: dict[Any, str]) -> None:
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
    lists = [isinstance(v, list | tuple | set | frozenset) for v in y]
    odd = next((i for i, v in enumerate(y) if isinstance(v, dict | np.ndarray)
                or lists[i] != lists[0]), None)  # the first row unlike the first
    if odd is not None:
        raise DataError(
            f"label {odd} is a {type(y[odd]).__name__} ({y[odd]!r}); give one label (a "
            "string or number) per item, or a list of labels for every item (multi-label)"
        )
    if any(lists):
        return  # label lists: checked as they are binarised
    classes = {*y, *descriptions}
    if len(classes) < 2:
        raise DataError(f"the data has a single class ({next(iter(classes))!r}); a classifier "
                        "needs at least two: add examples of another class")
    alone = ", ".join(repr(k) for k in descriptions if k not in set(y))
    if X and alone:
        warnings.warn(
            f"label descriptions name labels with no examples ({alone}): each becomes a "
            "class learned from its description alone; if that is a typo, use the labels of y",
            stacklevel=3,
        )
