"""few_shot_indices follows bench/PROTOCOL.md and reproduces the reference splits."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest

from fewshot.data import few_shot_indices, load_dataset

# Same location as conftest's shared_data fixture; needed at collection time.
SHARED = Path(os.environ.get("FEWSHOT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SPLITS_DIR = SHARED / "bench" / "splits"
IMAGE_SETS = {"hymenoptera", "mnist"}
KEY = re.compile(r"^N=(\d+),seed=(\d+)$")
# Collected at import time so each reference file is its own test; an empty list
# (no ../shared checkout) still runs test_reference_files_exist, which then fails
# in CI through the shared_data fixture.
REFERENCE_FILES = sorted(SPLITS_DIR.glob("*.json")) if SPLITS_DIR.is_dir() else []


def _train_labels(data: Path, name: str) -> list[Any]:
    """Training labels in protocol row order (label lists for multi-label sets)."""
    if name in IMAGE_SETS:
        labels = load_dataset(data / name, "train").labels
        assert labels is not None
        return labels
    with open(data / name / "train.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [row["labels"] if "labels" in row else str(row["label"]) for row in rows]


def test_reference_files_exist(shared_data: Path) -> None:
    names = {p.stem for p in REFERENCE_FILES}
    assert names >= IMAGE_SETS
    assert names >= {"sst2", "trec", "banking77"}
    for name in names:
        assert (shared_data / name).is_dir(), f"reference split for missing dataset {name}"


@pytest.mark.parametrize("ref_file", REFERENCE_FILES, ids=lambda p: p.stem)
def test_reproduces_reference_split(shared_data: Path, ref_file: Path) -> None:
    name = ref_file.stem
    reference = json.loads(ref_file.read_text())
    assert reference, f"{ref_file} holds no splits"
    labels = _train_labels(shared_data, name)
    multi = isinstance(labels[0], list)
    n_classes = len({y for ys in labels for y in ys} if multi else set(labels))
    for key, expected in reference.items():
        m = KEY.match(key)
        assert m, f"unexpected key {key!r} in {ref_file}"
        n_shot, seed = int(m[1]), int(m[2])
        got = few_shot_indices(labels, n_shot, seed)
        assert got == expected, f"{name} {key}: indices differ from the reference"
        assert len(set(got)) == len(got)
        if multi:  # every label has at least N chosen rows (all of them when fewer exist)
            for c in {y for ys in labels for y in ys}:
                have = sum(c in ys for ys in labels)
                assert sum(c in labels[i] for i in got) >= min(n_shot, have)
        else:  # at most N per class
            assert len(got) <= n_shot * n_classes


def test_text_loader_order_matches_file_order(shared_data: Path) -> None:
    """load_dataset keeps JSONL file order, so its labels give the same splits."""
    ds = load_dataset(shared_data / "trec", "train")
    assert ds.labels == _train_labels(shared_data, "trec")
    assert (
        few_shot_indices(ds.labels, 8, 3)
        == json.loads((SPLITS_DIR / "trec.json").read_text())["N=8,seed=3"]
    )


def test_image_rows_sorted_by_relative_path(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "hymenoptera", "train")
    assert ds.ids == sorted(ds.ids, key=lambda r: r.encode("utf-8"))
    assert all(r.split("/", 1)[0] == y for r, y in zip(ds.ids, ds.labels or [], strict=True))


def _protocol(labels: list[str], n: int, seed: int) -> list[int]:
    """PROTOCOL.md's pseudo-code, verbatim."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for c in sorted(set(labels)):
        pool = [i for i, y in enumerate(labels) if y == c]
        take = rng.sample(pool, min(n, len(pool)))
        chosen.extend(sorted(take))
    return chosen


def test_matches_protocol_pseudocode_on_synthetic_labels() -> None:
    rng = random.Random(42)
    labels = [rng.choice(["b", "a", "Z", "é", "a b", "10", "9"]) for _ in range(500)]
    for n in (1, 3, 8, 200):
        for seed in range(4):
            assert few_shot_indices(labels, n, seed) == _protocol(labels, n, seed)


def test_classes_visited_in_byte_order_and_sorted_within() -> None:
    labels = ["b", "B", "a", "b", "B", "a", "b", "B", "a"]
    got = few_shot_indices(labels, 2, 0)
    # "B" < "a" < "b" byte-wise: the first two picks come from class "B".
    assert [labels[i] for i in got] == ["B", "B", "a", "a", "b", "b"]
    for start in range(0, 6, 2):
        assert got[start] < got[start + 1]


def test_non_string_labels_are_compared_as_strings() -> None:
    ints = [10, 9, 10, 9, 10, 9]
    assert few_shot_indices(ints, 1, 5) == few_shot_indices([str(y) for y in ints], 1, 5)
    # "10" sorts before "9" as strings.
    assert ints[few_shot_indices(ints, 1, 5)[0]] == 10


def test_class_smaller_than_n_gives_all_rows() -> None:
    labels = ["rare", "common", "common", "rare", "common", "common", "common"]
    got = few_shot_indices(labels, 3, 0)
    assert [i for i in got if labels[i] == "rare"] == [0, 3]
    assert len([i for i in got if labels[i] == "common"]) == 3
    assert few_shot_indices(labels, 100, 1) == [1, 2, 4, 5, 6, 0, 3]


def test_deterministic_and_seed_dependent() -> None:
    labels = [str(i % 4) for i in range(400)]
    assert few_shot_indices(labels, 5, 7) == few_shot_indices(labels, 5, 7)
    assert few_shot_indices(labels, 5, 7) != few_shot_indices(labels, 5, 8)


@pytest.mark.parametrize("n_shot", [0, -1])
def test_n_shot_below_one_is_value_error(n_shot: int) -> None:
    with pytest.raises(ValueError, match=f"n_shot must be at least 1, got {n_shot}"):
        few_shot_indices(["a", "b"], n_shot, 0)


def test_empty_labels_give_no_rows() -> None:
    assert few_shot_indices([], 4, 0) == []
