"""Label audit: which labelled examples are likely mislabelled, duplicated or odd.

Two independent signals say a label may be wrong: the out-of-fold probability
the head gives the given label (the head never saw that example), and the
share of the example's nearest labelled neighbours in embedding space that
carry the same label. ``suspicion = 1 - ((1 - w) * p(label) + w * agreement)``
ranks the examples; ``w`` (``knn_weight``) is 0.2 by default, because the
head's probability is the stronger signal (on 64-shot ag_news and trec with 10%
flipped labels it finds more of them than the kNN share does) and the kNN share
mostly breaks ties. Near-duplicates are pairs with cosine similarity at or above a
threshold (grouped transitively; a group with two labels is a conflict), also
against a test set, where a duplicate leaks the answer. Outliers are examples
whose nearest neighbours are unusually far (robust z-score below ``-outlier_z``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AuditResult", "audit_labels", "near_duplicate_groups"]


@dataclass
class AuditResult:
    """Per-example scores (rows as given) and the duplicate / outlier findings."""

    suspicion: np.ndarray  # (n,) in [0, 1], higher = more likely mislabelled
    label_proba: np.ndarray  # (n,) out-of-fold calibrated p(given label); NaN if never held out
    knn_agreement: np.ndarray  # (n,) share of the k nearest labelled neighbours agreeing
    suggested: np.ndarray  # (n,) most likely class (column), out-of-fold
    outlier: np.ndarray  # (n,) bool
    outlier_score: np.ndarray  # (n,) robust z-score of the mean neighbour similarity
    duplicate_groups: list[list[int]] = field(default_factory=list)
    test_duplicates: dict[int, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def order(self) -> np.ndarray:
        """Rows, most suspicious first."""
        return np.argsort(-self.suspicion, kind="stable")

    def conflicting_groups(self, y_idx: Any) -> list[list[int]]:
        y_idx = np.asarray(y_idx)
        return [g for g in self.duplicate_groups if len(set(y_idx[g].tolist())) > 1]


def _neighbours(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sims, idx)`` of each row's ``k`` nearest other rows (cosine); -1 pads."""
    from fewshot.heads.base import l2n
    from fewshot.index import VectorIndex

    Zn = l2n(np.asarray(Z, dtype=np.float32))
    kk = min(k + 1, len(Zn))
    sims, idx = VectorIndex(Zn.shape[1], kind="flat").add(Zn).search(Zn, kk)
    out_s = np.full((len(Zn), k), np.nan, np.float32)
    out_i = np.full((len(Zn), k), -1, np.int64)
    for r in range(len(Zn)):
        keep = idx[r] != r
        if keep.all():  # an exact duplicate took the row's own place; drop the last
            keep[-1] = False
        s, i = sims[r][keep][:k], idx[r][keep][:k]
        out_s[r, : len(s)], out_i[r, : len(i)] = s, i
    return out_s, out_i


def near_duplicate_groups(Z: Any, threshold: float = 0.95, k: int = 10) -> list[list[int]]:
    """Groups of rows linked by cosine ``>= threshold`` (transitively), each of size >= 2."""
    Z = np.asarray(Z, dtype=np.float32)
    if len(Z) < 2:
        return []
    return _groups(*_neighbours(Z, min(k, len(Z) - 1)), threshold)


