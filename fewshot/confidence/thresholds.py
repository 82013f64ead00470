"""Review queue: accept confident predictions at a precision target, send the rest to people.

The acceptance threshold is chosen on out-of-fold predictions over the labelled
set (kept in the model at fit time): rank them by calibrated confidence and take
the largest top slice whose precision reaches the target; its lowest confidence
is the threshold. Conformal prediction sets use the same held-out predictions
as calibration scores (cross-conformal): the set of a new item holds every class
whose calibrated probability is at least ``1 - q``, where ``q`` is the
``ceil((n + 1) * coverage) / n`` quantile of ``1 - p(true class)``.

When the model uses a class prior (:meth:`FewShotClassifier.adapt_prior`), the
held-out rows come from the labelled set's class mix, not the data's: their
probabilities are moved to the prior as new predictions are, and each row is
weighted by ``prior[y] / heldout_mix[y]`` (the held-out rows' own class mix), so
precision, coverage and the conformal quantile are estimated for the data's class
mix (importance weighting under label shift; the conformal quantile counts the
new item at the largest weight, which keeps it conservative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fewshot.errors import ModelError, UsageError

__all__ = [
    "ConformalSets",
    "ReviewResult",
    "Threshold",
    "conformal_quantile",
    "precision_threshold",
    "prediction_sets",
    "review",
]


@dataclass(frozen=True)
class Threshold:
    """Accept a prediction when its calibrated confidence is ``>= threshold``.

    ``precision`` and ``coverage`` are estimated on ``n`` held-out examples;
    ``threshold`` is ``inf`` when no slice reaches the target (accept nothing).
    """

    threshold: float
    target: float
    precision: float
    coverage: float
    n: int
    #: One-sided 95% lower confidence bound on ``precision`` (Clopper-Pearson, on the
    #: accepted held-out rows; with weights, on their effective number): how low the
    #: precision on new data could plausibly be, given how few rows back the estimate.
    #: Approximate, since the cut is chosen on the same rows.
    precision_lower: float = float("nan")
    #: Held-out rows in the accepted slice, and their effective number under weights.
    n_accepted: int = 0
    n_effective: float = 0.0


def precision_threshold(
    confidence: Any, correct: Any, target: float, weight: Any = None
) -> Threshold:
    """The lowest confidence cut whose accepted slice still has precision ``>= target``.

    Cuts fall between distinct confidences only, so ties are accepted or
    rejected together, as they will be on new data. ``weight`` (one per row)
    weights precision and coverage.
    """
    if not 0.0 < target <= 1.0:
        raise UsageError(f"target precision must be in (0, 1], got {target}")
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    none = Threshold(math.inf, target, float("nan"), 0.0, n)
    if n == 0:
        return none
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(-confidence, kind="stable")
    conf, ok, w = confidence[order], correct[order], w[order]
    mass = np.cumsum(w)
    precision = np.cumsum(w * ok) / np.where(mass > 0, mass, 1.0)
    cut_ok = np.append(conf[:-1] > conf[1:], True)  # may stop after position i
    good = np.flatnonzero(cut_ok & (mass > 0) & (precision >= target - 1e-12))
    if len(good) == 0:
        return none
    k = int(good[-1])
    n_eff = float(w[: k + 1].sum() ** 2 / np.square(w[: k + 1]).sum())  # Kish
    return Threshold(float(conf[k]), target, float(precision[k]), float(mass[k] / mass[-1]), n,
                     _lower_bound(float(precision[k]), n_eff), k + 1, n_eff)


def _lower_bound(precision: float, n_eff: float, alpha: float = 0.05) -> float:
    """One-sided Clopper-Pearson lower bound of a proportion over ``n_eff`` rows.

    Approximate here: the cut is chosen on the same rows. In simulations of calibrated
    held-out rows it still held about 95% of the time (tests/test_confidence.py).
    """
    from scipy.stats import beta

    hits = precision * n_eff
    return 0.0 if hits <= 0 else float(beta.ppf(alpha, hits, n_eff - hits + 1))


def conformal_quantile(
    proba: Any, y_idx: Any, coverage: float, weight: Any = None
) -> float:
    """``q`` such that sets ``{c : 1 - p_c <= q}`` hold the true class with ``coverage``.

    Split-conformal quantile of the scores ``1 - p(true class)`` on held-out rows;
    ``inf`` (every class in every set) when there are too few rows for ``coverage``.
    With ``weight`` (one per row), the weighted quantile in which the new item
    counts with the largest weight.
    """
    if not 0.0 < coverage < 1.0:
        raise UsageError(f"conformal coverage must be in (0, 1), got {coverage}")
    proba = np.asarray(proba, dtype=np.float64)
    scores = 1.0 - proba[np.arange(len(proba)), np.asarray(y_idx)]
    n = len(scores)
    if weight is not None:
        w = np.asarray(weight, dtype=np.float64)
        order = np.argsort(scores, kind="stable")
        share = np.cumsum(w[order]) / (w.sum() + (w.max() if n else 0.0))
        reach = np.flatnonzero(share >= coverage - 1e-12)
        return math.inf if len(reach) == 0 else float(scores[order][reach[0]])
    rank = math.ceil((n + 1) * coverage)  # the rank-th smallest score, counting from 1
    if rank > n:
        return math.inf
    return float(np.sort(scores)[rank - 1])


def prediction_sets(proba: Any, q: float) -> np.ndarray:
    """Boolean ``(n, K)``: class ``c`` is in row ``i``'s set when ``1 - p_ic <= q``.

    The predicted class is always in its set, so no set is empty.
    """
    proba = np.asarray(proba, dtype=np.float64)
    sets = (1.0 - proba) <= q + 1e-12
    sets[np.arange(len(proba)), proba.argmax(axis=1)] = True
    return sets


@dataclass(frozen=True)
class ConformalSets:
    coverage: float
    q: float
    sets: np.ndarray  # (n, K) bool


@dataclass(frozen=True)
class ReviewResult:
    """Predictions split into accepted and to-review, with the threshold that split them."""

    proba: np.ndarray  # (n, K) calibrated
    predicted: np.ndarray  # (n,) column of the predicted class
    confidence: np.ndarray  # (n,) calibrated probability of the predicted class
    accepted: np.ndarray  # (n,) bool
    threshold: Threshold
    conformal: ConformalSets | None = None

    def measured(self, labels: Sequence[Any], classes: Sequence[Any]) -> dict[str, Any]:
        """What the accepted slice and the sets really achieved on true ``labels``."""
        index = {c: i for i, c in enumerate(classes)}
        truth = np.asarray([index.get(y, -1) for y in labels])
        correct = self.predicted == truth
        out: dict[str, Any] = {
            "precision_accepted": float(correct[self.accepted].mean())
            if self.accepted.any() else None,
            "accuracy_all": float(correct.mean()),
            "coverage": float(self.accepted.mean()),
            "unknown_labels": int((truth < 0).sum()),
        }
        if self.conformal is not None:
            known = truth >= 0
            hit = self.conformal.sets[np.flatnonzero(known), truth[known]]
            out["conformal_coverage"] = float(hit.mean()) if len(hit) else None
        return out

    def summary(self) -> dict[str, Any]:
        t = self.threshold
        n = len(self.accepted)
        out: dict[str, Any] = {
            "n": n,
            "n_accepted": int(self.accepted.sum()),
            "n_review": int(n - self.accepted.sum()),
            "coverage": float(self.accepted.mean()) if n else 0.0,
            "target_precision": t.target,
            "threshold": None if math.isinf(t.threshold) else t.threshold,
            "estimated_precision": None if math.isnan(t.precision) else t.precision,
            "precision_lower_95": None if math.isnan(t.precision_lower) else t.precision_lower,
            "n_held_out_accepted": t.n_accepted,
            "n_held_out_accepted_effective": t.n_effective,
            "expected_coverage": t.coverage,
            "n_held_out": t.n,
        }
        if self.conformal is not None:
            sizes = self.conformal.sets.sum(axis=1)
            out["conformal"] = {
                "coverage": self.conformal.coverage,
                "q": None if math.isinf(self.conformal.q) else self.conformal.q,
                "mean_set_size": float(sizes.mean()) if n else 0.0,
                "singletons": float((sizes == 1).mean()) if n else 0.0,
            }
        return out


def review(
    clf: Any, proba: Any, *, target_precision: float, conformal: float | None = None
) -> ReviewResult:
    """Split predictions ``proba`` (calibrated, from ``clf``) by ``clf``'s held-out predictions.

    ``clf`` is a :class:`~fewshot.FewShotClassifier` fitted (or saved) with
    ``calibration``, which keeps the out-of-fold predictions this needs.
    """
    oof = clf.oof_proba_
    if len(oof) == 0 and clf.calibrator_ is not None:
        raise ModelError(
            "the model had no labelled example to hold out (a class needs two), so there is "
            "nothing to set a threshold from; train with at least two examples per class"
        )
    if len(oof) == 0:
        raise ModelError(
            "the model keeps no out-of-fold predictions to set a threshold from; retrain it "
            "with calibration (fewshot train --calibration temperature; in Python, "
            "FewShotClassifier(calibration='temperature'), the default)"
        )
    y_held = np.asarray(clf.oof_labels_)
    from fewshot.confidence.calibration import held_out_calibrated

    held = held_out_calibrated(clf, np.asarray(oof, dtype=np.float64), y_held)
    if len(np.unique(y_held)) < 2:
        only = clf.classes_[int(y_held[0])]
        raise ModelError(
            f"only examples of '{only}' could be held out (the other classes have one "
            "example each), so a threshold would speak for that class alone; train with "
            "at least two examples of two or more classes"
        )
    weight = None
    prior = clf.class_prior_
    if prior is not None:
        from fewshot.confidence.label_shift import apply_class_prior

        # The held-out rows get the final model's map, as new predictions do; their
        # weights correct their own class mix (not the training mix, which also counts
        # descriptions and pseudo-labels, never held out) to the prior.
        held = apply_class_prior(held, clf.model_.training_prior, prior)
        mix = np.bincount(y_held, minlength=held.shape[1]) / len(y_held)
        weight = np.asarray(prior)[y_held] / mix[y_held]
    threshold = precision_threshold(
        held.max(axis=1), held.argmax(axis=1) == y_held, target_precision, weight
    )
    proba = np.asarray(proba, dtype=np.float64)
    predicted = proba.argmax(axis=1)
    confidence = proba[np.arange(len(proba)), predicted]
    sets = None
    if conformal is not None:
        q = conformal_quantile(held, y_held, conformal, weight)
        sets = ConformalSets(conformal, q, prediction_sets(proba, q))
    return ReviewResult(
        proba=proba, predicted=predicted, confidence=confidence,
        accepted=confidence >= threshold.threshold, threshold=threshold, conformal=sets,
    )
