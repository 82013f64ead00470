"""Batches for tuning: class-aware batches and SetFit pairs, both linear in n."""

from __future__ import annotations

import numpy as np

__all__ = ["class_balanced_batches", "label_groups", "random_pairs", "sample_label_list_pairs",
           "sample_pairs"]


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


def label_groups(Y: np.ndarray) -> np.ndarray:
    """A group per row of an indicator matrix, for class-aware batches of label lists.

    Each row goes to its rarest label (fewest rows; the lower column on a tie), so
    every row of the rarest labels is grouped with rows of the same label and has
    a positive in its batch, and common labels (which appear on many rows) fill
    the rest. Rows without a label form one more group, ``Y.shape[1]``.
    """
    Y = np.asarray(Y, dtype=bool)
    n_labels = Y.shape[1]
    key = Y.sum(axis=0) * n_labels + np.arange(n_labels)  # by count, then by column
    keyed = np.where(Y, key[None, :], np.iinfo(np.int64).max)
    return np.where(Y.any(axis=1), keyed.argmin(axis=1), n_labels)


def sample_label_list_pairs(
    Y: np.ndarray, pairs_per_item: int, rng: np.random.Generator, overlap: str = "shared"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SetFit-style pairs for label lists (an indicator matrix ``Y``).

    For each row, ``pairs_per_item`` positives (a random one of its labels, then a
    random other row with that label) and as many negatives (rows sharing no
    label; a row without labels is a negative of every labelled row, and two
    rows without labels are never paired). Targets: 1 (``overlap="shared"``) or
    the pair's Jaccard overlap for positives, 0 for negatives. Returns
    ``(left, right, target)``, shuffled.
    """
    Y = np.asarray(Y, dtype=bool)
    n = len(Y)
    members = [np.flatnonzero(Y[:, c]) for c in range(Y.shape[1])]
    sizes = Y.sum(axis=1)
    left, right = [], []
    for i in range(n):
        labels = [c for c in np.flatnonzero(Y[i]) if len(members[c]) > 1]
        if labels:
            picked = rng.choice(labels, pairs_per_item)
            for c in picked:
                rows = members[c]
                j = rows[rng.integers(len(rows) - 1)]
                right.append(rows[-1] if j == i else j)  # any other row with label c
            left.extend([i] * pairs_per_item)
        # Negatives: rows that share no label with i (and are not both unlabelled).
        candidates = rng.integers(0, n, 20 * pairs_per_item)
        ok = candidates[~(Y[candidates] & Y[i]).any(axis=1) & ((sizes[candidates] > 0)
                                                              | (sizes[i] > 0))]
        if len(ok) < pairs_per_item:
            pool = np.flatnonzero(~(Y & Y[i]).any(axis=1) & ((sizes > 0) | (sizes[i] > 0)))
            ok = rng.choice(pool, pairs_per_item) if len(pool) else ok[:0]
        left.extend([i] * len(ok[:pairs_per_item]))
        right.extend(ok[:pairs_per_item].tolist())
    if not left:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    a, b = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    shared = (Y[a] & Y[b]).sum(axis=1)
    union = (Y[a] | Y[b]).sum(axis=1)
    if overlap == "jaccard":
        target = shared / np.maximum(union, 1)
    else:
        target = (shared > 0).astype(np.float64)
    perm = rng.permutation(len(a))
    return a[perm], b[perm], target[perm].astype(np.float64)
