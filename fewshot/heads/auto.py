"""The ``auto`` head: the candidate that predicts held-out labelled rows best."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fewshot._estimator import clone
from fewshot.heads.base import Head, fold_ids
from fewshot.heads.centroid import CentroidHead
from fewshot.heads.logreg import LogisticRegressionHead

__all__ = ["AutoHead"]


class AutoHead(Head):
    """The centred nearest-centroid head when the labelled rows are few (fewer than
    ``few_rows``, or a median under ``few_per_class`` per class); otherwise whichever
    of it and class-balanced logistic regression (``C`` = 1 or 10) predicts the
    labelled rows best in ``folds``-fold cross-validation, refitted on all of them.

    No one head wins every few-shot regime: with one to a few examples per class,
    or labels picked by ``fewshot suggest``, the class means are the best estimate
    (logistic regression, regularised towards zero weights, leans on its
    unpenalised intercept and names the classes that happen to have more rows),
    and cross-validation on so few rows is too noisy to overrule them; with more
    examples, logistic regression wins, with a stronger penalty on some data and a
    weaker one on other. Balanced class weights keep the mix of the labelled rows,
    which few labels rarely reflect, out of the decision.

    Folds are stratified; a class with one example is never held out (it trains
    every fold). Ties go to the earlier candidate (centroid, then ``C=1``, then
    ``C=10``). ``chosen_`` names the choice (``"centroid"``, ``"logreg C=1"``,
    ``"logreg C=10"``), ``cv_accuracy_`` holds each candidate's held-out accuracy
    (empty without cross-validation) and ``head_`` is the fitted head. The
    thresholds were chosen, and the rule is scored, by leaving each dataset out in
    turn: docs/benchmarks.md, "The default head across few-shot regimes".

    Multi-label (``y`` an indicator matrix): the centroid head when the rows are few
    or the labels have a median under ``few_per_class`` positive rows, else logistic
    regression (``C=1``, one binary model per label, no class weights); no
    cross-validation. Saved as the chosen head's config and arrays.
    """

    name = "auto"
    #: The candidates, in tie-breaking order: name -> head settings.
    CANDIDATES: dict[str, tuple[type[Head], dict[str, Any]]] = {
        "centroid": (CentroidHead, {"center": True}),
        "logreg C=1": (LogisticRegressionHead, {"C": 1.0, "class_weight": "balanced"}),
        "logreg C=10": (LogisticRegressionHead, {"C": 10.0, "class_weight": "balanced"}),
    }

    def __init__(
        self, *, few_rows: float = 24.0, few_per_class: float = 3.0, folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.few_rows = few_rows
        self.few_per_class = few_per_class
        self.folds = folds
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        for key in ("few_rows", "few_per_class"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a number, 0 or more, got {value!r}")

    def _few(self, n_rows: int, counts: np.ndarray) -> bool:
        return n_rows < self.few_rows or float(np.median(counts)) < self.few_per_class

    def for_subsample(self, fraction: float) -> Head:
        """An unfitted head for ``fraction`` of the rows. Fitted, this head hands out its
        choice (the chosen candidate, ``C`` scaled as that head scales it), so the
        folds of out-of-fold calibration need no cross-validation of their own;
        unfitted, a clone with the thresholds scaled alike, so that a fold is judged
        "few" as all the rows are."""
        if hasattr(self, "chosen_") and not self.multi_label_:
            return self._candidate(self.chosen_, fraction)
        return clone(self).set_params(few_rows=self.few_rows * fraction,
                                      few_per_class=self.few_per_class * fraction)

    def _candidate(self, name: str, fraction: float = 1.0) -> Head:
        """A fresh candidate; ``fraction`` of the rows scales C as the final fit's."""
        cls, params = self.CANDIDATES[name]
        head = cls(**params)
        return head.for_subsample(fraction) if fraction != 1.0 else head

    def _fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        with warnings.catch_warnings():
            # fit() has warned about few rows per class once already; not per fold.
            warnings.filterwarnings("ignore", message="The number of unique classes")
            self._choose_and_fit(X, y_idx)

    def _choose_and_fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        self.cv_accuracy_: dict[str, float] = {}
        if self._few(len(y_idx), np.bincount(y_idx)):
            self.chosen_ = "centroid"
            self.head_ = self._candidate("centroid").fit(X, y_idx)
            return
        folds = fold_ids(y_idx, self.folds, self.random_state)
        correct = dict.fromkeys(self.CANDIDATES, 0)
        held = folds >= 0
        for f in np.unique(folds[held]):
            test = folds == f
            for name in self.CANDIDATES:
                head = self._candidate(name, float((~test).sum()) / len(y_idx))
                head.fit(X[~test], y_idx[~test])
                correct[name] += int(np.sum(head.predict(X[test]) == y_idx[test]))
        n_held = int(held.sum())
        self.cv_accuracy_ = {k: (v / n_held if n_held else float("nan"))
                             for k, v in correct.items()}
        # max() keeps the first of equal counts: the tie-breaking order.
        self.chosen_ = max(self.CANDIDATES, key=lambda k: correct[k])
        self.head_ = self._candidate(self.chosen_).fit(X, y_idx)

    def _fit_multilabel(self, X: np.ndarray, Y: np.ndarray) -> None:
        few = self._few(len(Y), Y.sum(axis=0))
        self.chosen_ = "centroid" if few else "logreg C=1"
        self.cv_accuracy_ = {}
        head = CentroidHead(center=True) if few else LogisticRegressionHead(C=1.0)
        self.head_ = head.fit(X, Y)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return self.head_._proba(X)

    def _proba_multilabel(self, X: np.ndarray) -> np.ndarray:
        return self.head_._proba_multilabel(X)

    # -- saving: the chosen head's config and arrays ------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config, arrays = super().get_state()
        inner = self.head_.get_state()[0]
        config["chosen"] = {"name": self.chosen_, "type": inner["type"],
                            "params": inner["params"]}
        return config, arrays

    def _arrays(self) -> dict[str, np.ndarray]:
        return self.head_.get_state()[1]

    def _read_config(self, config: dict[str, Any]) -> None:
        chosen = config.get("chosen")
        if not (isinstance(chosen, dict) and chosen.get("type") in _TYPES
                and isinstance(chosen.get("params"), dict)
                and isinstance(chosen.get("name"), str)):
            raise ValueError(f"its chosen head {chosen!r} is not one of "
                             f"{', '.join(sorted(_TYPES))} with its name and params")
        self.chosen_ = chosen["name"]
        self.cv_accuracy_ = {}
        self._chosen = (_TYPES[chosen["type"]], chosen["params"])

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        cls, params = self._chosen
        del self._chosen
        head = cls(**params)
        head.classes_ = np.arange(len(self.classes_))
        head.n_features_in_ = self.n_features_in_
        head.multi_label_ = self.multi_label_
        head._restore(arrays)
        self.head_ = head


_TYPES: dict[str, type[Head]] = {"centroid": CentroidHead, "logreg": LogisticRegressionHead}
