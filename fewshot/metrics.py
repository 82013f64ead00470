"""Scores of predictions: the classification report and its multi-label counterpart
(scikit-learn's definitions) and calibration (ECE, Brier score). ``fewshot evaluate``
and ``fewshot bench`` report these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fewshot.errors import UsageError

__all__ = ["brier_score", "calibration_scores", "classification_report",
           "expected_calibration_error", "multilabel_report"]


def _kind(label: Any) -> str:
    """``"str"`` or ``"number"`` (bool, int, float), else the type's name."""
    if isinstance(label, str):
        return "str"
    if isinstance(label, (bool, int, float, np.number)):
        return "number"
    return type(label).__name__


def _check_label_types(*label_lists: Sequence[Any]) -> None:
    """One kind of label throughout: 1 and "1" are different labels that cannot be sorted."""
    kinds = {_kind(lab) for labels in label_lists for lab in labels}
    if len(kinds) > 1:
        raise UsageError(
            f"labels mix types ({', '.join(sorted(kinds))}), e.g. 1 and '1' never match; "
            "give y_true, y_pred and labels as one type, e.g. all str"
        )


def classification_report(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1, MCC, per-class precision/recall/F1 and the confusion matrix.

    ``labels`` fixes the row/column order (default: sorted union of both). All
    scores are fractions in [0, 1] (MCC in [-1, 1]).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        matthews_corrcoef,
        precision_recall_fscore_support,
    )

    true = np.asarray(y_true)
    pred = np.asarray(y_pred)
    _check_label_types(
        true.tolist(), pred.tolist(), [] if labels is None else list(labels)
    )
    if labels is None:
        labels = sorted(set(true.tolist()) | set(pred.tolist()))
    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(
        true, pred, labels=labels, zero_division=0
    )
    return {
        "n": int(len(true)),
        "accuracy": float(accuracy_score(true, pred)),
        # scikit-learn's default: every label seen in y_true or y_pred (as fewshot bench)
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(true, pred)),
        "per_class": _per_label(labels, p, r, f, s),
        "confusion_matrix": {
            "labels": [str(lab) for lab in labels],
            "matrix": confusion_matrix(true, pred, labels=labels).tolist(),
        },
    }