def _groups(sims: np.ndarray, idx: np.ndarray, threshold: float) -> list[list[int]]:
    """:func:`near_duplicate_groups` from ``_neighbours``' output: the connected
    components of the graph of similar pairs, each in row order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(sims)
    rows, cols = np.nonzero((sims >= threshold) & (idx >= 0))
    pairs = coo_matrix((np.ones(len(rows)), (rows, idx[rows, cols])), shape=(n, n))
    label = connected_components(pairs, directed=False)[1]
    groups = np.split(np.argsort(label, kind="stable"), np.cumsum(np.bincount(label))[:-1])
    return sorted((g.tolist() for g in groups if len(g) > 1), key=lambda g: g[0])


def _test_duplicates(
    Z: np.ndarray, Z_test: np.ndarray, threshold: float, k: int = 5
) -> dict[int, list[tuple[int, float]]]:
    from fewshot.heads.base import l2n
    from fewshot.index import VectorIndex

    if len(Z_test) == 0 or len(Z) == 0:
        return {}
    Zt = l2n(np.asarray(Z_test, dtype=np.float32))
    index = VectorIndex(Zt.shape[1], kind="flat").add(Zt)
    sims, idx = index.search(l2n(np.asarray(Z, dtype=np.float32)), min(k, len(Zt)))
    out: dict[int, list[tuple[int, float]]] = {}
    for r, c in zip(*np.nonzero(sims >= threshold), strict=True):
        if idx[r, c] >= 0:
            out.setdefault(int(r), []).append((int(idx[r, c]), float(sims[r, c])))
    return out


def audit_labels(
    Z: Any,
    y_idx: Any,
    n_classes: int,
    *,
    head: Any = "logreg",
    k: int = 10,
    knn_weight: float = 0.2,
    folds: int = 5,
    duplicate_threshold: float = 0.95,
    outlier_z: float = 3.5,
    Z_test: Any = None,
    random_state: int = 0,
) -> AuditResult:
    """Score every labelled row of embeddings ``Z`` (labels ``y_idx`` in ``0..n_classes-1``)."""
    from fewshot.confidence.calibration import fit_calibrator, out_of_fold_proba
    from fewshot.heads import make_head

    Z = np.asarray(Z, dtype=np.float32)
    y_idx = np.asarray(y_idx, dtype=np.int64)
    n = len(Z)
    head = make_head(head)
    proba, held = out_of_fold_proba(
        head, Z, y_idx, n_classes, n_splits=folds, random_state=random_state
    )
    if held.any():
        calibrator, _ = fit_calibrator(
            "temperature", proba, y_idx, zero_probabilities=head.zero_probabilities
        )
        proba[held] = calibrator.transform(proba[held])
    label_proba = np.where(held, proba[np.arange(n), y_idx], np.nan)
    suggested = np.where(held, np.nan_to_num(proba, nan=0.0).argmax(axis=1), y_idx)

    kk = min(k, n - 1)
    if kk >= 1:
        # One exact kNN search serves the kNN share, the outliers and the duplicates.
        sims, idx = _neighbours(Z, kk)
        valid = idx >= 0
        same = (y_idx[np.where(valid, idx, 0)] == y_idx[:, None]) & valid
        agreement = same.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        mean_sim = np.nanmean(np.where(valid, sims, np.nan), axis=1)
        duplicate_groups = _groups(sims, idx, duplicate_threshold)
    else:
        agreement = np.ones(n)
        mean_sim = np.ones(n)
        # k < 1 (Python API only) or one row: duplicates are still looked for, at k=1.
        duplicate_groups = near_duplicate_groups(Z, duplicate_threshold, k=1)
    med = np.median(mean_sim)
    mad = np.median(np.abs(mean_sim - med)) * 1.4826
    outlier_score = (mean_sim - med) / mad if mad > 0 else np.zeros(n)
    p = np.where(np.isnan(label_proba), agreement, label_proba)
    suspicion = 1.0 - ((1.0 - knn_weight) * p + knn_weight * agreement)
    return AuditResult(
        suspicion=suspicion.astype(np.float64),
        label_proba=label_proba,
        knn_agreement=agreement.astype(np.float64),
        suggested=suggested.astype(np.int64),
        outlier=outlier_score < -outlier_z,
        outlier_score=outlier_score.astype(np.float64),
        duplicate_groups=duplicate_groups,
        test_duplicates=(
            _test_duplicates(Z, np.asarray(Z_test), duplicate_threshold)
            if Z_test is not None else {}
        ),
    )
