"""Write rows (predictions, suggestions, audits) as JSONL, CSV or Parquet, by the suffix.

JSONL keeps every value as it is. CSV is flat: a list becomes one ``;``-joined
cell, a dict one column per key (``p_<class>`` for ``probabilities``, else
``<field>_<key>``), None an empty cell. Parquet keeps lists and dicts as list and
struct columns. Every write to a file is atomic: a crash leaves no half-written
file. The path ``"-"`` is stdout, in the format ``fmt`` names (default JSONL).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fewshot._io import atomic_file
from fewshot.errors import UsageError

__all__ = ["ROW_FORMATS", "STDOUT", "RowStream", "merge_parquet", "row_format", "write_rows"]

ROW_FORMATS = (".jsonl", ".csv", ".parquet")
#: The path that means stdout.
STDOUT = "-"


def _choices(formats: Sequence[str]) -> str:
    return " or ".join([", ".join(formats[:-1]), formats[-1]] if formats[1:] else formats)


def row_format(
    path: str | Path, formats: Sequence[str] = ROW_FORMATS, *, name: str = "the output",
    fmt: str | None = None,
) -> str:
    """The format (``.jsonl``, ``.csv``, ``.parquet``) rows go to ``path`` in, else a
    UsageError.

    A file's format is its suffix; stdout's (``path`` ``"-"``) is ``fmt`` (``"csv"``
    or ``".csv"``), JSONL by default. A ``fmt`` that contradicts a file's suffix is a
    UsageError. A Parquet output also needs pyarrow, checked here so that a long run
    does not fail at its last step.
    """
    wanted = None
    if fmt is not None:
        wanted = "." + fmt.lower().lstrip(".")
        if wanted not in formats:
            plain = _choices([f.lstrip(".") for f in formats])
            raise UsageError(f"--format must be {plain}, got '{fmt}'")
    if str(path) == STDOUT:
        suffix = wanted or ".jsonl"
    else:
        suffix = Path(path).suffix.lower()
        if suffix not in formats:
            raise UsageError(f"{name} must end in {_choices(formats)}, got '{Path(path).name}'")
        if wanted is not None and wanted != suffix:
            raise UsageError(
                f"--format {fmt} does not match {name} '{Path(path).name}'; a file is written "
                "in the format its extension names: drop --format or change the extension"
            )
    if suffix == ".parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise ModuleNotFoundError("writing Parquet needs pyarrow: pip install "
                                      "'fewshot[parquet]'")
    return suffix


@contextmanager
def _opened(path: str | Path, mode: str) -> Iterator[Any]:
    """An atomic file, or stdout for ``"-"`` (its bytes for a binary ``mode``)."""
    if str(path) != STDOUT:
        with atomic_file(path, mode) as f:
            yield f
        return
    out = sys.stdout.buffer if "b" in mode else sys.stdout
    yield out
    out.flush()


def write_rows(
    path: str | Path, rows: Iterable[dict[str, Any]], *, columns: Sequence[str] | None = None,
    fmt: str | None = None,
) -> int:
    """Write ``rows`` to ``path`` in the format its suffix names; returns how many.

    ``path`` ``"-"`` writes to stdout in the format ``fmt`` names (default JSONL).
    ``columns`` are CSV's header (flattened names), for a file that may have no
    rows; by default the first row's fields, flattened.
    """
    fmt = row_format(path, fmt=fmt)
    if fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(list(rows))
        with _opened(path, "wb") as f:
            buffer = io.BytesIO()  # Parquet's footer is written last: stdout cannot seek
            pq.write_table(table, buffer)
            f.write(buffer.getvalue())
        return table.num_rows
    n = 0
    with _opened(path, "w") as f:
        writer = csv.writer(f) if fmt == ".csv" else None
        if writer is not None and columns is not None:
            writer.writerow(columns)
        for row in rows:
            n += 1
            if writer is None:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                continue
            flat = _flat(row)
            if columns is None:
                columns = list(flat)
                writer.writerow(columns)
            writer.writerow([flat.get(c, "") for c in columns])
    return n


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: lists joined by ``;``, dicts spread over columns, None empty, and
    floats in fixed notation (``0.000005``, never ``5e-06``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            prefix = "p_" if key == "probabilities" else f"{key}_"
            out.update((f"{prefix}{k}", _cell(v)) for k, v in value.items())
        elif isinstance(value, list):
            out[key] = ";".join(map(str, value))
        else:
            out[key] = _cell(value)
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else value


class RowStream:
    """Rows written chunk by chunk, in the format of ``path``'s suffix (or ``fmt`` for
    stdout), so memory holds one chunk, never the whole output.

    A file output grows in a working file beside it (``work``: ``OUT.partial`` for
    JSONL and CSV, a folder ``OUT.parts`` of one Parquet file per chunk), which
    :meth:`finish` renames into place, so ``path`` itself only ever appears complete.
    :meth:`commit` makes the rows written so far durable (flushed and fsynced) and
    returns where the stream stands; a stream reopened with that state
    (``resume``) first cuts the working file back to it, dropping whatever a killed
    run wrote after its last commit. Stdout gets JSONL and CSV lines as they come.
    """

    def __init__(self, path: str | Path, *, fmt: str | None = None,
                 resume: dict[str, Any] | None = None) -> None:
        self.path = path
        self.fmt = row_format(path, fmt=fmt)
        self.stdout = str(path) == STDOUT
        state = resume or {}
        self.columns: list[str] | None = state.get("columns")
        self.parts = int(state.get("parts", 0))
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._file: Any = None
        if self.fmt == ".parquet":
            if self.stdout:
                self._tmp = tempfile.TemporaryDirectory(prefix="fewshot-rows-")
                self.work = Path(self._tmp.name)
            else:
                self.work = Path(f"{path}.parts")
                if not resume and self.work.exists():
                    shutil.rmtree(self.work)
                self.work.mkdir(parents=True, exist_ok=True)
                for stale in self.work.glob("part-*.parquet"):
                    if int(stale.stem.split("-")[1]) >= self.parts:
                        stale.unlink()  # written after the last commit
        elif self.stdout:
            self.work = Path(STDOUT)
            self._file = sys.stdout.buffer
        else:
            self.work = Path(f"{path}.partial")
            self.work.parent.mkdir(parents=True, exist_ok=True)
            reopen = resume is not None and self.work.exists()
            self._file = open(self.work, "r+b" if reopen else "wb")  # noqa: SIM115
            self._file.truncate(int(state.get("bytes", 0)))
            self._file.seek(0, os.SEEK_END)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append one chunk of rows."""
        if not rows:
            return
        if self.fmt == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            with atomic_file(self.work / f"part-{self.parts:06d}.parquet") as f:
                pq.write_table(pa.Table.from_pylist(list(rows)), f)
            self.parts += 1
            return
        if self.fmt == ".jsonl":
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if self.columns is None:
                self.columns = list(_flat(rows[0]))
                writer.writerow(self.columns)
            for row in rows:
                flat = _flat(row)
                writer.writerow([flat.get(c, "") for c in self.columns])
            text = buffer.getvalue()
        self._file.write(text.encode("utf-8"))

    def write_table(self, table: Any) -> None:
        """Append one chunk given as a pyarrow Table (Parquet only)."""
        import pyarrow.parquet as pq

        if self.fmt != ".parquet":
            raise UsageError(f"a table is written to Parquet only, not {self.fmt}")
        with atomic_file(self.work / f"part-{self.parts:06d}.parquet") as f:
            pq.write_table(table, f)
        self.parts += 1

    def commit(self) -> dict[str, Any]:
        """Make what was written durable; the state to resume from."""
        state: dict[str, Any] = {"columns": self.columns, "parts": self.parts}
        if self._file is not None:
            self._file.flush()
            if not self.stdout:
                os.fsync(self._file.fileno())
                state["bytes"] = self._file.tell()
        return state

    def finish(self) -> None:
        """Publish the output: rename the working file onto ``path`` (or merge the
        Parquet parts into it; stdout gets the merged bytes)."""
        if self.fmt == ".parquet":
            parts = sorted(self.work.glob("part-*.parquet"))
            if self.stdout:
                merged = self.work / "all.parquet"
                with open(merged, "wb") as f:
                    merge_parquet(parts, f)
                with open(merged, "rb") as f:
                    shutil.copyfileobj(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with atomic_file(self.path) as f:
                    merge_parquet(parts, f)
            self.discard()
            return
        if self.stdout:
            self._file.flush()
            return
        self.commit()
        self._file.close()
        self._file = None
        os.replace(self.work, self.path)

    def close(self) -> None:
        """Close without publishing (the working file stays for a resumed run)."""
        if self._file is not None and not self.stdout:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def discard(self) -> None:
        """Remove the working file or folder."""
        self.close()
        if self.fmt == ".parquet" and not self.stdout:
            shutil.rmtree(self.work, ignore_errors=True)
        elif not self.stdout:
            Path(self.work).unlink(missing_ok=True)


def merge_parquet(parts: Sequence[Path], f: Any) -> int:
    """Copy Parquet files into one (a row group each) on the open file ``f``, one file in
    memory at a time; a column null in some parts and typed in others takes the type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        pq.write_table(pa.table({}), f)
        return 0
    schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
    n = 0
    with pq.ParquetWriter(f, schema) as writer:
        for p in parts:
            table = pq.read_table(p)
            writer.write_table(table.select(schema.names).cast(schema)
                               if table.schema != schema else table)
            n += table.num_rows
    return n
