"""Read an input of any size in chunks: JSONL, CSV/TSV, Parquet, plain text, image
folders and stdin, each chunk a :class:`Dataset` of at most ``size`` rows.

Rows, ids and messages are those of :func:`fewshot.data.load_dataset` (a row's id is
its ``id`` field, else the line it starts on, a Parquet row's number, or an image's
path in its folder), so a chunked run writes what a whole-file run writes. Memory is
bounded by the chunk: files are read line by line, Parquet through pyarrow's
dataset scanner one record batch at a time, and an image folder is a list of paths.
``skip`` rows are passed over first (a resumed run).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewshot.data.dataset import Dataset
from fewshot.data.loaders import (
    _DELIMITERS,
    _FIELD_LIMIT,
    _IMAGE_FIELDS,
    TEXT_SUFFIXES,
    _from_records,
    _load_image_folder,
    _sniff_delimiter,
    _split_file,
    dataset_splits,
)
from fewshot.errors import DataError

__all__ = ["Chunk", "Source", "open_source"]

STDIN = "-"


@dataclass
class Chunk:
    """Rows read together: ``data`` to embed, and the images left out of it
    (``skipped``: path -> why) when bad images are skipped."""

    data: Dataset
    #: Input rows this chunk consumed (``len(data)`` plus skipped images).
    consumed: int
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class Source:
    """An input opened for chunked reading (nothing read yet beyond a header)."""

    path: Path | None  # None: stdin
    kind: str  # "jsonl", "csv", "tsv", "parquet", "txt", "images", "stdin"
    modality: str
    text_field: str = "text"
    image_field: str | None = None
    id_field: str = "id"
    skip_bad_images: bool = False
    #: Keep each chunk's labels (from this field, CSV cells split on ``label_sep``).
    label_field: str | None = None
    label_sep: str | None = None
    #: Rows in the input when known without reading it all (None: unknown).
    total: int | None = None
    _images: Dataset | None = None

    @property
    def name(self) -> str:
        return "<stdin>" if self.path is None else str(self.path)

    @property
    def rereadable(self) -> bool:
        return self.path is not None

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run checks is still the same input: the path, the size and the
        hash of the first and last MiB (a folder: its image paths)."""
        if self.path is None:
            return {"path": "-"}
        if self._images is not None:
            listing = "\n".join(self._images.ids).encode()
            return {"path": str(self.path.resolve()), "images": len(self._images.ids),
                    "sha256": hashlib.sha256(listing).hexdigest()}
        size = self.path.stat().st_size
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read())
        return {"path": str(self.path.resolve()), "size": size, "sha256": h.hexdigest()}

    def chunks(self, size: int, skip: int = 0) -> Iterator[Chunk]:
        """Chunks of at most ``size`` rows, after passing over the first ``skip``."""
        if self._images is not None:
            yield from self._image_chunks(size, skip)
            return
        records = self._records()
        batch: list[tuple[int, dict[str, Any]]] = []
        for n, rec in enumerate(records):
            if n < skip:
                continue
            batch.append(rec)
            if len(batch) >= size:
                yield self._chunk(batch)
                batch = []
        if batch:
            yield self._chunk(batch)

    # -- records ---------------------------------------------------------------------
    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.kind == "parquet":
            yield from _parquet_records(self.path, self._columns())  # type: ignore[arg-type]
        elif self.kind in ("csv", "tsv"):
            yield from _csv_records(self.path, self.kind == "tsv")  # type: ignore[arg-type]
        elif self.kind == "jsonl":
            with _open_text(self.path) as f:  # type: ignore[arg-type]
                yield from _jsonl_records(self.name, f)
        elif self.kind == "txt":
            with _open_text(self.path) as f:  # type: ignore[arg-type]
                yield from _line_records(f, self.text_field)
        else:  # stdin: JSONL when the first non-blank line is an object
            yield from _stdin_records(self.text_field)

    def _columns(self) -> list[str] | None:
        import pyarrow.parquet as pq

        names = pq.read_schema(self.path).names
        wanted = [self.image_field or self.text_field, self.id_field, *_IMAGE_FIELDS,
                  "label", "labels"]
        return [c for c in names if c in wanted]

    def _chunk(self, batch: list[tuple[int, dict[str, Any]]]) -> Chunk:
        data = _from_records(
            batch, Path(self.name), self.text_field, self.label_field or "label",
            self.label_sep, self.id_field, self.image_field, False, False,
        )
        if self.label_field is None:
            data.labels = None
        if data.modality == "image":
            return _drop_unreadable(data, len(batch), self.skip_bad_images)
        return Chunk(data, len(batch))

    def _image_chunks(self, size: int, skip: int) -> Iterator[Chunk]:
        images = self._images
        assert images is not None
        for start in range(skip, len(images), size):
            part = images.subset(range(start, min(start + size, len(images))))
            if self.label_field is None:
                part.labels = None
            yield _drop_unreadable(part, len(part), self.skip_bad_images)


