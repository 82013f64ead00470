"""VectorIndex: exact flat search, approximate IVF/HNSW recall, persistence, errors."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from safetensors.numpy import load, save

import fewshot.index.vector_index as vi
from fewshot.index import VectorIndex


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _uniform(n: int, d: int, seed: int = 0) -> np.ndarray:
    return _unit(np.random.default_rng(seed).normal(size=(n, d)))


def _clustered(n: int, d: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Embedding-like data: unit vectors around a few dozen directions."""
    return _unit(centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, d)))


def _recall(exact: np.ndarray, approx: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, approx, strict=True)]))


@pytest.fixture(scope="module")
def clustered_20k() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(64, 48))
    return _clustered(20_000, 48, rng, centers), _clustered(300, 48, rng, centers)


# -- exact search ---------------------------------------------------------------------
def test_flat_equals_raw_faiss() -> None:
    X, Q = _uniform(3000, 24, 0), _uniform(50, 24, 1)
    index = VectorIndex(24, kind="flat").add(X[:1000]).add(X[1000:])
    assert index.structure == "flat"
    assert index.ntotal == len(index) == 3000
    scores, idx = index.search(Q, 7)

    raw = faiss.IndexFlatIP(24)
    raw.add(X)
    raw_scores, raw_idx = raw.search(Q, 7)
    np.testing.assert_array_equal(idx, raw_idx)
    np.testing.assert_array_equal(scores, raw_scores)
    assert scores.shape == idx.shape == (50, 7)
    # Best first, and the scores are the inner products.
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_allclose(scores[:, 0], np.einsum("ij,ij->i", Q, X[idx[:, 0]]), rtol=1e-5)


def test_auto_is_flat_for_small_sets_and_exact() -> None:
    X = _uniform(500, 16)
    index = VectorIndex(16).add(X)
    assert index.structure == "flat"
    _, idx = index.search(X[:20], 1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(20))


def test_auto_switches_to_ivf_above_flat_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vi, "FLAT_MAX", 1000)
    assert VectorIndex(16).add(_uniform(1000, 16)).structure == "flat"
    assert VectorIndex(16).add(_uniform(2000, 16)).structure == "ivf"


def test_add_after_search_is_searchable() -> None:
    X = _uniform(200, 8)
    index = VectorIndex(8, kind="flat").add(X[:100])
    index.search(X[:1], 1)
    index.add(X[100:])
    assert index.ntotal == 200
    _, idx = index.search(X[150:160], 1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(150, 160))


def test_reconstruct_all() -> None:
    X = _uniform(30, 8)
    np.testing.assert_array_equal(VectorIndex(8, kind="flat").add(X).reconstruct_all(), X)


@pytest.mark.parametrize(("kind", "kwargs"), [("ivf", {"nlist": 16}), ("hnsw", {})])
def test_reconstruct_all_of_ivf_and_hnsw_is_exact(kind: str, kwargs: dict) -> None:
    X = _uniform(1000, 8)
    index = VectorIndex(8, kind=kind, **kwargs).add(X[:600])
    assert index.structure == kind  # built and trained on the first 600
    index.add(X[600:])  # added to the built index
    np.testing.assert_array_equal(index.reconstruct_all(), X)
    restored = VectorIndex.from_bytes(index.to_bytes())
    np.testing.assert_array_equal(restored.reconstruct_all(), X)


# -- approximate search ---------------------------------------------------------------
def test_ivf_recall_at_10(clustered_20k: tuple[np.ndarray, np.ndarray], capfd) -> None:
    X, Q = clustered_20k
    _, exact = VectorIndex(48, kind="flat").add(X).search(Q, 10)
    ivf = VectorIndex(48, kind="ivf").add(X)
    assert ivf.structure == "ivf"
    assert ivf.ntotal == 20_000
    # nlist ~ sqrt(n), and never so many that k-means gets under 39 points per list.
    assert ivf._index.nlist == int(20_000**0.5)
    assert "please provide at least" not in capfd.readouterr().err
    _, approx = ivf.search(Q, 10)
    assert _recall(exact, approx) >= 0.9


def test_ivf_probing_every_list_is_exact() -> None:
    X, Q = _uniform(4000, 16, 0), _uniform(40, 16, 1)
    _, exact = VectorIndex(16, kind="flat").add(X).search(Q, 10)
    ivf = VectorIndex(16, kind="ivf", nlist=32, nprobe=32).add(X)
    _, approx = ivf.search(Q, 10)
    assert _recall(exact, approx) == 1.0


