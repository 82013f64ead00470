"""Choose what to label next from an unlabelled pool (selective annotation).

- ``diverse``: needs no labels. The pool is clustered into ``budget + n_labelled``
  groups (k-means on the embeddings) and the most *typical* item (densest
  neighbourhood) of each of the largest groups holding no labelled item is
  chosen: TypiClust (Hacohen et al. 2022), which beats random selection most
  when the budget is a few items per class.
- ``uncertain``: the items the current model is least sure of (smallest margin
  between its top two probabilities), with a diversity guard: the most
  uncertain ``10 x budget`` items are clustered into ``budget`` groups and the
  most uncertain item of each group is taken, so a batch is not ten copies of
  one confusing phrasing.
- ``hybrid``: ``diverse`` while there is no model; with one, half the budget
  ``uncertain`` and the rest ``diverse`` over regions not yet covered.
- ``random``: a seeded uniform draw, the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fewshot.errors import DataError, UsageError

__all__ = ["ANNOTATION_STRATEGIES", "Suggestion", "suggest"]

ANNOTATION_STRATEGIES = ("diverse", "uncertain", "hybrid", "random")


class Suggestion(NamedTuple):
    """A pool index to label, its score (typicality or uncertainty) and why."""

    index: int
    score: float
    reason: str


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster labels for ``x`` into ``k`` groups (mini-batch k-means on big pools)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = min(k, len(x))
    if len(x) > 20_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    return model.fit_predict(x)


def _typicality(x: np.ndarray, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverse mean cosine distance to the nearest 20 members (TypiClust's density)."""
    sample = members if len(members) <= 5000 else rng.choice(members, 5000, replace=False)
    sims = x[members] @ x[sample].T
    kk = min(20, len(sample) - 1)
    if kk < 1:
        return np.ones(len(members), dtype=np.float32)
    # The largest similarity of each row is the item itself (when it is in the sample).
    top = -np.partition(-sims, kk, axis=1)[:, 1 : kk + 1]
    return 1.0 / np.maximum(1.0 - top.mean(axis=1), 1e-6)


def _diverse(
    x: np.ndarray, budget: int, labelled: np.ndarray, seed: int
) -> list[Suggestion]:
    rng = np.random.default_rng(seed)
    assign = _kmeans(x, budget + len(labelled), seed)
    covered = set(assign[labelled].tolist())
    sizes = np.bincount(assign)
    order = [c for c in np.argsort(-sizes, kind="stable") if c not in covered]
    taken = set(labelled.tolist())
    out: list[Suggestion] = []
    for c in order:
        if len(out) == budget:
            break
        members = np.array([i for i in np.flatnonzero(assign == c) if i not in taken])
        if len(members) == 0:
            continue
        typ = _typicality(x, members, rng)
        j = int(np.argmax(typ))
        out.append(Suggestion(int(members[j]), float(typ[j]), "diverse"))
        taken.add(int(members[j]))
    return out


def _margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    if proba.shape[1] < 2:
        return np.zeros(len(proba), dtype=np.float32)
    top2 = -np.partition(-proba, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def _uncertain(
    x: np.ndarray, proba: np.ndarray, budget: int, exclude: set[int], seed: int
) -> list[Suggestion]:
    unc = _margin_uncertainty(np.asarray(proba, dtype=np.float64))
    allowed = np.array([i for i in np.argsort(-unc, kind="stable") if i not in exclude])
    cand = allowed[: min(len(allowed), 10 * budget)]
    if len(cand) <= budget:
        return [Suggestion(int(i), float(unc[i]), "uncertain") for i in cand]
    groups = _kmeans(x[cand], budget, seed)
    out = []
    for g in range(groups.max() + 1):
        members = cand[groups == g]
        if len(members):
            j = members[int(np.argmax(unc[members]))]
            out.append(Suggestion(int(j), float(unc[j]), "uncertain"))
    return sorted(out, key=lambda s: -s.score)[:budget]


def suggest(
    embeddings: np.ndarray,
    budget: int,
    *,
    strategy: str = "diverse",
    labelled: Sequence[int] | None = None,
    proba: np.ndarray | None = None,
    seed: int = 0,
) -> list[Suggestion]:
    """``budget`` pool indices to label next, best first.

    ``embeddings`` are the pool's; ``labelled`` are pool indices whose labels are
    already known (never suggested again); ``proba`` are the current model's
    class probabilities for every pool item (needed by ``uncertain``).
    """
    if strategy not in ANNOTATION_STRATEGIES:
        raise UsageError(
            f"unknown strategy '{strategy}'; choose one of {', '.join(ANNOTATION_STRATEGIES)}"
        )
    x = _normalise(embeddings)
    n = len(x)
    labelled_arr = np.asarray(sorted(set(labelled or [])), dtype=np.int64)
    if n == 0:
        raise DataError("the pool is empty; give items to choose from")
    if budget < 1:
        raise UsageError(f"budget must be at least 1, got {budget}")
    free = n - len(labelled_arr)
    if budget > free:
        raise UsageError(
            f"budget {budget} is larger than the unlabelled pool ({free} items); lower --budget"
        )
    if proba is not None and len(proba) != n:
        raise DataError(f"got probabilities for {len(proba)} items but the pool has {n}")
    if strategy == "random":
        rng = np.random.default_rng(seed)
        pool = np.setdiff1d(np.arange(n), labelled_arr)
        return [Suggestion(int(i), 0.0, "random") for i in rng.choice(pool, budget, False)]
    if strategy == "uncertain":
        if proba is None:
            raise UsageError(
                "strategy 'uncertain' needs a model: pass --model MODEL_DIR or --labelled FILE"
            )
        return _uncertain(x, proba, budget, set(labelled_arr.tolist()), seed)
    if strategy == "hybrid" and proba is not None:
        first = _uncertain(x, proba, budget - budget // 2, set(labelled_arr.tolist()), seed)
        if len(first) == budget:
            return first
        known = np.concatenate([labelled_arr, [s.index for s in first]]).astype(np.int64)
        return first + _diverse(x, budget - len(first), known, seed)
    return _diverse(x, budget, labelled_arr, seed)
