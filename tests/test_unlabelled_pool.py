"""unlabelled_pool: the items to self-train on, without the labelled ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot.data import Dataset, unlabelled_pool
from fewshot.errors import DataError


def _texts(items: list[str], source: str, labels: list[str] | None = None) -> Dataset:
    return Dataset(items=items, labels=labels, ids=[str(i) for i in range(len(items))],
                   modality="text", source=source)


def test_labelled_items_are_left_out_every_copy() -> None:
    labelled = _texts(["good film", "bad film"], "train.jsonl", ["pos", "neg"])
    pool = _texts(["great plot", "good film", "awful", "good film", "bad film"], "pool.txt")
    assert unlabelled_pool(pool, labelled) == ["great plot", "awful"]
    # An estimate of the class mix keeps the whole population, labelled items too.
    assert unlabelled_pool(pool, labelled, drop_labelled=False) == pool.items


def test_images_are_matched_by_path() -> None:
    labelled = Dataset(items=[Path("a/x.png")], labels=["a"], ids=["x"], modality="image")
    pool = Dataset(items=[Path("a/x.png"), Path("b/y.png")], labels=None, ids=["x", "y"],
                   modality="image")
    assert unlabelled_pool(pool, labelled) == [Path("b/y.png")]


def test_a_pool_of_only_labelled_items_or_of_the_other_kind_is_refused() -> None:
    labelled = _texts(["good film", "bad film"], "train.jsonl", ["pos", "neg"])
    with pytest.raises(DataError, match=r"^every item of pool.txt is also a training example, "
                       "so there is nothing to pseudo-label"):
        unlabelled_pool(_texts(["bad film", "good film"], "pool.txt"), labelled)
    assert unlabelled_pool(_texts(["bad film"], "pool.txt"), labelled,
                           drop_labelled=False) == ["bad film"]
    images = Dataset(items=[Path("a.png")], labels=None, ids=["a"], modality="image",
                     source="imgs/")
    with pytest.raises(DataError, match=r"^imgs/ holds image but the labelled data is text; "
                       "pass matching data$"):
        unlabelled_pool(images, labelled)
