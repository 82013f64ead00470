"""What every head shares: the scikit-learn classifier contract and saving as arrays."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

__all__ = ["Head"]


class Head(ClassifierMixin, BaseEstimator):
    """A classifier on embeddings: ``fit(X, y) -> self``, ``predict``, ``predict_proba``.

    Subclasses implement ``_fit(X, y_idx)`` (``y_idx`` indexes ``classes_``),
    ``_proba(X)`` and, for saving, ``_arrays()`` / ``_restore(arrays)``. A head is
    saved as its constructor parameters (JSON), its classes and named float
    arrays (safetensors): nothing that runs code on load.
    """

    name: ClassVar[str] = ""
    #: True when ``predict_proba`` can give exact zeros (vote shares, not a softmax),
    #: so calibration must smooth them before taking logs.
    zero_probabilities: ClassVar[bool] = False

    def fit(self, X: Any, y: Any) -> Head:
        self._check_params()
        X, y = check_X_y(X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self._fit(X, y_idx)
        return self

    def _check_params(self) -> None:
        """Raise ``ValueError`` for a setting out of range (checked by ``fit`` and
        ``make_head``, so the CLI rejects it before loading any data)."""

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return self._proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """``classes_[argmax(predict_proba(X))]``: labels come back as given."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]

    def for_subsample(self, fraction: float) -> Head:
        """An unfitted clone to fit on ``fraction`` of the data, as this one would fit on all.

        Cross-validation uses it so that fold models behave like the final model;
        heads whose regularisation does not depend on the data size return a clone.
        """
        from sklearn.base import clone

        return clone(self)

    # -- subclass hooks -----------------------------------------------------------
    def _fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        raise NotImplementedError

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # -- persistence --------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)``: JSON-able config and the fitted arrays."""
        check_is_fitted(self)
        config = {
            "type": self.name,
            "params": self.get_params(deep=False),
            "classes": self.classes_.tolist(),
            "n_features_in": int(self.n_features_in_),
        }
        if self.classes_.dtype.kind in "iufb":  # int32 labels come back as int32
            config["classes_dtype"] = self.classes_.dtype.str
        return config, {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Head:
        head = cls(**config["params"])
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
        head._restore(arrays)
        head._check_restored()
        return head

    def _check_restored(self) -> None:
        """Saved arrays that disagree with the saved classes or feature count (a head
        file from another model) are a ValueError here, not a crash at predict time."""
        n_classes, dim = len(self.classes_), self.n_features_in_
        try:
            shape = self._proba(np.zeros((1, dim), np.float32)).shape
        except (ValueError, IndexError) as e:
            raise ValueError(
                f"its arrays do not fit {dim} features and {n_classes} classes: {e}"
            ) from e
        if shape != (1, n_classes):
            raise ValueError(
                f"it gives {shape[-1]} class scores but the model has {n_classes} classes"
            )


def l2n(x: np.ndarray) -> np.ndarray:
    """Row-normalised copy, zero rows kept. (sklearn's ``normalize`` validates its
    input on each call: some 30 times slower on the one-row queries of kNN search.)"""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
