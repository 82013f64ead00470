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
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fewshot._io import atomic_file
from fewshot.errors import UsageError

__all__ = ["ROW_FORMATS", "STDOUT", "row_format", "write_rows"]

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
