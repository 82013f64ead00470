"""VectorIndex (exact flat search, approximate IVF/HNSW recall, persistence, errors) and
saved indexes (fewshot index build/info/search: recall, mmap round trip, ids, bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from safetensors.numpy import load, save
from typer.testing import CliRunner

import fewshot.index.vector_index as vi
from fewshot.cli import app
from fewshot.errors import DataError, UsageError
from fewshot.index import SavedIndex, VectorIndex, build_index, load_index
from fewshot.index.saved import choose_kind, choose_nlist, choose_pq_m, gpu_available


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


# == saved indexes: fewshot index build / info / search =================================
def _cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


def _write_pool(folder: Path, x: np.ndarray, name: str = "pool.npy", ids: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.save(path, x)
    if ids:
        (folder / name.replace(".npy", ".ids.json")).write_text(json.dumps(
            {"ids": [f"doc-{i}" for i in range(len(x))],
             "labels": [f"c{i % 3}" for i in range(len(x))], "encoder": "tiny"}))
    return path


@pytest.fixture(scope="module")
def pool_6k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    x = _clustered(6000, 32, rng, rng.normal(size=(40, 32)))
    return _write_pool(tmp_path_factory.mktemp("pool"), x), x


@pytest.fixture(scope="module")
def ivf_6k(pool_6k, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("built") / "ivf"
    manifest = build_index(pool_6k[0], out, kind="ivf-flat", show_progress=False)
    return out, manifest


def test_kind_rule() -> None:
    assert choose_kind(49_999, 384) == "flat"
    assert choose_kind(1_000_000, 384) == "ivf-flat"  # 1.4 GiB of vectors
    assert choose_kind(3_000_000, 384) == "ivf-pq"  # 4.3 GiB: over the 4 GiB default
    assert choose_kind(1_000_000, 384, max_memory=2**30) == "ivf-pq"
    assert choose_nlist(1_000_000) == 4000
    assert choose_nlist(6000) == 6000 // 39  # k-means wants 39 points per list
    assert choose_pq_m(10_000_000, 384) == 192  # d/2: 1.8 GiB of codes fit in 4 GiB
    assert choose_pq_m(100_000_000, 384) == 32  # the largest divisor with n*m <= 4 GiB


def test_ivf_build_recall_is_the_manifests(ivf_6k, pool_6k) -> None:
    out, manifest = ivf_6k
    _, x = pool_6k
    assert manifest["kind"] == "ivf-flat" and manifest["nlist"] == 153
    assert manifest["count"] == 6000 and manifest["dim"] == 32
    assert manifest == json.loads((out / "index.json").read_text())
    r = manifest["recall"]
    assert r["k"] == 10 and r["queries"] == 500 and r["nprobe"] == manifest["nprobe"]
    # Recompute: exact neighbours by numpy, approximate ones from the saved index, each
    # query's own row left out of both.
    rows = np.asarray(r["rows"])
    unit = _unit(x)
    exact = np.argsort(-(unit[rows] @ unit.T), axis=1, kind="stable")[:, :11]
    _, approx = load_index(out).search(x[rows], 11)

    def drop_self(idx: np.ndarray) -> list[set[int]]:
        return [set([j for j in row if j != q][:10])
                for row, q in zip(idx.tolist(), rows, strict=True)]

    found = [len(e & a) / 10 for e, a in zip(drop_self(exact), drop_self(approx), strict=True)]
    assert np.mean(found) == pytest.approx(r["value"], abs=1e-6)
    assert r["value"] >= 0.95 > _recall_at(out, x[rows], exact, nprobe=1)


def _recall_at(out: Path, q: np.ndarray, exact: np.ndarray, nprobe: int) -> float:
    _, approx = load_index(out).search(q, 10, nprobe=nprobe)
    return _recall(exact[:, 1:11], approx)  # the tuned nprobe is the smallest reaching 0.95


def test_mmap_load_round_trip(ivf_6k, pool_6k) -> None:
    out, manifest = ivf_6k
    _, x = pool_6k
    mapped, read = load_index(out), load_index(out, mmap=False)
    lists = faiss.downcast_InvertedLists(mapped._index.invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)  # the vectors stay on disk
    q = x[::37]
    s1, i1 = mapped.search(q, 10)
    s2, i2 = read.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    assert (i1 >= 0).all() and mapped.nprobe == manifest["nprobe"]
    # Unit-length pool vectors are stored bit for bit; scores are cosines.
    np.testing.assert_array_equal(mapped.reconstruct(np.array([0, 5, 5999])), x[[0, 5, 5999]])
    np.testing.assert_allclose(s1, np.einsum("qd,qkd->qk", _unit(q), _unit(x)[i1]), atol=1e-5)


def test_stored_vectors_read_rows_on_demand(ivf_6k, pool_6k) -> None:
    vectors = load_index(ivf_6k[0]).vectors
    unit = pool_6k[1]  # unit-length rows, stored as they are
    assert vectors.shape == (6000, 32) and len(vectors) == 6000
    np.testing.assert_array_equal(vectors[[9, 2]], unit[[9, 2]])
    np.testing.assert_array_equal(vectors[np.array([[1], [0]])], unit[np.array([[1], [0]])])
    np.testing.assert_array_equal(vectors[3], unit[3])
    np.testing.assert_array_equal(vectors[10:13] @ unit[0], unit[10:13] @ unit[0])


def test_vectors_not_of_unit_length_are_normalised(tmp_path: Path) -> None:
    x = _uniform(300, 8) * np.linspace(0.5, 3, 300, dtype=np.float32)[:, None]
    build_index(_write_pool(tmp_path, x), tmp_path / "idx", show_progress=False)
    index = load_index(tmp_path / "idx")
    np.testing.assert_allclose(index.vectors[:], _unit(x), atol=1e-6)
    scores, rows = index.search(x[:5] * 7, 1)  # queries are normalised too
    np.testing.assert_array_equal(rows[:, 0], np.arange(5))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-6)


def test_ids_and_labels_kept(ivf_6k, pool_6k) -> None:
    index = load_index(ivf_6k[0])
    _, x = pool_6k
    assert index.ids == [f"doc-{i}" for i in range(6000)]
    assert index.labels[:4] == ["c0", "c1", "c2", "c0"]
    hits = index.search_ids(x[[7, 4242]], 3)
    assert [h[0][0] for h in hits] == ["doc-7", "doc-4242"]
    assert hits[0][0][1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("fmt", ["safetensors", "parquet"])
def test_other_pool_formats_give_the_same_index(fmt: str, tmp_path: Path, pool_6k) -> None:
    _, x = pool_6k
    x = x[:500]
    ids = [f"doc-{i}" for i in range(500)]
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        path = tmp_path / "pool.safetensors"
        save_file({"embeddings": x}, str(path))
        (tmp_path / "pool.ids.json").write_text(json.dumps({"ids": ids}))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "pool.parquet"
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 32)
        pq.write_table(pa.table({"id": ids, "embedding": vectors}), path, row_group_size=128)
    npy = _write_pool(tmp_path / "npy", x)
    build_index(path, tmp_path / "a", show_progress=False)
    build_index(npy, tmp_path / "b", show_progress=False)
    a, b = load_index(tmp_path / "a"), load_index(tmp_path / "b")
    assert a.kind == b.kind == "flat" and a.ids == b.ids == ids
    np.testing.assert_array_equal(a.search(x[:20], 5)[1], b.search(x[:20], 5)[1])


def test_ivf_pq_records_its_codes_and_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = _clustered(3000, 16, rng, rng.normal(size=(20, 16)))
    manifest = build_index(_write_pool(tmp_path, x), tmp_path / "pq", kind="ivf-pq",
                           show_progress=False)
    assert manifest["pq"] == {"m": 8, "nbits": 8} and manifest["nlist"] == 3000 // 39
    assert 0.5 < manifest["recall"]["value"] <= 1.0
    index = load_index(tmp_path / "pq")
    assert index.kind == "ivf-pq" and index.search_ids(x[:1], 1)[0][0][0] == "doc-0"


def test_cli_build_info_search(tmp_path: Path, pool_6k) -> None:
    _, x = pool_6k
    pool = _write_pool(tmp_path, x[:300])
    built = _cli("index", "build", pool, "-o", tmp_path / "idx", "--kind", "ivf-flat")
    assert built.exit_code == 0, built.output
    assert built.stderr.startswith(f"wrote {tmp_path / 'idx'}: 300 x 32 ivf-flat, nlist 7, ")
    info = _cli("index", "info", tmp_path / "idx")
    assert info.stdout.startswith(f"{tmp_path / 'idx'}: 300 x 32 ivf-flat, nlist 7, nprobe ")
    np.save(tmp_path / "q.npy", x[[3, 9]])
    found = _cli("index", "search", tmp_path / "idx", tmp_path / "q.npy", "-k", "2",
                 "-o", tmp_path / "hits.jsonl")
    assert found.exit_code == 0, found.output
    rows = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1]  # queries without ids: their row numbers
    assert [r["neighbours"][0]["id"] for r in rows] == ["doc-3", "doc-9"]
    assert rows[0]["neighbours"][0]["label"] == "c0" and len(rows[0]["neighbours"]) == 2
    again = _cli("index", "build", pool, "-o", tmp_path / "idx")
    _one_error(again, 2, f"{tmp_path / 'idx'} already exists; choose another output or pass "
               "--force")


# -- bad input --------------------------------------------------------------------------
def test_bad_pools_are_one_line(tmp_path: Path) -> None:
    x = _uniform(100, 8)
    out = tmp_path / "out"
    empty = _write_pool(tmp_path / "e", np.zeros((0, 8), np.float32))
    _one_error(_cli("index", "build", empty, "-o", out), 1,
               f"{empty} holds no vectors; embed at least one item into the pool")
    bare = _write_pool(tmp_path / "b", x, ids=False)
    _one_error(_cli("index", "build", bare, "-o", out), 1,
               f"no ids file pool.ids.json for {bare}; pass --ids FILE (a JSON list, or the "
               ".ids.json fewshot embed writes beside its output)")
    (tmp_path / "few.json").write_text(json.dumps(list(range(99))))
    _one_error(_cli("index", "build", bare, "-o", out, "--ids", tmp_path / "few.json"), 1,
               f"{tmp_path / 'few.json'} has 99 ids but {bare} has 100 vectors; give the ids "
               "file written with these embeddings")
    data = tmp_path / "texts.jsonl"
    data.write_text('{"text": "hi"}\n')
    _one_error(_cli("index", "build", data, "-o", out), 2,
               "texts.jsonl is not an embeddings file (.npy, .safetensors or .parquet); embed "
               "a data file first: fewshot embed texts.jsonl -o pool.npy")
    bad = x.copy()
    bad[42, 3] = np.nan
    nan = _write_pool(tmp_path / "n", bad)
    _one_error(_cli("index", "build", nan, "-o", out), 1,
               f"{nan}: row 42 (id 'doc-42') holds NaN or infinite values; re-embed that item "
               "or drop it from the pool")
    assert not out.exists()


def test_query_dimension_mismatch(ivf_6k, tmp_path: Path) -> None:
    index = load_index(ivf_6k[0])
    message = ("queries must have shape (n, 32), got (2, 31); embed them with the encoder the "
               "pool was embedded with (tiny)")
    with pytest.raises(UsageError) as e:
        index.search(np.zeros((2, 31), np.float32), 3)
    assert str(e.value) == message
    np.save(tmp_path / "q.npy", np.zeros((2, 31), np.float32))
    _one_error(_cli("index", "search", ivf_6k[0], tmp_path / "q.npy"), 2, message)


def test_pool_and_encoder_checks(ivf_6k) -> None:
    index = load_index(ivf_6k[0])
    index.check_ids([f"doc-{i}" for i in range(6000)], "POOL")
    with pytest.raises(DataError) as e:
        index.check_ids([f"doc-{i}" for i in range(5999)] + ["other"], "POOL")
    assert str(e.value) == (f"the index {ivf_6k[0]} row 5999 is id 'doc-5999' but POOL's item "
                            "5999 is 'other'; build the index from POOL's embeddings, in its "
                            "order")
    with pytest.raises(DataError, match="holds 6000 vectors but POOL has 2 items"):
        index.check_ids(["a", "b"], "POOL")
    index.manifest["encoder"] = {"encoder": "all-MiniLM-L6-v2", "encoder_id": "text-1"}
    with pytest.raises(UsageError, match="was embedded with all-MiniLM-L6-v2, not other"):
        index.check_encoder(type("Enc", (), {"id": "text-2", "name": "other"})())


def test_not_an_index_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no index.json: not an index folder; build one"):
        SavedIndex.load(tmp_path)


def test_gpu_option_without_a_gpu_is_refused_or_used(tmp_path: Path) -> None:
    pool = _write_pool(tmp_path, _uniform(200, 8))
    result = _cli("index", "build", pool, "-o", tmp_path / "idx", "--gpu", "--kind", "ivf-flat")
    if gpu_available():
        assert result.exit_code == 0 and "on the GPU" in result.stderr
    else:
        assert result.exit_code == 2 and "--gpu: " in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs faiss-gpu and a CUDA GPU")
def test_gpu_build_matches_cpu_build(tmp_path: Path, pool_6k) -> None:
    cpu = build_index(pool_6k[0], tmp_path / "cpu", kind="ivf-flat", gpu=False,
                      show_progress=False)
    gpu = build_index(pool_6k[0], tmp_path / "gpu", kind="ivf-flat", gpu=True,
                      show_progress=False)
    assert gpu["build"]["gpu"] and not cpu["build"]["gpu"]
    assert gpu["recall"]["value"] >= 0.95 and cpu["recall"]["value"] >= 0.95
    x = pool_6k[1]
    a = load_index(tmp_path / "gpu").search(x[:50], 1)[1]
    np.testing.assert_array_equal(a[:, 0], np.arange(50))  # each vector finds itself


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_builds_from_what_fewshot_embed_writes(suffix: str, tmp_path: Path, sentiment_jsonl,
                                               tiny_text_model_dir) -> None:
    pool = tmp_path / f"pool{suffix}"
    embedded = _cli("embed", sentiment_jsonl, "-o", pool, "--encoder", tiny_text_model_dir,
                    "--cache-dir", tmp_path / "cache", "--device", "cpu")
    assert embedded.exit_code == 0, embedded.output
    built = _cli("index", "build", pool, "-o", tmp_path / "idx")
    assert built.exit_code == 0, built.output
    index = load_index(tmp_path / "idx")
    rows = [json.loads(line) for line in sentiment_jsonl.read_text().splitlines()]
    assert len(index) == len(rows) and index.kind == "flat"
    assert index.labels == [r["label"] for r in rows]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        assert index.ids == pq.read_table(pool)["id"].to_pylist()
        return
    assert index.ids == json.loads(pool.with_suffix(".ids.json").read_text())["ids"]
    assert index.manifest["encoder"]["encoder"] == str(tiny_text_model_dir)
    # Each item's nearest neighbour is itself.
    np.testing.assert_array_equal(index.search(np.load(pool), 1)[1][:, 0], np.arange(len(rows)))
