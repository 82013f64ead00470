"""Nearest-centroid head: cosine to class means, optionally SimpleShot-centred."""

from __future__ import annotations

import numpy as np

from fewshot._math import expit, softmax
from fewshot.heads.base import Head, l2n

__all__ = ["CentroidHead"]


class CentroidHead(Head):
    """Score each class by cosine similarity to the mean of its examples.

    ``center=True`` is SimpleShot's CL2N: subtract the training mean, L2-normalise,
    then average (Wang et al. 2019), which helps when all embeddings share a
    large common component. Probabilities are ``softmax(temperature * cosine)``.

    Multi-label (``y`` an indicator matrix): a centroid per label over the rows that
    have it, and each label's own probability ``expit(temperature * (cosine - 0.5))``,
    a monotone map of the cosine to (0, 1) that gives 0.5 at a cosine of 0.5 (where
    ``predict`` draws the line). Only the order matters: per-label thresholds,
    fitted by the caller on out-of-fold probabilities, make the real decisions. A
    label no training row has gets a zero centroid and probability 0.
    """

    name = "centroid"

    def __init__(self, *, center: bool = False, temperature: float = 10.0) -> None:
        self.center = center
        self.temperature = temperature

    def _check_params(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(
                f"temperature must be a positive number, got {self.temperature!r} (a "
                "negative one would favour the farthest class)"
            )

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return l2n(X - self.mean_ if self.center else X)

    def _fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(X.shape[1], np.float32)
        Z = self._transform(X)
        cents = np.stack([Z[y_idx == c].mean(axis=0) for c in range(len(self.classes_))])
        self.centroids_ = l2n(cents.astype(np.float32))

    def _proba(self, X: np.ndarray) -> np.ndarray:
        sims = self._transform(X) @ self.centroids_.T
        return softmax(self.temperature * sims.astype(np.float64), axis=1).astype(np.float32)

    def _fit_multilabel(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(X.shape[1], np.float32)
        Z = self._transform(X).astype(np.float64)
        counts = Y.sum(axis=0).astype(np.float64)
        sums = Y.T.astype(np.float64) @ Z  # (L, d); a label with no rows sums to 0
        cents = sums / np.maximum(counts, 1)[:, None]
        self.centroids_ = l2n(cents.astype(np.float32))

    def _proba_multilabel(self, X: np.ndarray) -> np.ndarray:
        sims = (self._transform(X) @ self.centroids_.T).astype(np.float64)
        proba = expit(self.temperature * (sims - 0.5))
        # A zero centroid (a label no training row has) has no direction: probability 0.
        proba[:, ~self.centroids_.any(axis=1)] = 0.0
        return proba.astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids_, "mean": self.mean_.astype(np.float32)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids_ = arrays["centroids"]
        self.mean_ = arrays["mean"]
