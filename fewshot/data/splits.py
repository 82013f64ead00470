"""The few-shot sampling of ../shared/bench/PROTOCOL.md (v1), exactly."""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["few_shot_indices"]


def few_shot_indices(labels: Sequence[object], n_shot: int, seed: int) -> list[int]:
    """Training-row indices for ``n_shot`` examples per class with ``seed``.

    One ``random.Random(seed)`` serves all classes, visited in byte-wise order of
    their string labels; each class contributes ``rng.sample`` of its row indices
    (all of them when it has fewer than ``n_shot``), sorted. This reproduces the
    reference splits in ``bench/splits/`` index for index.
    """
    if n_shot < 1:
        raise ValueError(f"n_shot must be at least 1, got {n_shot}")
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
