"""Nearest-centroid head: cosine to class means, optionally SimpleShot-centred."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from fewshot.heads.base import Head, l2n

__all__ = ["CentroidHead"]


class CentroidHead(Head):
    """Score each class by cosine similarity to the mean of its examples.

    ``center=True`` is SimpleShot's CL2N: subtract the training mean, L2-normalise,
    then average (Wang et al. 2019), which helps when all embeddings share a
    large common component. Probabilities are ``softmax(temperature * cosine)``.
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

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids_, "mean": self.mean_.astype(np.float32)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids_ = arrays["centroids"]
        self.mean_ = arrays["mean"]
