"""EmbeddingCache and embed(): hits, misses, isolation, corruption and crash safety."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fewshot._io
from fewshot.cache import EmbeddingCache, default_cache_dir, embed

TEXTS = ["a good movie", "awful film", "the best story", "sad and dull", "great plot"]


class Counting:
    """Wraps an encoder, records every ``encode`` call; ``id`` can be overridden."""

    def __init__(self, inner: Any, id: str | None = None) -> None:
        self.inner = inner
        self._id = id
        self.calls: list[list[Any]] = []

    @property
    def id(self) -> str:
        return self._id or self.inner.id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def item_key(self, item: Any) -> bytes:
        return self.inner.item_key(item)

    def encode(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.calls.append(list(items))
        return self.inner.encode(items, **kwargs)

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)


class HashEncoder:
    """Deterministic fake encoder: a vector per string, seeded by its hash and ``salt``."""

    def __init__(self, salt: str = "", dim: int = 8) -> None:
        self.id = f"hash-{salt}"
        self.dim = dim
        self.salt = salt

    def item_key(self, item: Any) -> bytes:
        return hashlib.blake2b(str(item).encode(), digest_size=16).digest()

    def vector(self, item: Any) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.salt}|{item}".encode()).digest()[:8], "little")
        return np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)

    def encode(self, items: Sequence[Any], **_: Any) -> np.ndarray:
        return np.stack([self.vector(x) for x in items]) if len(items) else np.zeros((0, self.dim))


def _shards(cache: EmbeddingCache, encoder_id: str) -> list[Path]:
    return sorted(cache._folder(encoder_id).glob("shard-*.safetensors"))


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# -- hits and misses ------------------------------------------------------------------
def test_second_call_hits_cache_with_identical_values(tiny_text_encoder, cache_dir: Path) -> None:
    enc = Counting(tiny_text_encoder)
    cache = EmbeddingCache(cache_dir)
    plain = tiny_text_encoder.encode(TEXTS)

    first = embed(enc, TEXTS, cache)
    assert enc.calls == [TEXTS]
    assert first.dtype == np.float32 and first.shape == (len(TEXTS), tiny_text_encoder.dim)
    np.testing.assert_array_equal(first, plain)

    second = embed(enc, TEXTS, cache)
    assert enc.calls == [TEXTS], "second call must not encode"
    np.testing.assert_array_equal(second, plain)

    # A fresh cache object on the same folder reads what the first one wrote.
    third = embed(enc, list(reversed(TEXTS)), EmbeddingCache(cache_dir))
    assert len(enc.calls) == 1
    np.testing.assert_array_equal(third, plain[::-1])


def test_only_missing_items_are_encoded(tiny_text_encoder, cache_dir: Path) -> None:
    enc = Counting(tiny_text_encoder)
    cache = EmbeddingCache(cache_dir)
    embed(enc, TEXTS[:3], cache)
    misses: list[int] = []
    out = embed(enc, TEXTS, cache, on_miss=misses.append)
    assert enc.calls == [TEXTS[:3], TEXTS[3:]]
    assert misses == [2]
    np.testing.assert_array_equal(out, tiny_text_encoder.encode(TEXTS))


def test_duplicates_in_one_call_encoded_once(tiny_text_encoder, cache_dir: Path) -> None:
    enc = Counting(tiny_text_encoder)
    items = ["awful film", "great plot", "awful film", "awful film", "great plot", "sad"]
    out = embed(enc, items, EmbeddingCache(cache_dir))
    assert enc.calls == [["awful film", "great plot", "sad"]]
    np.testing.assert_array_equal(out, tiny_text_encoder.encode(items))
    np.testing.assert_array_equal(out[0], out[3])


def test_without_cache_encodes_directly(tiny_text_encoder) -> None:
    enc = Counting(tiny_text_encoder)
    out = embed(enc, TEXTS, None)
    np.testing.assert_array_equal(out, tiny_text_encoder.encode(TEXTS))
    embed(enc, TEXTS, None)
    assert enc.n_encoded == 2 * len(TEXTS)


def test_empty_items(cache_dir: Path) -> None:
    enc = HashEncoder()
    out = embed(enc, [], EmbeddingCache(cache_dir))
    assert out.shape[0] == 0
    assert not cache_dir.exists() or _all_files(cache_dir) == []


def test_different_encoder_ids_kept_apart(cache_dir: Path) -> None:
    cache = EmbeddingCache(cache_dir)
    a, b = Counting(HashEncoder("a")), Counting(HashEncoder("b"))
    out_a = embed(a, TEXTS, cache)
    out_b = embed(b, TEXTS, cache)
    assert b.n_encoded == len(TEXTS), "another encoder's entries must not be hits"
    assert not np.allclose(out_a, out_b)
    np.testing.assert_array_equal(embed(a, TEXTS, cache), a.inner.encode(TEXTS))
    np.testing.assert_array_equal(embed(b, TEXTS, cache), b.inner.encode(TEXTS))
    assert a.n_encoded == b.n_encoded == len(TEXTS)
    assert cache._folder("hash-a") != cache._folder("hash-b")
    assert _shards(cache, "hash-a") and _shards(cache, "hash-b")


def test_encoder_id_is_made_path_safe(cache_dir: Path) -> None:
    cache = EmbeddingCache(cache_dir)
    enc = Counting(HashEncoder("x"), id="../evil/id:1")
    embed(enc, TEXTS, cache)
    folder = cache._folder("../evil/id:1")
    assert folder.parent == cache_dir
    assert _shards(cache, "../evil/id:1")
    embed(enc, TEXTS, cache)
    assert enc.n_encoded == len(TEXTS)


def test_lookup_and_store_directly(cache_dir: Path) -> None:
    cache = EmbeddingCache(cache_dir)
    keys = [bytes([i]) * 16 for i in range(4)]
    vecs = np.arange(12, dtype=np.float64).reshape(4, 3)
    cache.store("e", keys[:3], vecs[:3])
    out, found = cache.lookup("e", [keys[2], keys[3], keys[0], keys[2]], 3)
    assert found.tolist() == [True, False, True, True]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[6, 7, 8], [0, 0, 0], [0, 1, 2], [6, 7, 8]])
    cache.store("e", [], np.zeros((0, 3)))
    assert len(_shards(cache, "e")) == 1
    cache.clear("e")
    assert cache.lookup("e", keys, 3)[1].sum() == 0


# -- damaged shards -------------------------------------------------------------------
def _one_shard(cache: EmbeddingCache, enc_id: str) -> Path:
    shards = _shards(cache, enc_id)
    assert len(shards) == 1
    return shards[0]


def test_truncated_shard_detected_and_recomputed(tiny_text_encoder, cache_dir: Path) -> None:
    enc = Counting(tiny_text_encoder)
    cache = EmbeddingCache(cache_dir)
    expected = embed(enc, TEXTS, cache)
    shard = _one_shard(cache, enc.id)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])

    with pytest.warns(UserWarning, match=r"embedding cache: .*shard-.* is unreadable"):
        out = embed(enc, TEXTS, cache)
    assert len(enc.calls) == 2 and enc.calls[1] == TEXTS
    np.testing.assert_array_equal(out, expected)
    assert not shard.exists(), "the damaged shard is removed"
    # The recomputed entries were stored again and are valid.
    np.testing.assert_array_equal(embed(enc, TEXTS, cache), expected)
    assert len(enc.calls) == 2


def test_corrupted_vector_bytes_fail_checksum(tiny_text_encoder, cache_dir: Path) -> None:
    enc = Counting(tiny_text_encoder)
    cache = EmbeddingCache(cache_dir)
    expected = embed(enc, TEXTS, cache)
    shard = _one_shard(cache, enc.id)
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's data, the header stays valid
    shard.write_bytes(bytes(data))

    with pytest.warns(UserWarning, match=r"corrupt \(checksum mismatch\); recomputing"):
        out = embed(enc, TEXTS, cache)
    assert enc.n_encoded == 2 * len(TEXTS)
    np.testing.assert_array_equal(out, expected)
    assert not shard.exists()


def test_garbage_shard_only_costs_its_entries(cache_dir: Path) -> None:
    enc = Counting(HashEncoder())
    cache = EmbeddingCache(cache_dir)
    embed(enc, TEXTS[:2], cache)
    embed(enc, TEXTS[2:], cache)
    bad = _shards(cache, enc.id)[0]
    bad.write_bytes(b"\x00" * 40)
    with pytest.warns(UserWarning, match="unreadable"):
        out = embed(enc, TEXTS, cache)
    assert enc.calls[-1] == TEXTS[:2]
    np.testing.assert_array_equal(out, enc.inner.encode(TEXTS))


# -- crash safety ---------------------------------------------------------------------
@pytest.mark.parametrize("crash", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_during_write_leaves_no_temp_files(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, crash: BaseException
) -> None:
    enc = Counting(HashEncoder())
    cache = EmbeddingCache(cache_dir)
    embed(enc, TEXTS[:2], cache)
    before = _all_files(cache_dir)

    def boom(fd: int) -> None:  # after the bytes are written, before the rename
        raise crash

    monkeypatch.setattr(fewshot._io.os, "fsync", boom)
    if isinstance(crash, OSError):  # the run goes on without storing
        with pytest.warns(UserWarning, match=r"cannot write to .* \(disk full\); going on"):
            out = embed(enc, TEXTS, cache)
        np.testing.assert_array_equal(out, enc.inner.encode(TEXTS))
    else:
        with pytest.raises(KeyboardInterrupt):
            embed(enc, TEXTS, cache)
    monkeypatch.undo()

    assert _all_files(cache_dir) == before, "no partial shard and no temp file"
    assert not [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")]
    out = embed(enc, TEXTS, EmbeddingCache(cache_dir))
    np.testing.assert_array_equal(out, enc.inner.encode(TEXTS))
    assert enc.calls[-1] == TEXTS[2:]


# -- merging --------------------------------------------------------------------------
def test_merge_keeps_all_entries(cache_dir: Path) -> None:
    enc = Counting(HashEncoder(dim=5))
    cache = EmbeddingCache(cache_dir, max_shards=3)
    batches = [[f"item {b}-{i}" for i in range(4)] for b in range(7)]
    batches[5] = batches[5][:2] + batches[1][:2]  # overlapping entries across shards
    all_items: list[str] = []
    for batch in batches:
        embed(enc, batch, cache)
        all_items.extend(x for x in batch if x not in all_items)
        assert len(_shards(cache, enc.id)) <= 3
    encoded = enc.n_encoded
    assert encoded == len(all_items)

    fresh = EmbeddingCache(cache_dir, max_shards=3)
    keys = [enc.item_key(x) for x in all_items]
    vecs, found = fresh.lookup(enc.id, keys, 5)
    assert found.all()
    np.testing.assert_array_equal(vecs, enc.inner.encode(all_items))
    np.testing.assert_array_equal(embed(enc, all_items, fresh), enc.inner.encode(all_items))
    assert enc.n_encoded == encoded
    assert not [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")]


def test_merge_dedups_keys(cache_dir: Path) -> None:
    from safetensors.numpy import load_file

    cache = EmbeddingCache(cache_dir, max_shards=1)
    k = [bytes([i]) * 16 for i in range(3)]
    cache.store("e", k[:2], np.ones((2, 2)))
    cache.store("e", k[1:], np.full((2, 2), 2.0))  # k[1] stored twice
    (shard,) = _shards(cache, "e")
    assert load_file(str(shard))["keys"].shape == (3, 16)
    out, found = cache.lookup("e", k, 2)
    assert found.all()
    np.testing.assert_array_equal(out[[0, 2]], [[1, 1], [2, 2]])


# -- default location -----------------------------------------------------------------
def test_fewshot_cache_env_sets_default_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    cache = EmbeddingCache()
    assert cache.root == tmp_path / "envcache"
    embed(HashEncoder(), TEXTS, cache)
    assert _shards(cache, "hash-")[0].is_relative_to(tmp_path / "envcache")


def test_fewshot_cache_env_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FEWSHOT_CACHE", "~/c")
    assert default_cache_dir() == tmp_path / "c"


def test_default_dir_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_CACHE", raising=False)
    d = default_cache_dir()
    assert d.name == "embeddings" and "fewshot" in d.parts
    assert os.path.isabs(d)


# -- remembered encoder ids -----------------------------------------------------------
def test_warm_run_needs_no_model_load(tiny_text_model_dir: Path, cache_dir: Path) -> None:
    from fewshot.encoders import TextEncoder

    cold = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False)
    expected = embed(cold, TEXTS, EmbeddingCache(cache_dir))
    assert (cache_dir / "encoder-ids.json").is_file()

    warm = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False)
    out = embed(warm, TEXTS, EmbeddingCache(cache_dir))
    np.testing.assert_array_equal(out, expected)
    assert not hasattr(warm, "model_"), "all hits: the weights were never loaded"
    assert warm.id == cold.id and warm.dim == cold.dim

    # A miss loads the model and gives what a cold encoder gives.
    more = embed(warm, ["the worst story"], EmbeddingCache(cache_dir))
    np.testing.assert_array_equal(more, cold.encode(["the worst story"]))


def test_unreadable_id_memo_is_ignored(tiny_text_model_dir: Path, cache_dir: Path) -> None:
    from fewshot.encoders import TextEncoder

    cache_dir.mkdir(parents=True)
    (cache_dir / "encoder-ids.json").write_text("{not json")
    enc = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False)
    out = embed(enc, TEXTS, EmbeddingCache(cache_dir))
    np.testing.assert_array_equal(out, enc.encode(TEXTS))
    fp = enc.fingerprint()
    assert fp is not None
    memo = json.loads((cache_dir / "encoder-ids.json").read_text())
    assert memo[fp] == {"id": enc.id, "dim": enc.dim}


# -- partial progress, the progress bar, an unwritable folder -------------------------
class Interrupted(Counting):
    """Raises KeyboardInterrupt (Ctrl-C) on encode call number ``at`` (0-based)."""

    def __init__(self, inner: Any, at: int) -> None:
        super().__init__(inner)
        self.at = at

    def encode(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        if len(self.calls) == self.at:
            raise KeyboardInterrupt
        return super().encode(items, **kwargs)


def test_interrupted_run_keeps_finished_batches(cache_dir: Path) -> None:
    items = [f"text {i}" for i in range(20)]
    enc = Interrupted(HashEncoder(), at=2)
    with pytest.raises(KeyboardInterrupt):
        embed(enc, items, EmbeddingCache(cache_dir), batch_size=2)
    assert len(enc.calls[0]) == 2, "the first call is one batch"
    done = [x for call in enc.calls for x in call]
    assert done == items[: len(done)] and 2 < len(done) < len(items)
    keys = [enc.item_key(x) for x in items]
    assert EmbeddingCache(cache_dir).lookup(enc.id, keys, 8)[1].tolist() == [
        x in done for x in items
    ]

    rerun = Counting(HashEncoder())
    out = embed(rerun, items, EmbeddingCache(cache_dir), batch_size=2)
    assert [x for call in rerun.calls for x in call] == items[len(done):]
    np.testing.assert_array_equal(out, rerun.inner.encode(items))
    assert len(_shards(EmbeddingCache(cache_dir), enc.id)) == 2


def test_finished_batches_are_stored_while_the_run_goes_on(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run killed outright (no Ctrl-C to catch) keeps what was stored before.
    monkeypatch.setattr("fewshot.cache._FLUSH_SECONDS", 0.0)
    monkeypatch.setattr("fewshot.cache._STEP_SECONDS", 1e9)  # every call counts as quick
    cache = EmbeddingCache(cache_dir, max_shards=2)
    seen: list[int] = []

    class Watching(Counting):
        def encode(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
            seen.append(len(_shards(cache, self.id)))
            return super().encode(items, **kwargs)

    enc = Watching(HashEncoder())
    items = [f"text {i}" for i in range(30)]
    out = embed(enc, items, cache, batch_size=2)
    assert len(enc.calls) == 4  # 2 + 4 + 8 + 16 items: a quick encoder gets more a call
    assert seen == [0, 1, 2, 3], "each finished call was stored before the next began"
    assert len(_shards(cache, enc.id)) == 1, "merged once, at the end"
    np.testing.assert_array_equal(out, enc.inner.encode(items))
    np.testing.assert_array_equal(embed(enc, items, cache), out)
    assert len(enc.calls) == 4


def test_progress_counts_new_distinct_items_and_says_so(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    bars: list[tuple[str, int, list[int]]] = []

    @contextmanager
    def fake_progress(description: str, total: int, enabled: bool | None = None):
        steps: list[int] = []
        bars.append((description, total, steps))
        yield lambda n=1, info=None: steps.append(n)

    monkeypatch.setattr("fewshot._progress.progress", fake_progress)
    monkeypatch.setattr("fewshot.cache._STEP_SECONDS", 1e9)  # every call counts as quick
    enc = HashEncoder()
    enc.modality = "text"  # type: ignore[attr-defined]
    cache = EmbeddingCache(cache_dir)
    embed(enc, ["a", "b"], cache)
    bars.clear()
    items = ["a", "c", "d", "c", "b", "e", "f", "g", "h", "c", "i"]
    embed(enc, items, cache, batch_size=2)
    assert bars == [
        ("Embedding 7 new texts (11 rows, 2 cached, 2 repeated)", 7, [2, 4, 1])
    ]
    bars.clear()
    embed(enc, items, cache)
    assert bars == [], "no bar when everything is cached"
    # An encoder slower than the step target gets one batch a call: the bar moves per batch.
    monkeypatch.setattr("fewshot.cache._STEP_SECONDS", 0.0)
    embed(enc, [f"new {i}" for i in range(7)], cache, batch_size=3)
    assert bars == [("Embedding 7 new texts (7 rows, 0 cached)", 7, [3, 3, 1])]


def test_unwritable_cache_folder_is_one_warning(
    tiny_text_encoder, tmp_path: Path
) -> None:
    # Under a regular file no one can create the folder, root included.
    (tmp_path / "file").write_text("")
    root = tmp_path / "file" / "cache"
    cache = EmbeddingCache(root)
    enc = Counting(tiny_text_encoder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = embed(tiny_text_encoder, TEXTS, cache)  # the id memo and the shard both fail
        again = embed(enc, TEXTS, cache)
    assert [str(w.message) for w in caught] == [
        f"embedding cache: cannot write to {root} (Not a directory); going on without "
        "storing embeddings (pass a writable --cache-dir, or --no-cache)"
    ]
    np.testing.assert_array_equal(out, tiny_text_encoder.encode(TEXTS))
    np.testing.assert_array_equal(again, out)
    assert enc.calls == [TEXTS]
