"""Embedding files read in chunks: the pools a saved index is built from.

A pool is a matrix of vectors (one row per item) with an id per row:

- ``.npy`` (what ``fewshot embed -o X.npy`` writes): read in chunks at offsets from
  its header (``np.load(mmap_mode="r")`` for the header and a few rows);
- ``.safetensors`` (``fewshot embed -o X.safetensors``): its one tensor (or the one
  named ``embeddings``), read by row ranges through ``safe_open``;
- ``.parquet``: a list-of-floats column (``embedding`` by default, else the only
  one), read one record batch at a time.

Ids (and labels, where given) of ``.npy`` and ``.safetensors`` come from the
``X.ids.json`` file ``fewshot embed`` writes beside them (``{"ids": [...],
"labels": [...], "encoder": ...}``, or a plain JSON list), or a file named by
``ids``; a Parquet pool's come from its ``id`` column. Only the ids are held in
memory whole; vectors never are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError

__all__ = ["POOL_SUFFIXES", "Pool", "open_pool"]

POOL_SUFFIXES = (".npy", ".safetensors", ".parquet")
#: A chunk is about this many bytes of float32 vectors.
CHUNK_BYTES = 64 * 2**20
#: Up to this many rows are taken from a .npy pool through its memory map.
SMALL_TAKE = 10_000


class Pool:
    """Vectors read chunk by chunk, with their ids.

    ``n`` rows of ``dim`` floats; ``ids`` (and ``labels``, or None) one per row;
    ``meta``: what the ids file says of the encoder (``encoder``, ``encoder_id``).
    """

    def __init__(self, path: Path, n: int, dim: int) -> None:
        self.path = path
        self.n = n
        self.dim = dim
        self.ids: list[Any] = []
        self.labels: list[Any] | None = None
        self.meta: dict[str, Any] = {}

    def chunk_rows(self) -> int:
        """Rows per chunk: about :data:`CHUNK_BYTES` of float32."""
        return max(1024, CHUNK_BYTES // (4 * max(self.dim, 1)))

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 vectors)`` for consecutive chunks of the pool."""
        rows = rows or self.chunk_rows()
        start = 0
        for block in self._blocks(rows):
            block = self._check(block, start)
            yield start, block
            start += len(block)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (sorted, distinct), in that order."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        j = 0
        for start, block in self.chunks():
            end = start + len(block)
            stop = int(np.searchsorted(rows, end))
            if stop > j:
                out[j:stop] = block[rows[j:stop] - start]
                j = stop
            if j == len(rows):
                break
        return out

    def _blocks(self, rows: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def _check(self, block: np.ndarray, start: int) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{self.path}: row {row} (id {self.ids[row]!r}) holds NaN or infinite values; "
                "re-embed that item or drop it from the pool"
            )
        return block


class _NpyPool(Pool):
    def __init__(self, path: Path) -> None:
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"cannot read {path} as a .npy array ({e}); give the .npy file "
                            "fewshot embed wrote") from None
        _check_shape(path, self.array.shape, self.array.dtype)
        super().__init__(path, *self.array.shape)

    def _blocks(self, rows: int) -> Iterator[np.ndarray]:
        if not self.array.flags.c_contiguous:  # Fortran order: rows are not contiguous
            for start in range(0, self.n, rows):
                yield self.array[start : start + rows]
            return
        # Plain reads rather than the memory map: pages of a mapped file count towards
        # the process's resident memory until the kernel drops them, reads use one chunk.
        dtype = self.array.dtype
        with open(self.path, "rb") as f:
            for start in range(0, self.n, rows):
                count = min(rows, self.n - start)
                f.seek(self.array.offset + start * self.dim * dtype.itemsize)
                yield np.fromfile(f, dtype=dtype, count=count * self.dim).reshape(count,
                                                                                 self.dim)

    def take(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) > SMALL_TAKE:  # a training sample: one pass of chunked reads
            return super().take(rows)
        return self._check(self.array[rows], 0) if len(rows) else np.empty((0, self.dim),
                                                                            np.float32)


