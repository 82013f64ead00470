"""Write rows (predictions, suggestions, audits) as JSONL, CSV or Parquet, by the suffix.

JSONL keeps every value as it is. CSV is flat: a list becomes one ``;``-joined
cell, a dict one column per key (``p_<class>`` for ``probabilities``, else
``<field>_<key>``), None an empty cell. Parquet keeps lists and dicts as list and
struct columns. Every write is atomic: a crash leaves no half-written file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fewshot._io import atomic_file
from fewshot.errors import UsageError

__all__ = ["ROW_FORMATS", "row_format", "write_rows"]

ROW_FORMATS = (".jsonl", ".csv", ".parquet")


def row_format(
    path: str | Path, formats: Sequence[str] = ROW_FORMATS, *, name: str = "the output"
) -> str:
    """``path``'s suffix when rows can be written in that format, else a UsageError.

    A Parquet output also needs pyarrow, checked here so that a long run does not
    fail at its last step.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        choices = " or ".join([", ".join(formats[:-1]), formats[-1]] if formats[1:] else formats)
        raise UsageError(f"{name} must end in {choices}, got '{Path(path).name}'")
    if suffix == ".parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise ModuleNotFoundError("writing Parquet needs pyarrow: pip install "
                                      "'fewshot[parquet]'")
    return suffix


def write_rows(
    path: str | Path, rows: Iterable[dict[str, Any]], *, columns: Sequence[str] | None = None
) -> int:
    """Write ``rows`` to ``path`` in the format its suffix names; returns how many.

    ``columns`` are CSV's header (flattened names), for a file that may have no
    rows; by default the first row's fields, flattened.
    """
    fmt = row_format(path)
    if fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(list(rows))
        with atomic_file(path) as f:
            pq.write_table(table, f)
        return table.num_rows
    n = 0
    with atomic_file(path, "w") as f:
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
    """One CSV row: lists joined by ``;``, dicts spread over columns, None empty."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            prefix = "p_" if key == "probabilities" else f"{key}_"
            out.update((f"{prefix}{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            out[key] = ";".join(map(str, value))
        else:
            out[key] = "" if value is None else value
    return out
