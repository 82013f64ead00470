"""The few-shot sampling of ../shared/bench/PROTOCOL.md (v1.1), exactly."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

__all__ = ["few_shot_indices", "multi_label_few_shot_indices"]


def few_shot_indices(labels: Sequence[object], n_shot: int, seed: int) -> list[int]:
    """Training-row indices for ``n_shot`` examples per class with ``seed``.

    One ``random.Random(seed)`` serves all classes, visited in byte-wise order of
    their string labels; each class contributes ``rng.sample`` of its row indices
    (all of them when it has fewer than ``n_shot``), sorted. This reproduces the
    reference splits in ``bench/splits/`` index for index.

    Label lists (multi-label rows, possibly empty) follow the protocol's
    multi-label procedure: see :func:`multi_label_few_shot_indices`.
    """
    if n_shot < 1:
        raise ValueError(f"n_shot must be at least 1, got {n_shot}")
    if any(isinstance(y, list | tuple | set | frozenset) for y in labels):
        return multi_label_few_shot_indices(labels, n_shot, seed)  # type: ignore[arg-type]
    str_labels = [str(y) for y in labels]
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, y in enumerate(str_labels):
        by_class.setdefault(y, []).append(i)
    chosen: list[int] = []
    # Python orders str by code point, which is UTF-8 byte order.
    for c in sorted(by_class):
        pool = by_class[c]
        chosen.extend(sorted(rng.sample(pool, min(n_shot, len(pool)))))
    return chosen


def multi_label_few_shot_indices(
    label_sets: Sequence[Iterable[object]], n_shot: int, seed: int
) -> list[int]:
    """Sorted training-row indices giving every label at least ``n_shot`` rows.

    Labels are visited in byte-wise order, then (when some row has none) the
    unlabelled rows as one more group; each tops its count up to ``n_shot`` with
    ``rng.sample`` of the rows not chosen yet, one ``random.Random(seed)`` for all.
    """
    if n_shot < 1:
        raise ValueError(f"n_shot must be at least 1, got {n_shot}")
    sets = [frozenset(str(y) for y in ys) for ys in label_sets]
    labels: list[str | None] = [*sorted(frozenset[str]().union(*sets))]
    if not all(sets):
        labels.append(None)  # rows without a label: one more group, last
    rng = random.Random(seed)
    chosen: set[int] = set()
    for c in labels:
        def member(ys: frozenset[str], c: str | None = c) -> bool:
            return c in ys if c is not None else not ys

        need = n_shot - sum(1 for i in chosen if member(sets[i]))
        if need > 0:
            pool = [i for i, ys in enumerate(sets) if member(ys) and i not in chosen]
            chosen.update(rng.sample(pool, min(need, len(pool))))
    return sorted(chosen)
