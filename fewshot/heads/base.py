"""What every head shares: the scikit-learn classifier contract and saving as arrays."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from fewshot._estimator import (
    BaseEstimator,
    ClassifierMixin,
    as_float_matrix,
    check_is_fitted,
    clone,
)

__all__ = ["Head"]


class Head(ClassifierMixin, BaseEstimator):
    """A classifier on embeddings: ``fit(X, y) -> self``, ``predict``, ``predict_proba``.

    ``y`` is one label per row, or (multi-label, scikit-learn's convention) a 0/1
    label-indicator matrix of shape ``(n, L)``: then ``multi_label_`` is True,
    ``classes_`` is ``arange(L)`` (column indices; naming them is the caller's),
    ``predict_proba`` gives each label's own probability (rows need not sum to 1)
    and ``predict`` the indicator ``proba >= 0.5``. Rows with no label are valid.

    Subclasses implement ``_fit(X, y_idx)`` (``y_idx`` indexes ``classes_``),
    ``_proba(X)``, for multi-label ``_fit_multilabel(X, Y)`` / ``_proba_multilabel(X)``,
    and, for saving, ``_arrays()`` / ``_restore(arrays)`` (both modes; ``multi_label_``
    is set before ``_restore``). A head is saved as its constructor parameters (JSON),
    its classes and named arrays (safetensors): nothing that runs code on load.
    """

    name: ClassVar[str] = ""
    #: True when ``predict_proba`` can give exact zeros (vote shares, not a softmax),
    #: so calibration must smooth them before taking logs.
    zero_probabilities: ClassVar[bool] = False

    def fit(self, X: Any, y: Any) -> Head:
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import check_X_y

        self._check_params()
        if _is_indicator(y):
            return self._fit_indicator(X, y)
        X, y = check_X_y(X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self.multi_label_ = False
        self._fit(X, y_idx)
        return self

    def _fit_indicator(self, X: Any, y: Any) -> Head:
        from sklearn.utils.validation import check_X_y

        if not self._supports_multi_label():
            raise ValueError(f"head '{self.name}' has no multi-label mode; give one label "
                             "per row")
        X, Y = check_X_y(X, y, dtype=np.float32, multi_output=True)
        if hasattr(Y, "toarray"):  # a sparse indicator matrix
            Y = Y.toarray()
        if not np.isin(Y, (0, 1)).all():
            raise ValueError("a 2-D y is a label-indicator matrix and holds only 0 and 1, "
                             f"got values {np.unique(Y)[:5].tolist()}")
        self.classes_ = np.arange(Y.shape[1])
        self.n_features_in_ = X.shape[1]
        self.multi_label_ = True
        self._fit_multilabel(X, np.asarray(Y, dtype=np.uint8))
        return self

    def _supports_multi_label(self) -> bool:
        return type(self)._fit_multilabel is not Head._fit_multilabel

    def __sklearn_tags__(self) -> Any:  # sklearn.utils.Tags (sklearn ships no types)
        tags = super().__sklearn_tags__()
        if self._supports_multi_label():
            tags.target_tags.multi_output = True
            tags.classifier_tags.multi_label = True
        return tags

    def _check_params(self) -> None:
        """Raise ``ValueError`` for a setting out of range (checked by ``fit`` and
        ``make_head``, so the CLI rejects it before loading any data)."""

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (float32); for a
        multi-label head each label's own probability."""
        check_is_fitted(self)
        X = as_float_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return self._scores(X)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        if getattr(self, "multi_label_", False):
            return self._proba_multilabel(X)
        return self._proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """``classes_[argmax(predict_proba(X))]``: labels come back as given. A
        multi-label head gives the int64 indicator matrix ``predict_proba(X) >= 0.5``."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before fit
        if getattr(self, "multi_label_", False):
            return (proba >= 0.5).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]

    def for_subsample(self, fraction: float) -> Head:
        """An unfitted clone to fit on ``fraction`` of the data, as this one would fit on all.

        Cross-validation uses it so that fold models behave like the final model;
        heads whose regularisation does not depend on the data size return a clone.
        """
        return clone(self)

    # -- subclass hooks -----------------------------------------------------------
    def _fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        raise NotImplementedError

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fit_multilabel(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Fit on the ``(n, L)`` uint8 indicator ``Y``; a head without it has no
        multi-label mode (``fit`` refuses an indicator matrix)."""
        raise NotImplementedError

    def _proba_multilabel(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # -- persistence --------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)``: JSON-able config and the fitted arrays; a multi-label
        head's config has ``"multi_label": true`` (single-label configs are unchanged)."""
        check_is_fitted(self)
        config = {
            "type": self.name,
            "params": self.get_params(deep=False),
            "classes": self.classes_.tolist(),
            "n_features_in": int(self.n_features_in_),
        }
        if getattr(self, "multi_label_", False):
            config["multi_label"] = True
        if self.classes_.dtype.kind in "iufb":  # int32 labels come back as int32
            config["classes_dtype"] = self.classes_.dtype.str
        return config, {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Head:
        head = cls(**config["params"])
        head._read_config(config)
        dtype = config.get("classes_dtype")
        if dtype is not None:
            try:
                classes = np.asarray(config["classes"], dtype=dtype)
            except (TypeError, ValueError, OverflowError):
                classes = None
            if classes is None or np.dtype(dtype).kind not in "iufb" or (
                    classes.tolist() != config["classes"]):
                raise ValueError(
                    f"its classes_dtype {dtype!r} in fewshot.json does not hold its classes"
                )
            head.classes_ = classes
        else:
            head.classes_ = np.asarray(config["classes"])
        head.n_features_in_ = int(config["n_features_in"])
        multi_label = config.get("multi_label", False)
        if not isinstance(multi_label, bool):
            raise ValueError(f"its multi_label {multi_label!r} is not true or false")
        if multi_label and head.classes_.tolist() != list(range(len(head.classes_))):
            raise ValueError("a multi-label head's classes are its column indices 0..L-1")
        head.multi_label_ = multi_label
        head._restore(arrays)
        head._check_restored()
        return head

    def _read_config(self, config: dict[str, Any]) -> None:
        """Read what a head keeps in its config beyond the base keys (before
        ``_restore``); a value that makes no sense is a ``ValueError``."""

    def _check_restored(self) -> None:
        """Saved arrays that disagree with the saved classes or feature count (a head
        file from another model) are a ValueError here, not a crash at predict time."""
        n_classes, dim = len(self.classes_), self.n_features_in_
        try:
            shape = self._scores(np.zeros((1, dim), np.float32)).shape
        except (ValueError, IndexError) as e:
            raise ValueError(
                f"its arrays do not fit {dim} features and {n_classes} classes: {e}"
            ) from e
        if shape != (1, n_classes):
            raise ValueError(
                f"it gives {shape[-1]} class scores but the model has {n_classes} classes"
            )


def _is_indicator(y: Any) -> bool:
    """Whether ``y`` is a multi-label indicator matrix (2-D, two or more columns). A
    column vector stays single-label (scikit-learn warns and ravels it)."""
    shape = getattr(y, "shape", None)
    if shape is None:  # a list: a matrix only as a list of rows
        if not isinstance(y, list | tuple) or not y or not all(
                isinstance(row, list | tuple | np.ndarray) for row in y):
            return False
    elif len(shape) != 2 or shape[1] < 2:
        return False  # the common case, decided without looking at the values
    from sklearn.utils.multiclass import type_of_target

    try:
        with np.errstate(invalid="ignore"):  # NaN: check_X_y names the problem
            return bool(type_of_target(y) == "multilabel-indicator")
    except (TypeError, ValueError):  # ragged rows...: check_X_y gives the error
        return False


def l2n(x: np.ndarray) -> np.ndarray:
    """Row-normalised copy, zero rows kept. (sklearn's ``normalize`` validates its
    input on each call: some 30 times slower on the one-row queries of kNN search.)"""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def fold_ids(y_idx: Any, n_splits: int = 5, random_state: int = 0) -> np.ndarray:
    """Stratified fold of each row, ``-1`` for rows never held out.

    Each class's rows are shuffled and dealt round-robin over the folds from a
    random start, so every fold holds out at most ``ceil(count / n_splits)`` rows of
    a class and its training part keeps at least one. Classes with one row are
    never held out. Unlike ``StratifiedKFold`` this works with any class counts.
    """
    y_idx = np.asarray(y_idx)
    rng = np.random.default_rng(random_state)
    folds = np.full(len(y_idx), -1, dtype=np.int64)
    counts = np.bincount(y_idx) if len(y_idx) else np.zeros(0, int)
    k = int(min(n_splits, counts.max(initial=0)))
    if k < 2:
        return folds
    for c in np.flatnonzero(counts >= 2):
        rows = rng.permutation(np.flatnonzero(y_idx == c))
        start = int(rng.integers(k))
        folds[rows] = (start + np.arange(len(rows))) % k
    return folds