def _drop_unreadable(data: Dataset, consumed: int, skip_bad: bool) -> Chunk:
    """With ``skip_bad``, images PIL cannot decode are left out, with why."""
    if not skip_bad:
        return Chunk(data, consumed)
    from PIL import Image

    keep, skipped = [], {}
    for i, p in enumerate(data.items):
        try:
            with Image.open(p) as im:
                im.load()  # a full decode: verify() passes truncated files
            keep.append(i)
        except Exception as e:  # PIL raises many types for broken files
            skipped[str(p)] = f"unreadable image ({e})"
    if skipped:
        source = data.source
        data = data.subset(keep)
        data.source = source
    return Chunk(data, consumed, skipped)


def _open_text(path: Path) -> Any:
    return open(path, encoding="utf-8-sig", newline="")


def _jsonl_records(name: str, lines: Any, first: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(lines, start=first):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{name}:{lineno}: malformed JSON ({e.msg}); fix that line so each "
                            "line is one JSON object") from e
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from e
        if not isinstance(rec, dict):
            raise DataError(f"{name}:{lineno}: expected a JSON object, got "
                            f"{type(rec).__name__}; write one object per line")
        yield lineno, rec


def _line_records(lines: Any, text_field: str, first: int = 1
                  ) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(lines, start=first):
        line = line.rstrip("\r\n")
        if line.strip():
            yield lineno, {text_field: line, "id": str(lineno)}


def _stdin_records(text_field: str) -> Iterator[tuple[int, dict[str, Any]]]:
    stdin = sys.stdin
    head: list[str] = []
    for line in stdin:
        head.append(line.removeprefix("\ufeff") if not head else line)
        if line.strip():
            break
    if not head:
        return
    from itertools import chain

    lines = chain(head, stdin)
    if head[-1].lstrip().startswith("{"):
        yield from _jsonl_records("<stdin>", lines)
    else:
        yield from _line_records(lines, text_field)


def _csv_records(path: Path, tabs: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    limit = csv.field_size_limit(_FIELD_LIMIT)
    try:
        with _open_text(path) as f:
            delimiter = "\t" if tabs else _sniff_delimiter(path, f)
            reader = csv.reader(f, delimiter=delimiter)
            try:
                header = next(reader, None) or []
                repeated = sorted({h for h in header if h.strip() and header.count(h) > 1})
                if repeated:
                    raise DataError(
                        f"{path}:1: the header names {', '.join(map(repr, repeated))} more "
                        "than once; rename or remove the repeated column so each name "
                        "appears once")
                start = reader.line_num + 1
                sep = _DELIMITERS[delimiter]
                example = "" if tabs else f' ("like{delimiter} this")'
                width = len(header)
                for values in reader:
                    while len(values) > width and not values[-1].strip():
                        values.pop()
                    if values and len(values) > width:
                        raise DataError(
                            f"{path}:{start}: {len(values)} fields but the header has "
                            f"{width}; quote fields that contain {sep}{example}, or save the "
                            "data as JSONL")
                    if values:
                        yield start, dict(zip(header, values, strict=False))
                    start = reader.line_num + 1
            except csv.Error as e:
                raise DataError(f"{path}:{reader.line_num}: malformed {path.suffix[1:].upper()} "
                                f"({e}); fix that line, or save the data as JSONL") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from e
    finally:
        csv.field_size_limit(limit)


#: Rows per Parquet record batch read at a time.
_PARQUET_BATCH = 4096


def _parquet_records(path: Path, columns: list[str] | None
                     ) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.dataset as pads

    n = 0
    try:
        scanner = pads.dataset(path, format="parquet").scanner(
            columns=columns, batch_size=_PARQUET_BATCH)
        for batch in scanner.to_batches():
            for rec in batch.to_pylist():
                n += 1
                yield n, rec
    except DataError:
        raise
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"cannot read Parquet file {path} ({e}); check the file") from e