def multilabel_report(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> dict[str, Any]:
    """Multi-label scores: macro-F1 over ``labels`` (the headline), micro- and
    samples-F1, subset accuracy, Hamming loss and per-label precision/recall/F1/support.

    ``y_true`` and ``y_pred`` are label lists, one per row (an empty list is a row
    with no label), or 2-D indicator arrays whose columns are ``labels``. Scores are
    scikit-learn's on the binary indicator matrix (``zero_division=0``: a label never
    true nor predicted has F1 0, as does a row with neither). Labels outside
    ``labels`` are a :class:`~fewshot.errors.UsageError` (a ValueError) naming them.
    """
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss
    from sklearn.metrics import precision_recall_fscore_support as prfs

    labels = list(labels)
    _check_label_types(labels)
    if not labels:
        raise UsageError("labels is empty; name the labels to score")
    if len(set(labels)) != len(labels):
        raise UsageError(f"labels {labels} name a label twice; give each label once")
    true = _indicator(y_true, labels, "y_true")
    pred = _indicator(y_pred, labels, "y_pred")
    if true.shape[0] != pred.shape[0]:
        raise UsageError(f"y_true has {true.shape[0]} rows but y_pred has {pred.shape[0]}; "
                         "give one prediction per row")
    if true.shape[0] == 0:
        raise UsageError("y_true has no rows; give at least one row to score")
    p, r, f, s = prfs(true, pred, average=None, zero_division=0)
    return {
        "n": int(true.shape[0]),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
        "samples_f1": float(f1_score(true, pred, average="samples", zero_division=0)),
        "subset_accuracy": float(accuracy_score(true, pred)),
        "hamming_loss": float(hamming_loss(true, pred)),
        "per_label": _per_label(labels, p, r, f, s),
    }


def _indicator(y: Any, labels: list[Any], name: str) -> np.ndarray:
    """The ``(n, len(labels))`` 0/1 matrix of label lists ``y`` (or of ``y`` itself
    when it is already a 2-D indicator array)."""
    if hasattr(y, "toarray"):  # a sparse indicator matrix
        y = y.toarray()
    if isinstance(y, np.ndarray) and y.ndim == 2:
        if y.shape[1] != len(labels) or not np.isin(y, (0, 1)).all():
            raise UsageError(f"{name} as a matrix is 0/1 with one column per label "
                             f"({len(labels)}), got shape {y.shape}")
        return y.astype(np.int64)
    from sklearn.preprocessing import MultiLabelBinarizer

    rows = [row.tolist() if isinstance(row, np.ndarray) else row for row in y]
    flat = []
    for row in rows:
        if isinstance(row, str | bytes) or not hasattr(row, "__iter__"):
            raise UsageError(f"each row of {name} is a list of labels, got {row!r}; "
                             "wrap single labels in a list")
        flat.extend(row)
    _check_label_types(flat, labels)
    known = set(labels)
    unknown = sorted({str(lab) for lab in flat if lab not in known})
    if unknown:
        raise UsageError(f"{name} has labels not in labels: {', '.join(unknown[:5])}"
                         f"{' ...' if len(unknown) > 5 else ''}; add them to labels")
    binarizer = MultiLabelBinarizer(classes=labels)
    return np.asarray(binarizer.fit_transform(rows), dtype=np.int64)


def expected_calibration_error(proba: Any, y_idx: Any, n_bins: int = 15) -> float:
    """Top-label ECE (Guo et al. 2017): ``sum_b |B|/n * |accuracy(B) - confidence(B)|``.

    ``proba`` is ``(n, K)``, ``y_idx`` the true column of each row; bins are
    ``n_bins`` equal-width intervals ``(i/n_bins, (i+1)/n_bins]`` of the top
    probability.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y_idx = np.asarray(y_idx)
    if len(proba) == 0:
        return float("nan")
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_idx).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.sum() * abs(correct[m].mean() - conf[m].mean())
    return float(ece / len(proba))


def brier_score(proba: Any, y_idx: Any) -> float:
    """Multi-class Brier score: mean over rows of ``sum_c (p_c - [y == c])^2`` (0 to 2);
    scikit-learn's ``brier_score_loss`` takes several classes only from 1.7."""
    proba = np.asarray(proba, dtype=np.float64)
    if len(proba) == 0:
        return float("nan")
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(proba)), np.asarray(y_idx)] = 1.0
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def calibration_scores(
    y_true: Sequence[Any], proba: Any, classes: Sequence[Any], *, uncalibrated: Any = None,
    n_bins: int = 15,
) -> dict[str, Any]:
    """ECE and Brier score of ``proba`` (columns follow ``classes``) on the rows whose
    label is one of ``classes`` (other rows have no probability to score); with
    ``uncalibrated`` probabilities, theirs too (``ece_uncalibrated``, ``brier_uncalibrated``)."""
    index = {str(c): i for i, c in enumerate(classes)}
    rows = np.asarray([str(y) in index for y in y_true], dtype=bool)
    if not rows.any():
        return {"ece": None, "brier": None}
    y_idx = np.asarray([index[str(y)] for y in y_true if str(y) in index], dtype=np.int64)
    out: dict[str, Any] = {"calibration_rows": int(rows.sum()),
                           "ece": expected_calibration_error(proba[rows], y_idx, n_bins),
                           "brier": brier_score(proba[rows], y_idx)}
    if uncalibrated is not None:
        out["ece_uncalibrated"] = expected_calibration_error(uncalibrated[rows], y_idx, n_bins)
        out["brier_uncalibrated"] = brier_score(uncalibrated[rows], y_idx)
    return out


def _per_label(labels: Sequence[Any], p: Any, r: Any, f: Any, s: Any) -> dict[str, Any]:
    """``{label: {precision, recall, f1, support}}`` from precision_recall_fscore_support."""
    return {str(lab): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                       "support": int(s[i])} for i, lab in enumerate(labels)}
