"""Batches for tuning: class-aware batches and SetFit pairs, both linear in n."""

from __future__ import annotations

import numpy as np

__all__ = ["class_balanced_batches", "random_pairs", "sample_pairs"]


def class_balanced_batches(
    y: np.ndarray, batch_size: int, per_class: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches, each made of groups of ``per_class`` items of one class.

    Every item appears once per epoch; groups are shuffled across batches, so
    with many classes a batch holds ``batch_size // per_class`` of them, each
    with positives for supervised contrastive loss.
    """
    groups: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        parts = [idx[i : i + per_class] for i in range(0, len(idx), per_class)]
        if len(parts) > 1 and len(parts[-1]) == 1:
            # A lone leftover would have no positive in its batch: it joins the group before.
            parts[-2:] = [np.concatenate(parts[-2:])]
        groups.extend(parts)
    order = rng.permutation(len(groups))
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for g in order:
        current.append(groups[g])
        size += len(groups[g])
        if size >= batch_size:
            batches.append(np.concatenate(current))
            current, size = [], 0
    if current:
        batches.append(np.concatenate(current))
    return batches


def sample_pairs(
    y: np.ndarray, pairs_per_item: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SetFit-style pairs: for each item, ``pairs_per_item`` positives and as many negatives.

    Returns ``(left, right, target)`` index arrays; ``2 * pairs_per_item * n`` pairs,
    so the count grows linearly with the data (setfit's own sampler is also
    linear per iteration, but users raise iterations on large sets). Classes with
    one item give no positives; single-class data gives no negatives.
    """
    left, right, target = [], [], []
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    others = {c: np.flatnonzero(y != c) for c in by_class}  # O(n * classes), not O(n^2)
    n = len(y)
    for i in range(n):
        same = by_class[y[i]]
        same = same[same != i]
        if len(same):
            left.append(np.full(pairs_per_item, i))
            right.append(rng.choice(same, pairs_per_item))
            target.append(np.ones(pairs_per_item))
        other = others[y[i]]
        if len(other):
            left.append(np.full(pairs_per_item, i))
            right.append(rng.choice(other, pairs_per_item))
            target.append(np.zeros(pairs_per_item))
    if not left:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    perm = rng.permutation(sum(len(a) for a in left))
    return (
        np.concatenate(left)[perm],
        np.concatenate(right)[perm],
        np.concatenate(target)[perm],
    )


def random_pairs(
    n: int, pairs_per_item: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)``: each of ``n`` items paired with ``2 * pairs_per_item`` random
    partners, shuffled (distillation's pairs, whose targets come from a teacher)."""
    left = np.repeat(np.arange(n), 2 * pairs_per_item)
    right = rng.integers(0, n, len(left))
    order = rng.permutation(len(left))
    return left[order], right[order]
