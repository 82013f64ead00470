"""k-nearest-neighbour head: cosine similarity through a FAISS index, weighted vote."""

from __future__ import annotations

from typing import Literal

import numpy as np

from fewshot.heads.base import Head, l2n
from fewshot.index import VectorIndex
from fewshot.index.vector_index import Kind as IndexKind

__all__ = ["KNNHead"]


class KNNHead(Head):
    """Vote among the ``k`` most cosine-similar support examples.

    ``weights="distance"`` weighs each neighbour by ``1 / (1 - cos)`` (as
    scikit-learn weighs by inverse distance), ``"uniform"`` counts them equally.
    Probabilities are each class's share of the vote. The support set lives in a
    :class:`~fewshot.index.VectorIndex` (exact up to 50k vectors, IVF above).

    Multi-label (``y`` an indicator matrix): each label's probability is the share
    of the neighbours' weight whose rows have that label (0 and 1 happen). A query
    with no neighbour at all (possible with IVF) gets each label's training rate.
    """

    name = "knn"
    zero_probabilities = True

    def __init__(
        self, k: int = 5, *, weights: Literal["distance", "uniform"] = "distance",
        index: IndexKind = "auto",
    ) -> None:
        self.k = k
        self.weights = weights
        self.index = index

    def _check_params(self) -> None:
        if self.weights not in ("distance", "uniform"):
            raise ValueError(f"weights must be 'distance' or 'uniform', got {self.weights!r}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    def _fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        self.support_ = l2n(X)
        self.support_labels_ = y_idx.astype(np.int64)
        self._build_index()

    def _build_index(self) -> None:
        self.index_ = VectorIndex(self.support_.shape[1], kind=self.index).add(self.support_)

    def _fit_multilabel(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.support_ = l2n(X)
        self.support_labels_ = Y.astype(np.uint8)
        self._build_index()

    def _neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(weights, support rows)`` of each query's ``k`` neighbours, both ``(n, k)``;
        a missing neighbour has weight 0 (and row 0)."""
        k = min(self.k, len(self.support_))
        sims, idx = self.index_.search(l2n(X), k)
        valid = idx >= 0
        if self.weights == "distance":
            w = 1.0 / np.maximum(1.0 - sims, 1e-6)
        else:
            w = np.ones_like(sims)
        return np.where(valid, w, 0.0), np.where(valid, idx, 0)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        w, idx = self._neighbours(X)
        votes = np.zeros((len(X), len(self.classes_)), dtype=np.float64)
        rows = np.repeat(np.arange(len(X)), w.shape[1])
        np.add.at(votes, (rows, self.support_labels_[idx].ravel()), w.ravel())
        total = votes.sum(axis=1, keepdims=True)
        # A query with no neighbour at all (possible with IVF) gets a uniform vote.
        votes = np.where(total > 0, votes / np.where(total > 0, total, 1), 1 / votes.shape[1])
        return votes.astype(np.float32)

    def _proba_multilabel(self, X: np.ndarray) -> np.ndarray:
        w, idx = self._neighbours(X)
        w = w.astype(np.float64)
        votes = np.einsum("nk,nkl->nl", w, self.support_labels_[idx].astype(np.float64))
        total = w.sum(axis=1, keepdims=True)
        rate = self.support_labels_.mean(axis=0)  # for a query with no neighbour at all
        share = np.where(total > 0, votes / np.where(total > 0, total, 1), rate)
        return share.astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"support": self.support_, "support_labels": self.support_labels_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.support_ = arrays["support"].astype(np.float32)
        n_classes = len(self.classes_)
        if self.multi_label_:
            labels = arrays["support_labels"]
            if labels.shape != (len(self.support_), n_classes) or not np.isin(labels,
                                                                             (0, 1)).all():
                raise ValueError(f"its support labels {labels.shape} are not a 0/1 matrix "
                                 f"of {len(self.support_)} rows and {n_classes} labels")
            self.support_labels_ = labels.astype(np.uint8)
        else:
            labels = self.support_labels_ = arrays["support_labels"].astype(np.int64)
            if len(labels) and not 0 <= labels.min() <= labels.max() < n_classes:
                raise ValueError(f"its class indices do not fit the saved {n_classes} classes")
        self._build_index()
