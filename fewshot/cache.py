"""On-disk embedding cache keyed by encoder id and item content.

Layout: ``<root>/<encoder id>/shard-*.safetensors``, each shard holding ``keys``
(``n x 16`` content digests) and ``vectors`` (``n x dim`` float32) plus a checksum
in its metadata. Shards are written to a temporary file and renamed into place,
so a killed run leaves no partial shard; a shard that fails to open or whose
checksum does not match is deleted and its items are embedded again. Many small
shards are merged into one once there are more than ``max_shards``.

:func:`embed` stores finished items every ``_FLUSH_SECONDS`` and when stopped (Ctrl-C,
an error), so a rerun resumes; a cache folder that cannot be written is a warning, and
the run goes on without storing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._io import atomic_file

__all__ = ["EmbeddingCache", "as_cache", "default_cache_dir", "embed"]

_FORMAT = "1"
_KEY_BYTES = 16
#: embed() stores finished embeddings at least this often (seconds).
_FLUSH_SECONDS = 10.0
#: embed() sizes its encode calls to take about this long, so its bar moves smoothly.
_STEP_SECONDS = 2.0


def default_cache_dir() -> Path:
    """``$FEWSHOT_CACHE`` if set, else the user cache dir (``~/.cache/fewshot``)."""
    env = os.environ.get("FEWSHOT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fewshot")) / "embeddings"


def _checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(keys.tobytes())
    h.update(vectors.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings on disk, looked up by ``(encoder_id, item key)``."""

    def __init__(self, root: str | Path | None = None, *, max_shards: int = 16) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_shards = max_shards
        self._writable = True  # until a write fails

    def _cannot_write(self, e: OSError) -> None:
        if self._writable:
            self._writable = False
            warnings.warn(
                f"embedding cache: cannot write to {self.root} ({e.strerror or e}); going on "
                "without storing embeddings (pass a writable --cache-dir, or --no-cache)",
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def _folder(self, encoder_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)
        return self.root / safe

    def _shards(self, encoder_id: str) -> list[Path]:
        folder = self._folder(encoder_id)
        return sorted(folder.glob("shard-*.safetensors")) if folder.is_dir() else []

    def _drop(self, shard: Path, why: str) -> None:
        warnings.warn(f"embedding cache: {shard} is {why}; recomputing its entries", stacklevel=4)
        try:
            shard.unlink(missing_ok=True)
        except OSError as e:
            self._cannot_write(e)

    def _read_keys(self, shard: Path) -> np.ndarray | None:
        from safetensors import safe_open

        try:
            with safe_open(str(shard), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _FORMAT:
                    return None  # another fewshot version's shard: leave it alone
                keys = f.get_tensor("keys")
        except FileNotFoundError:
            return None  # removed by a concurrent merge
        except Exception:  # safetensors raises several types on truncated files
            self._drop(shard, "unreadable")
            return None
        if keys.ndim != 2 or keys.shape[1] != _KEY_BYTES:
            self._drop(shard, "malformed")
            return None
        return keys

    def _read_vectors(self, shard: Path, dim: int) -> np.ndarray | None:
        from safetensors import safe_open

        try:
            with safe_open(str(shard), framework="numpy") as f:
                meta = f.metadata() or {}
                keys = f.get_tensor("keys")
                vectors = f.get_tensor("vectors")
        except FileNotFoundError:
            return None
        except Exception:
            self._drop(shard, "unreadable")
            return None
        if vectors.shape != (len(keys), dim) or meta.get("checksum") != _checksum(keys, vectors):
            self._drop(shard, "corrupt (checksum mismatch)")
            return None
        return vectors

    def lookup(
        self, encoder_id: str, keys: Sequence[bytes], dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, found)``: rows for the keys found; ``found`` is a bool mask."""
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        wanted: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            wanted.setdefault(k, []).append(i)
        for shard in self._shards(encoder_id):
            if found.all():
                break
            shard_keys = self._read_keys(shard)
            if shard_keys is None:
                continue
            rows = [
                (r, wanted[k]) for r, k in enumerate(map(bytes, shard_keys))
                if k in wanted and not found[wanted[k][0]]
            ]
            if not rows:
                continue
            vectors = self._read_vectors(shard, dim)
            if vectors is None:
                continue
            for r, positions in rows:
                out[positions] = vectors[r]
                found[positions] = True
        return out, found

    def store(
        self, encoder_id: str, keys: Sequence[bytes], vectors: np.ndarray, *, merge: bool = True
    ) -> None:
        """Add entries as one new shard (atomic), merging shards when there are many (and
        ``merge``). A folder that cannot be written is a warning: the entries are dropped."""
        if len(keys) == 0 or not self._writable:
            return
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        try:
            self._write(encoder_id, key_arr, np.ascontiguousarray(vectors, dtype=np.float32))
            if merge and len(self._shards(encoder_id)) > self.max_shards:
                self._merge(encoder_id, vectors.shape[1])
        except OSError as e:
            self._cannot_write(e)

    def _write(self, encoder_id: str, keys: np.ndarray, vectors: np.ndarray) -> Path:
        from safetensors.numpy import save

        meta = {"format": _FORMAT, "encoder_id": encoder_id, "checksum": _checksum(keys, vectors)}
        blob = save({"keys": keys, "vectors": vectors}, metadata=meta)
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.safetensors"
        path = self._folder(encoder_id) / name
        with atomic_file(path) as f:
            f.write(blob)
        return path

    def _merge(self, encoder_id: str, dim: int) -> None:
        shards = self._shards(encoder_id)
        all_keys: list[np.ndarray] = []
        all_vecs: list[np.ndarray] = []
        merged: list[Path] = []
        for shard in shards:
            shard_keys = self._read_keys(shard)
            if shard_keys is None:
                continue
            vecs = self._read_vectors(shard, dim)
            if vecs is not None:
                all_keys.append(shard_keys)
                all_vecs.append(vecs)
                merged.append(shard)
        if not all_keys:
            return
        keys = np.concatenate(all_keys)
        _, first = np.unique(keys, axis=0, return_index=True)
        first.sort()
        self._write(encoder_id, keys[first], np.concatenate(all_vecs)[first])
        for shard in merged:
            shard.unlink(missing_ok=True)

    # -- encoder identities -----------------------------------------------------------
    def _ids_file(self) -> Path:
        return self.root / "encoder-ids.json"

    def identify(self, encoder: Any) -> str:
        """``encoder.id``, remembered by the encoder's file fingerprint.

        A warm run then learns the id (and dimension) without loading weights.
        Encoders without ``fingerprint``/``adopt_identity`` (any object with
        ``id``, ``dim``, ``item_key`` and ``encode``) just give their ``id``.
        """
        fingerprint_of = getattr(encoder, "fingerprint", None)
        if hasattr(encoder, "id_") or not callable(fingerprint_of):
            return str(encoder.id)
        fingerprint = fingerprint_of()
        if fingerprint is None:
            return str(encoder.id)
        memo = self._read_ids()
        known = memo.get(fingerprint)
        if (
            isinstance(known, dict)
            and isinstance(known.get("id"), str)
            and isinstance(known.get("dim"), int)
        ):
            encoder.adopt_identity(known["id"], int(known["dim"]))
            return str(known["id"])
        memo[fingerprint] = {"id": encoder.id, "dim": encoder.dim}
        try:
            with atomic_file(self._ids_file(), "w") as f:
                json.dump(memo, f)
        except OSError as e:
            self._cannot_write(e)
        return str(encoder.id)

    def _read_ids(self) -> dict[str, Any]:
        try:
            data = json.loads(self._ids_file().read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def clear(self, encoder_id: str | None = None) -> None:
        """Delete cached embeddings for one encoder, or all of them."""
        import shutil

        target = self._folder(encoder_id) if encoder_id else self.root
        shutil.rmtree(target, ignore_errors=True)


def as_cache(cache: Any) -> EmbeddingCache | None:
    """``True`` -> the default cache; ``False``/``None`` -> no cache; a folder or cache as is."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return EmbeddingCache()
    return cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)


def embed(
    encoder: Any,
    items: Sequence[Any],
    cache: EmbeddingCache | None = None,
    *,
    batch_size: int | None = None,
    show_progress: bool | None = None,
    on_miss: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed ``items`` with ``encoder``, reading and filling ``cache`` when given.

    Each distinct item missing from the cache is encoded once, in calls of whole
    batches sized to take a couple of seconds, so the progress bar (which counts those
    distinct new items) moves smoothly; finished items are stored as they come.
    """
    from fewshot._progress import progress
    from fewshot.encoders.base import item_list

    items = item_list(items, "embed()")
    check = getattr(encoder, "check_items", None)  # duck-typed encoders may have none
    if check is not None:
        check(items)
    if cache is None or not items:
        return encoder.encode(items, batch_size=batch_size, show_progress=show_progress)
    encoder_id = cache.identify(encoder)
    keys = [encoder.item_key(x) for x in items]
    out, found = cache.lookup(encoder_id, keys, encoder.dim)
    missing = np.flatnonzero(~found)
    if on_miss is not None:
        on_miss(len(missing))
    if not len(missing):
        return out
    first: dict[bytes, int] = {}
    for i in missing:
        first.setdefault(keys[i], int(i))
    uniq = list(first.values())
    vecs = np.empty((len(uniq), encoder.dim), dtype=np.float32)
    batch = batch_size or getattr(encoder, "batch_size", None) or 32
    noun = {"text": "texts", "image": "images"}.get(getattr(encoder, "modality", ""), "items")
    repeats = len(missing) - len(uniq)
    what = (f"Embedding {len(uniq):,} new {noun} ({len(items):,} rows, "
            f"{int(found.sum()):,} cached{f', {repeats:,} repeated' if repeats else ''})")
    done = stored = 0
    flushed = time.monotonic()

    def flush(merge: bool) -> None:
        nonlocal stored, flushed
        cache.store(encoder_id, [keys[i] for i in uniq[stored:done]], vecs[stored:done],
                    merge=merge)
        stored, flushed = done, time.monotonic()

    size = batch
    warn_inputs = getattr(encoder, "warn_inputs", None)
    if warn_inputs is not None:  # once for the run, not once per call below
        warn_inputs([items[i] for i in uniq])
    quiet = getattr(encoder, "inputs_warned", contextlib.nullcontext)
    try:
        with progress(what, len(uniq), show_progress) as advance, quiet():
            while done < len(uniq):
                part = uniq[done : done + size]
                began = time.monotonic()
                vecs[done : done + len(part)] = encoder.encode(
                    [items[i] for i in part], batch_size=batch_size, show_progress=False
                )
                done += len(part)
                advance(len(part))
                took = time.monotonic() - began
                # Whole batches: double while a call is quick, halve when one is slow.
                size = size * 2 if took < _STEP_SECONDS / 2 else size
                size = max(batch, size // 2) if took > _STEP_SECONDS * 2 else size
                if done < len(uniq) and time.monotonic() - flushed >= _FLUSH_SECONDS:
                    flush(merge=False)
    finally:  # Ctrl-C or an error: keep what is finished for the rerun
        flush(merge=done == len(uniq))
    row = {keys[i]: r for r, i in enumerate(uniq)}
    out[missing] = vecs[[row[keys[i]] for i in missing]]
    return out