def _parquet_schema(path: Path) -> tuple[list[str], int]:
    """A Parquet file's column names and row count, from its footer."""
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "reading Parquet needs pyarrow: pip install 'fewshot[parquet]'") from e
    try:
        meta = pq.read_metadata(path)
        return meta.schema.to_arrow_schema().names, meta.num_rows
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"cannot read Parquet file {path} ({e}); check the file") from e


def _count_lines(path: Path) -> int:
    """Non-blank lines, counted on bytes (fast: no decoding)."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def open_source(
    path: str | Path, split: str | None = None, *, text_field: str = "text",
    image_field: str | None = None, id_field: str = "id", skip_bad_images: bool = False,
    label_field: str | None = None, label_sep: str | None = None, count: bool = True,
) -> Source:
    """Open DATA (a file, a dataset folder's ``split``, an image folder, or ``"-"``) for
    chunked reading. Problems that show without reading the rows (a missing file, an
    unknown suffix, a Parquet file that cannot be read or lacks the field) are raised
    here, before anything is written. ``count`` counts the rows for the progress bar
    (a quick pass over the bytes; CSV rows are not counted: quoted fields span lines).
    """
    common: dict[str, Any] = {
        "text_field": text_field, "image_field": image_field, "id_field": id_field,
        "skip_bad_images": skip_bad_images, "label_field": label_field, "label_sep": label_sep}
    if str(path) == STDIN:
        return Source(None, "stdin", "text", **common)
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"no such file or folder: {path}; check the path")
    if path.is_dir():
        splits = dataset_splits(path)
        if splits:
            if split is None:
                raise DataError(
                    f"{path} is a dataset folder with splits {', '.join(splits)}; name one "
                    "(for example --split train) or point at the split itself")
            if split not in splits:
                raise DataError(f"{path} has no '{split}' split (it has {', '.join(splits)}); "
                                "pick one of those")
            path = _split_file(path, split) or path / split
    if path.is_dir():
        images = _load_image_folder(path, False, False)
        if label_sep is not None:
            from fewshot.errors import UsageError

            raise UsageError("--label-sep splits CSV cells; an image folder's labels are its "
                             "folder names (drop --label-sep)")
        return Source(path, "images", "image", total=len(images), _images=images, **common)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(f"cannot tell how to read {path} (suffix '{suffix}'); use .jsonl, "
                        ".csv, .tsv, .parquet, .txt or an image folder")
    kind = {".ndjson": "jsonl", ".jsonl": "jsonl"}.get(suffix, suffix[1:])
    total = None
    modality = "image" if image_field else "text"
    if kind == "parquet":
        names, total = _parquet_schema(path)
        field_name = image_field or text_field
        if field_name not in names:
            found = next((f for f in _IMAGE_FIELDS if f in names), None)
            if image_field is None and found is not None:
                modality = "image"
            else:
                raise DataError(
                    f"{path} has no '{field_name}' column; name the right one with "
                    f"--{'image' if image_field else 'text'}-field (columns here: "
                    f"{', '.join(names) or 'none'})")
    elif kind in ("jsonl", "txt") and count:
        total = _count_lines(path)
    source = Source(path, kind, modality, total=total, **common)
    if kind in ("jsonl", "csv", "tsv") and image_field is None:
        first = next(iter(source._records()), None)
        if first is not None and text_field not in first[1] and any(
                f in first[1] for f in _IMAGE_FIELDS):
            source.modality = "image"
    if total == 0 or (kind != "parquet" and next(iter(source._records()), None) is None):
        what = "non-empty lines" if kind == "txt" else "rows"
        raise DataError(f"{path} has no {what}; give a file with at least one record")
    return source

