"""Self-training: grow a few-shot training set with confident pseudo-labels, in rounds.

Each round the current model predicts the unlabelled pool; items whose
calibrated confidence reaches ``threshold`` are candidates, and each class
takes at most ``per_class`` of its most confident candidates, so an easy class
cannot flood the training set. The chosen items join the training rows with
their predicted labels and the model is refitted; calibration keeps being
estimated on the real labels only (pseudo-labelled rows are never held out).
Rounds stop early when nothing new qualifies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fewshot.model.state import FittedModel

__all__ = ["SelfTrainingReport", "fit_self_trained", "select_pseudo_labels", "self_train"]


@dataclass
class SelfTrainingReport:
    """What each round added: ``rounds[i] = {"round", "added", "per_class", "threshold"}``."""

    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(r["added"] for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "rounds": self.rounds}


def select_pseudo_labels(
    proba: np.ndarray, threshold: float, per_class: int, available: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, labels)``: the same number of most confident rows for every class.

    Only rows with ``available`` true and confidence ``>= threshold`` qualify; a
    row counts for the class it is predicted as. Every class gets
    ``min(per_class, fewest candidates of any class)`` rows, so nothing is added
    while some class has no confident candidate: adding to some classes only
    skews the head towards them, which costs more accuracy than the pseudo-labels
    bring.
    """
    conf = proba.max(axis=1)
    pred = proba.argmax(axis=1)
    cands = [
        np.flatnonzero(available & (pred == c) & (conf >= threshold))
        for c in range(proba.shape[1])
    ]
    take = min(per_class, *(len(c) for c in cands))
    if take == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, labels = [], []
    for c, cand in enumerate(cands):
        top = cand[np.argsort(-conf[cand], kind="stable")[:take]]
        rows.append(top)
        labels.append(np.full(len(top), c, dtype=np.int64))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(labels)


def self_train(
    fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
    pool: np.ndarray,
    *,
    rounds: int = 5,
    threshold: float = 0.9,
    per_class: int = 8,
    class_names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Callable[[np.ndarray], np.ndarray], SelfTrainingReport]:
    """Run the rounds; returns the final ``predict_proba`` and the report.

    ``fit(pool_rows, pseudo_labels)`` refits the model on the labelled data plus
    those pool rows and returns its calibrated ``predict_proba`` over
    embeddings; it is called once with no pseudo-labels, then once per round
    that adds something. ``pool`` holds the unlabelled embeddings.
    """
    report = SelfTrainingReport()
    chosen_rows = np.zeros(0, np.int64)
    chosen_labels = np.zeros(0, np.int64)
    available = np.ones(len(pool), dtype=bool)
    proba_fn = fit(chosen_rows, chosen_labels)
    for r in range(1, rounds + 1):
        if not available.any():
            break
        proba = proba_fn(pool)
        rows, labels = select_pseudo_labels(proba, threshold, per_class, available)
        if progress is not None:
            progress(1)
        if len(rows) == 0:
            break
        available[rows] = False
        chosen_rows = np.concatenate([chosen_rows, rows])
        chosen_labels = np.concatenate([chosen_labels, labels])
        counts = np.bincount(labels, minlength=proba.shape[1])
        names = class_names or [str(c) for c in range(proba.shape[1])]
        report.rounds.append({
            "round": r, "added": int(len(rows)), "threshold": threshold,
            "per_class": {names[c]: int(n) for c, n in enumerate(counts) if n},
        })
        proba_fn = fit(chosen_rows, chosen_labels)
    return proba_fn, report


def fit_self_trained(
    encoder: Any,
    Z: np.ndarray,
    y: Sequence[Any],
    pool: np.ndarray,
    *,
    rounds: int = 5,
    threshold: float = 0.9,
    per_class: int | None = None,
    show_progress: bool | None = None,
    **fit_options: Any,
) -> FittedModel:
    """:func:`~fewshot.training.fitting.fit_embeddings` grown by self-training on ``pool``.

    ``pool`` holds the unlabelled embeddings; ``per_class=None`` takes the
    median number of labelled examples per class, at least 8. Needs a
    ``calibration`` in ``fit_options``: pseudo-labels are picked by calibrated
    confidence. The model's ``self_training`` record reports the rounds.
    """
    from fewshot._progress import progress
    from fewshot.training.fitting import fit_embeddings

    if per_class is None:
        counts = np.unique(np.asarray(y), return_counts=True)[1] if len(y) else [0]
        per_class = max(8, int(np.median(counts)))
    extra = fit_options.get("extra")
    names = [str(c) for c in np.unique(np.asarray([*y, *(extra[1] if extra else [])]))]
    models: list[FittedModel] = []

    def fit(rows: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        pseudo = models[-1].classes[labels].tolist() if len(labels) else []
        models.append(fit_embeddings(encoder, Z, y, pseudo=(pool[rows], pseudo), **fit_options))
        return models[-1].predict_proba

    with progress("self-training", rounds, show_progress) as advance:
        _, report = self_train(fit, pool, rounds=rounds, threshold=threshold,
                               per_class=per_class, class_names=names, progress=advance)
    models[-1].self_training = {**report.to_dict(), "pool": len(pool), "per_class": per_class}
    return models[-1]
