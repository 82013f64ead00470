"""Logistic-regression head: scikit-learn's LogisticRegression, saved as plain arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from fewshot._estimator import clone
from fewshot._math import expit, logit, softmax
from fewshot.heads.base import Head

__all__ = ["LogisticRegressionHead"]


class LogisticRegressionHead(Head):
    """``sklearn.linear_model.LogisticRegression`` (lbfgs, L2) on embeddings.

    Saved as ``coef`` and ``intercept`` arrays, never as a pickle; a loaded head
    gives the same probabilities as the fitted one.

    Multi-label (``y`` an indicator matrix) is one-vs-rest: a binary logistic
    regression per label column with these settings, ``coef`` ``(L, d)`` and
    ``intercept`` ``(L,)``, ``predict_proba = expit(X @ coef.T + intercept)``. A
    column that is constant in the training rows (a label never or always present)
    gets zero weights and the intercept of its training rate clipped to
    ``[RATE_CLIP, 1 - RATE_CLIP]``.
    """

    name = "logreg"
    #: A constant label column's probability stays this far from 0 and 1.
    RATE_CLIP = 1e-3

    def __init__(
        self, *, C: float = 1.0, max_iter: int = 1000, class_weight: str | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state

    def _model(self) -> Any:  # a LogisticRegression (sklearn ships no types)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=self.C, max_iter=self.max_iter, class_weight=self.class_weight,
            random_state=self.random_state,
        )

    def _check_params(self) -> None:
        if not (np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a positive number, got {self.C!r}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")

    def for_subsample(self, fraction: float) -> LogisticRegressionHead:
        """A clone with ``C / fraction``: the same penalty per example on fewer examples.

        scikit-learn minimises ``C * sum(loss) + |w|^2 / 2``, so with fewer examples
        the same ``C`` regularises more and gives less confident probabilities.
        """
        return clone(self).set_params(C=self.C / fraction)

    def _fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        if len(self.classes_) < 2:
            raise ValueError(
                f"logistic regression needs at least 2 classes, got {len(self.classes_)} "
                "class; give labelled examples of two or more classes"
            )
        model = self._model().fit(X, y_idx)
        self.coef_, self.intercept_, self.n_iter_ = model.coef_, model.intercept_, model.n_iter_

    def _proba(self, X: np.ndarray) -> np.ndarray:
        # LogisticRegression.predict_proba, from the saved arrays alone: one column of
        # coefficients for two classes (the second class's log-odds), else a softmax.
        logits = X.astype(np.float64) @ self.coef_.T + self.intercept_
        if self.coef_.shape[0] == 1:
            p = expit(logits[:, 0])
            return np.stack([1.0 - p, p], axis=1).astype(np.float32)
        return softmax(logits, axis=1).astype(np.float32)

    def _fit_multilabel(self, X: np.ndarray, Y: np.ndarray) -> None:
        n_labels = Y.shape[1]
        self.coef_ = np.zeros((n_labels, X.shape[1]), dtype=np.float64)
        self.intercept_ = np.zeros(n_labels, dtype=np.float64)
        n_iter = np.zeros(n_labels, dtype=np.int32)
        for j in range(n_labels):
            column = Y[:, j]
            if column.min() == column.max():  # constant: nothing to separate
                rate = np.clip(column.mean(), self.RATE_CLIP, 1 - self.RATE_CLIP)
                self.intercept_[j] = logit(rate)
                continue
            model = self._model().fit(X, column)
            self.coef_[j] = model.coef_[0]
            self.intercept_[j] = model.intercept_[0]
            n_iter[j] = model.n_iter_[0]
        self.n_iter_ = n_iter

    def _proba_multilabel(self, X: np.ndarray) -> np.ndarray:
        logits = X.astype(np.float64) @ self.coef_.T + self.intercept_
        return expit(logits).astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        coef, intercept = arrays["coef"], arrays["intercept"]
        k = len(self.classes_)
        rows = k if self.multi_label_ or k > 2 else 1
        if coef.shape != (rows, self.n_features_in_) or intercept.shape != (rows,):
            raise ValueError(f"coef {coef.shape} and intercept {intercept.shape} do not fit "
                             f"{k} {'labels' if self.multi_label_ else 'classes'} of "
                             f"{self.n_features_in_} features")
        self.coef_, self.intercept_ = coef, intercept