def test_ivf_probes_more_lists_when_the_probed_ones_hold_fewer_than_k() -> None:
    # 100 lists of ~4 vectors and nprobe 1: one list cannot hold 20 neighbours.
    X, Q = _uniform(400, 16, 0), _uniform(30, 16, 1)
    ivf = VectorIndex(16, kind="ivf", nlist=100, nprobe=1).add(X)
    assert ivf.structure == "ivf"  # builds the index
    _, raw = ivf._index.search(Q, 20)
    assert (raw < 0).any()  # what faiss alone returns
    scores, idx = ivf.search(Q, 20)
    assert (idx >= 0).all()
    assert all(len(set(row)) == 20 for row in idx.tolist())
    np.testing.assert_allclose(
        scores, np.einsum("qd,qkd->qk", Q, X[idx]), rtol=1e-5, atol=1e-6
    )
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # still best first
    # Only k beyond the index leaves -1s: there is nothing more to find.
    _, idx = ivf.search(Q[:2], 401)
    assert (idx[:, :400] >= 0).all() and (idx[:, 400] == -1).all()


def test_ivf_needs_enough_vectors() -> None:
    index = VectorIndex(8, kind="ivf", nlist=50).add(_uniform(10, 8))
    with pytest.raises(ValueError, match="nlist=50 needs at least 50 vectors, got 10"):
        index.search(_uniform(1, 8), 1)


def test_hnsw_recall() -> None:
    X, Q = _uniform(4000, 16, 0), _uniform(100, 16, 1)
    _, exact = VectorIndex(16, kind="flat").add(X).search(Q, 10)
    hnsw = VectorIndex(16, kind="hnsw").add(X)
    assert hnsw.structure == "hnsw"
    scores, approx = hnsw.search(Q, 10)
    assert _recall(exact, approx) >= 0.9
    assert (approx >= 0).all()
    np.testing.assert_allclose(
        scores[:, 0], np.einsum("ij,ij->i", Q, X[approx[:, 0]]), rtol=1e-5, atol=1e-6
    )


# -- persistence ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [("flat", {}), ("ivf", {"nlist": 16, "nprobe": 3}), ("hnsw", {"ef_search": 20})],
)
def test_bytes_round_trip(kind: str, kwargs: dict) -> None:
    X, Q = _uniform(2000, 12, 0), _uniform(25, 12, 1)
    index = VectorIndex(12, kind=kind, **kwargs).add(X)
    before = index.search(Q, 5)
    blob = index.to_bytes()
    assert isinstance(blob, np.ndarray) and blob.dtype == np.uint8
    # Through safetensors, as a saved model stores it.
    restored = VectorIndex.from_bytes(load(save({"index": blob}))["index"])
    assert restored.structure == kind
    assert restored.dim == 12 and restored.ntotal == 2000
    after = restored.search(Q, 5)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])


def test_round_trip_of_pending_vectors_builds_first() -> None:
    X = _uniform(10, 4)
    restored = VectorIndex.from_bytes(VectorIndex(4).add(X).to_bytes())
    assert restored.ntotal == 10
    np.testing.assert_array_equal(restored.reconstruct_all(), X)


# -- edges and errors -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_k_larger_than_ntotal_gives_minus_one(kind: str) -> None:
    X = _uniform(3, 8)
    scores, idx = VectorIndex(8, kind=kind).add(X).search(X[:2], 5)
    assert idx.shape == (2, 5)
    assert sorted(idx[0, :3].tolist()) == [0, 1, 2]
    assert (idx[:, 3:] == -1).all()
    assert idx[0, 0] == 0 and idx[1, 0] == 1
    assert np.all(scores[:, 3:] < scores[:, 2:3])


def test_empty_flat_index_returns_only_minus_one() -> None:
    _, idx = VectorIndex(4, kind="flat").search(_uniform(2, 4), 3)
    assert (idx == -1).all()


def test_dimension_mismatch_on_add() -> None:
    index = VectorIndex(8)
    with pytest.raises(ValueError, match=r"vectors must have shape \(n, 8\), got \(3, 7\)"):
        index.add(np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match=r"vectors must have shape \(n, 8\), got \(8,\)"):
        index.add(np.zeros(8, np.float32))


def test_dimension_mismatch_on_search() -> None:
    index = VectorIndex(8).add(_uniform(5, 8))
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 8\), got \(1, 9\)"):
        index.search(np.zeros((1, 9), np.float32), 1)


def test_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        VectorIndex(4).add(_uniform(3, 4)).search(_uniform(1, 4), 0)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown index kind 'lsh'; use auto, flat, ivf or hnsw"):
        VectorIndex(4, kind="lsh")  # type: ignore[arg-type]


def test_float64_input_is_accepted() -> None:
    X = _uniform(20, 6).astype(np.float64)
    _, idx = VectorIndex(6).add(X).search(X[:3], 1)
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])


@pytest.mark.parametrize("setting", [{"nprobe": 0}, {"nlist": 0}, {"hnsw_m": 0},
                                     {"ef_search": -1}])
def test_settings_below_one_are_refused(setting) -> None:
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"{name} must be at least 1"):
        VectorIndex(8, kind="ivf", **setting)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_numpy_integer_k_is_accepted(kind) -> None:
    # A GridSearchCV grid of np.arange gives KNNHead a numpy k; faiss takes Python ints only.
    X = _uniform(20, 6)
    index = VectorIndex(6, kind=kind).add(X)
    _, idx = index.search(X[:3], np.int64(2))
    np.testing.assert_array_equal(idx, index.search(X[:3], 2)[1])