class _SafetensorsPool(Pool):
    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        try:
            self.file = safe_open(str(path), framework="numpy")
            names = list(self.file.keys())
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise DataError(f"cannot read {path} as safetensors ({e}); give the .safetensors "
                            "file fewshot embed wrote") from None
        if "embeddings" in names:
            self.name = "embeddings"
        elif len(names) == 1:
            self.name = names[0]
        else:
            raise DataError(f"{path} holds tensors {', '.join(names)} and none is named "
                            "'embeddings'; give the file fewshot embed wrote")
        self.slice = self.file.get_slice(self.name)
        shape = tuple(self.slice.get_shape())
        raw = self.slice.get_dtype()
        # numpy reads F16/F32/F64 (it has no bfloat16).
        dtype = {"F16": "float16", "F32": "float32", "F64": "float64"}.get(raw)
        if dtype is None:
            raise DataError(f"{path} holds {raw} values; a pool holds float16, float32 or "
                            "float64 embeddings")
        _check_shape(path, shape, np.dtype(dtype))
        super().__init__(path, *shape)
        meta = self.file.metadata() or {}
        self.meta = {k: meta[k] for k in ("encoder", "encoder_id") if k in meta}

    def _blocks(self, rows: int) -> Iterator[np.ndarray]:
        for start in range(0, self.n, rows):
            yield self.slice[start : min(self.n, start + rows)]  # safetensors checks bounds


class _ParquetPool(Pool):
    def __init__(self, path: Path, vector_field: str | None, id_field: str,
                 require_ids: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot read {path} as Parquet ({e}); give a Parquet file of "
                            "embeddings") from None
        schema = self.file.schema_arrow
        vectors = [f.name for f in schema if _is_float_list(f.type)]
        if vector_field is not None:
            if schema.get_field_index(vector_field) < 0:
                raise DataError(f"{path} has no column '{vector_field}' (it has "
                                f"{', '.join(schema.names)}); pass --vector-field NAME")
            if vector_field not in vectors:
                raise DataError(f"column '{vector_field}' of {path} is not a list of floats "
                                f"({schema.field(vector_field).type}); pass the embedding "
                                "column with --vector-field")
            self.column = vector_field
        elif "embedding" in vectors:
            self.column = "embedding"
        elif len(vectors) == 1:
            self.column = vectors[0]
        else:
            found = f"several ({', '.join(vectors)})" if vectors else "none"
            raise DataError(f"{path}: cannot tell which column holds the embeddings: {found} "
                            "of its columns is a list of floats; pass --vector-field NAME")
        n = self.file.metadata.num_rows
        kind = schema.field(self.column).type
        dim = kind.list_size if pa.types.is_fixed_size_list(kind) else self._first_length()
        _check_shape(path, (n, dim), np.dtype("float32"))
        super().__init__(path, n, dim)
        if schema.get_field_index(id_field) >= 0:
            self.ids = self._column(id_field)
        elif require_ids:
            raise DataError(f"{path} has no '{id_field}' column to name its rows; pass "
                            "--id-field NAME, or write the pool with fewshot embed")
        else:
            self.ids = list(range(n))
        if schema.get_field_index("label") >= 0:
            self.labels = self._column("label")

    def _column(self, name: str) -> list[Any]:
        out: list[Any] = []
        for batch in self.file.iter_batches(columns=[name]):
            out += batch.column(0).to_pylist()
        return out

    def _first_length(self) -> int:
        for batch in self.file.iter_batches(batch_size=1, columns=[self.column]):
            if len(batch):
                first = batch.column(0)[0].as_py()
                return 0 if first is None else len(first)
        return 0

    def _blocks(self, rows: int) -> Iterator[np.ndarray]:
        import pyarrow.compute as pc

        start = 0
        for batch in self.file.iter_batches(batch_size=rows, columns=[self.column]):
            col = batch.column(0)
            if col.null_count:
                row = start + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(f"{self.path}: row {row} has no embedding; drop it or "
                                "re-embed it")
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            wrong = np.flatnonzero(lengths != self.dim)
            if len(wrong):
                row = start + int(wrong[0])
                raise DataError(f"{self.path}: row {row} has {int(lengths[wrong[0]])} values, "
                                f"the rows before it {self.dim}; every embedding must have "
                                "the same length")
            values = col.flatten().to_numpy(zero_copy_only=False)
            start += len(col)
            yield values.reshape(-1, self.dim)


