"""Chunked, resumable embedding: the engine of ``fewshot embed``.

Vectors go to a ``.npy`` or ``.safetensors`` file that grows chunk by chunk (its
header, rewritten when the run ends, has room reserved at the start), with the ids and
labels in ``OUT.ids.json``; or to Parquet rows (``id``, ``label`` when the data has
labels, ``embedding``). As with predictions, each chunk is flushed and fsynced before
the job record beside the output counts it, and a resumed run cuts off what a killed
one wrote after that.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError

__all__ = ["EMBED_FORMATS", "EmbedResult", "embed_file"]

EMBED_FORMATS = (".npy", ".safetensors", ".parquet")
#: Bytes reserved for each format's header at the start of the growing file.
_HEADER = {".npy": 256, ".safetensors": 4096}


@dataclass
class EmbedResult:
    n: int
    dim: int
    sidecar: Path | None
    resumed_from: int = 0
    seconds: float = 0.0


def ids_sidecar(output: Path) -> Path:
    return output.with_suffix(".ids.json")


def _npy_header(n: int, dim: int) -> bytes:
    body = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}"
    size = _HEADER[".npy"] - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size) + (body.ljust(size - 1) + "\n").encode()


def _safetensors_header(n: int, dim: int, meta: dict[str, Any]) -> bytes:
    header = {"__metadata__": {k: str(v) for k, v in meta.items()},
              "embeddings": {"dtype": "F32", "shape": [n, dim], "data_offsets": [0, n * dim * 4]}}
    size = _HEADER[".safetensors"] - 8
    text = json.dumps(header)
    if len(text) > size:
        raise UsageError("the encoder's name is too long for the .safetensors header; write "
                         ".npy or .parquet instead")
    return struct.pack("<Q", size) + text.ljust(size).encode()


class _VectorFile:
    """Rows of float32 vectors appended after a reserved header; ids and labels as JSON
    lines in a second working file."""

    def __init__(self, output: Path, suffix: str, resume: dict[str, Any] | None) -> None:
        self.output, self.suffix = output, suffix
        self.work = Path(f"{output}.partial")
        self.ids_work = Path(f"{output}.ids.partial")
        state = resume or {}
        reopen = resume is not None and self.work.exists() and self.ids_work.exists()
        self.f = open(self.work, "r+b" if reopen else "wb")  # noqa: SIM115
        self.ids = open(self.ids_work, "r+b" if reopen else "wb")  # noqa: SIM115
        self.f.truncate(int(state.get("bytes", _HEADER[suffix])))
        self.ids.truncate(int(state.get("ids_bytes", 0)))
        if not reopen:
            self.f.write(b"\0" * _HEADER[suffix])
        self.f.seek(0, os.SEEK_END)
        self.ids.seek(0, os.SEEK_END)

    def write(self, vectors: np.ndarray, ids: list[str], labels: list[Any] | None) -> None:
        self.f.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        rows = zip(ids, labels if labels is not None else [None] * len(ids), strict=True)
        self.ids.write("".join(json.dumps([i, y], ensure_ascii=False) + "\n"
                               for i, y in rows).encode())

    def commit(self) -> dict[str, Any]:
        for f in (self.f, self.ids):
            f.flush()
            os.fsync(f.fileno())
        return {"bytes": self.f.tell(), "ids_bytes": self.ids.tell()}

    def finish(self, n: int, dim: int, meta: dict[str, Any], labelled: bool) -> Path:
        from fewshot._io import atomic_file

        self.f.seek(0)
        self.f.write(_npy_header(n, dim) if self.suffix == ".npy"
                     else _safetensors_header(n, dim, meta))
        self.commit()
        self.close()
        sidecar = ids_sidecar(self.output)
        with atomic_file(sidecar, "w") as out:
            out.write(json.dumps(meta)[:-1])
            # Two passes over the ids file (ids, then labels): one row in memory at a time.
            for key, column in (("ids", 0), ("labels", 1)):
                if key == "labels" and not labelled:
                    out.write(', "labels": null')
                    continue
                out.write(f', "{key}": [')
                with open(self.ids_work, encoding="utf-8") as lines:
                    for k, line in enumerate(lines):
                        value = json.loads(line)[column]
                        out.write(("" if k == 0 else ", ")
                                  + json.dumps(value, ensure_ascii=False))
                out.write("]")
            out.write("}\n")
        os.replace(self.work, self.output)
        self.ids_work.unlink(missing_ok=True)
        return sidecar

    def close(self) -> None:
        for f in (self.f, self.ids):
            if not f.closed:
                f.close()


def embed_file(
    encoder: Any, source: Any, output: str | Path, *, cache: Any = None,
    chunk_size: int = 4096, resume: bool = False, force: bool = False,
    show_progress: bool | None = None,
) -> EmbedResult:
    """Embed every row of ``source`` with ``encoder`` (through ``cache``) into ``output``
    (.npy, .safetensors or .parquet), chunk by chunk, resumable like predictions."""
    from fewshot._progress import progress
    from fewshot.cache import embed as cached_embed
    from fewshot.data.writers import RowStream
    from fewshot.jobs.state import JobState, clear_state, open_state, state_path

    output = Path(output)
    suffix = output.suffix.lower()
    identity = {"command": "embed", "input": source.fingerprint(),
                "model": {"encoder": encoder.name, "id": encoder.id},
                "options": {"text_field": source.text_field, "image_field": source.image_field,
                            "label_field": source.label_field, "label_sep": source.label_sep,
                            "format": suffix}}
    if resume and not source.rereadable:
        raise UsageError("--resume needs DATA as a file or folder it can read again; stdin "
                         "(-) cannot be reread: save it to a file first")
    saved = open_state(output, identity, resume=resume, force=force)
    resumed_from = saved.rows_written if saved else 0
    state = saved or JobState(identity, stream={"labelled": True})
    meta = {"encoder": encoder.name, "encoder_id": encoder.id, "dim": encoder.dim}
    sink: Any
    if suffix == ".parquet":
        sink = RowStream(output, resume=saved.stream if saved else None)
    else:
        sink = _VectorFile(output, suffix, saved.stream if saved else None)
    began = time.monotonic()
    labelled = bool(state.stream.get("labelled", True))
    try:
        with progress("Embedding rows", source.total or 0, show_progress) as advance:
            if state.rows_read:
                advance(state.rows_read)
            for chunk in source.chunks(chunk_size, skip=state.rows_read):
                data = chunk.data
                vectors = cached_embed(encoder, data.items, cache, show_progress=False)
                labelled = labelled and data.labels is not None
                if suffix == ".parquet":
                    sink.write_table(_embedding_table(data, vectors))
                else:
                    sink.write(vectors, data.ids, data.labels)
                state.rows_read += chunk.consumed
                state.rows_written += len(data)
                state.skipped += len(chunk.skipped)
                state.stream = {**sink.commit(), "labelled": labelled}
                state.save(state_path(output))
                advance(chunk.consumed)
        if not state.rows_written:
            raise DataError(f"no rows to embed in {source.name}; give data with at least one "
                            "readable item")
        if suffix == ".parquet":
            sink.finish()
            sidecar = None
        else:
            sidecar = sink.finish(state.rows_written, encoder.dim,
                                  {**meta, "n": state.rows_written}, labelled)
    except DataError as e:
        sink.close()
        if state.rows_written:
            raise DataError(f"{e} ({state.rows_written} rows before it are kept; rerun with "
                            "--resume once fixed)") from e
        raise
    except BaseException:
        sink.close()
        raise
    clear_state(output)
    return EmbedResult(state.rows_written, encoder.dim, sidecar, resumed_from,
                       time.monotonic() - began)


def _embedding_table(data: Any, vectors: np.ndarray) -> Any:
    import pyarrow as pa

    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    columns: dict[str, Any] = {"id": pa.array(data.ids, pa.string())}
    if data.labels is not None:
        columns["label"] = pa.array(data.labels)
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    return pa.table(columns)


def remove_partial(output: Path) -> None:
    """Working files of an embedding run (after --force)."""
    for p in (Path(f"{output}.partial"), Path(f"{output}.ids.partial")):
        p.unlink(missing_ok=True)
    shutil.rmtree(Path(f"{output}.parts"), ignore_errors=True)