def _is_float_list(kind: Any) -> bool:
    import pyarrow as pa

    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)):
        return False
    return bool(pa.types.is_floating(kind.value_type))


def _check_shape(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) != 2:
        raise DataError(f"{path} holds an array of shape {shape}; a pool is a 2-D matrix "
                        "(one row of floats per item)")
    if not np.issubdtype(dtype, np.floating):
        raise DataError(f"{path} holds {dtype} values; a pool holds floating-point embeddings")
    if shape[0] == 0:
        raise DataError(f"{path} holds no vectors; embed at least one item into the pool")
    if shape[1] == 0:
        raise DataError(f"{path} holds vectors of length 0; give the embeddings")


def _read_ids(pool: Pool, ids: Path | None, require_ids: bool) -> None:
    """``ids`` (else POOL's ``.ids.json`` beside it) onto ``pool``."""
    path = ids if ids is not None else pool.path.with_suffix(".ids.json")
    if not path.exists():
        if ids is None and not require_ids:
            pool.ids = list(range(pool.n))
            return
        where = f"{path} does not exist" if ids is not None else f"no ids file {path.name}"
        raise DataError(f"{where} for {pool.path}; pass --ids FILE (a JSON list, or the "
                        ".ids.json fewshot embed writes beside its output)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the ids file {path} as JSON ({e}); give a JSON list of "
                        "ids or fewshot embed's .ids.json") from None
    found = data.get("ids") if isinstance(data, dict) else data
    if not isinstance(found, list):
        raise DataError(f"{path} holds no list of ids; give a JSON list of ids or an object "
                        "with an 'ids' list")
    if len(found) != pool.n:
        raise DataError(f"{path} has {len(found)} ids but {pool.path} has {pool.n} vectors; "
                        "give the ids file written with these embeddings")
    pool.ids = found
    if isinstance(data, dict):
        labels = data.get("labels")
        if isinstance(labels, list) and len(labels) == pool.n and any(
                label is not None for label in labels):
            pool.labels = labels
        pool.meta.update({k: data[k] for k in ("encoder", "encoder_id") if k in data})


def open_pool(
    path: str | Path, *, ids: str | Path | None = None, vector_field: str | None = None,
    id_field: str = "id", require_ids: bool = True,
) -> Pool:
    """Open an embeddings file for chunked reading (nothing but its ids read yet).

    Without ``require_ids``, a pool with no ids is numbered by row.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POOL_SUFFIXES:
        raise UsageError(
            f"{path.name} is not an embeddings file (.npy, .safetensors or .parquet); embed "
            f"a data file first: fewshot embed {path.name} -o pool.npy"
        )
    if path.is_dir():
        raise DataError(f"{path} is a folder; give one embeddings file")
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path")
    pool: Pool
    if suffix == ".parquet":
        if ids is not None:
            raise UsageError("--ids is for .npy and .safetensors pools; a Parquet pool's ids "
                             "are its id column (--id-field)")
        pool = _ParquetPool(path, vector_field, id_field, require_ids)
    else:
        if vector_field is not None:
            raise UsageError("--vector-field is for Parquet pools; drop it")
        pool = _NpyPool(path) if suffix == ".npy" else _SafetensorsPool(path)
        _read_ids(pool, None if ids is None else Path(ids), require_ids)
    return pool
