"""Read labelled or unlabelled data from files and folders.

Text: JSONL, CSV/TSV, Parquet (fields ``text``/``label`` by default) and plain text
(one item per line, no labels). Images: ``<root>/<label>/<file>`` folders, a folder
of unlabelled images, or a CSV/JSONL/Parquet of image paths (+ labels). A dataset
folder with ``train``/``test`` splits (the layout of ../shared/data) is read one
split at a time. Multi-label rows give a list of labels: a ``labels`` list field
(JSONL/Parquet), or a CSV/TSV label column split on ``label_sep``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from fewshot.data.dataset import Dataset
from fewshot.errors import DataError, UsageError

__all__ = ["IMAGE_SUFFIXES", "TEXT_SUFFIXES", "dataset_splits", "load_dataset", "read_records"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEXT_SUFFIXES = frozenset({".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".txt"})
_IMAGE_FIELDS = ("image", "path", "file", "filename")


#: Split files a dataset folder may hold, in the order they are looked for.
_SPLIT_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet")


def dataset_splits(folder: Path) -> list[str]:
    """Names of the splits a dataset folder holds (``train.jsonl``, ``train.csv``, ...,
    or ``train/``)."""
    return [
        split for split in ("train", "validation", "dev", "test")
        if _split_file(folder, split) is not None or _is_image_split(folder / split)
    ]


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in _SPLIT_SUFFIXES:
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    return None


def _is_image_split(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


def load_dataset(
    path: str | Path,
    split: str | None = None,
    *,
    text_field: str = "text",
    label_field: str = "label",
    label_sep: str | None = None,
    id_field: str = "id",
    image_field: str | None = None,
    require_labels: bool = True,
    skip_bad_images: bool = False,
) -> Dataset:
    """Load ``path`` as a :class:`Dataset`, guessing text or images from what it holds.

    ``split`` picks ``<path>/<split>.jsonl`` or ``<path>/<split>/`` when ``path`` is a
    dataset folder; it is ignored for a plain file or image folder. With
    ``require_labels`` every row must carry a label; otherwise labels are kept
    only when every row has one.

    A label field holding lists makes a multi-label dataset (one list of labels per
    row); with ``label_field`` left at ``"label"``, rows with no ``label`` but a
    ``labels`` field are read from that. ``label_sep`` splits a CSV/TSV label column
    into such lists (an empty cell: no label); for other formats it is a UsageError.
    """
    if label_sep == "":
        raise UsageError("--label-sep is empty; give the string that separates labels in a "
                         "cell (for example ';')")
    if str(path) == "-":
        return _from_stdin(text_field, label_field, label_sep, id_field, image_field,
                           require_labels, skip_bad_images)
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"no such file or folder: {path}; check the path")
    if path.is_dir():
        splits = dataset_splits(path)
        if splits:
            if split is None:
                raise DataError(
                    f"{path} is a dataset folder with splits {', '.join(splits)}; "
                    "name one (for example --split train) or point at the split itself"
                )
            if split not in splits:
                raise DataError(
                    f"{path} has no '{split}' split (it has {', '.join(splits)}); "
                    "pick one of those"
                )
            path = _split_file(path, split) or path / split
    if path.is_dir():
        _refuse_label_sep(label_sep, "an image folder's labels are its folder names")
        return _load_image_folder(path, require_labels, skip_bad_images)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(
            f"cannot tell how to read {path} (suffix '{suffix}'); use .jsonl, .csv, .tsv, "
            ".parquet, .txt or an image folder"
        )
    if suffix == ".txt":
        if require_labels:
            raise DataError(
                f"{path} is plain text (one item per line, no labels); labelled data "
                "must be .jsonl, .csv, .tsv or .parquet"
            )
        _refuse_label_sep(label_sep, "plain text has no labels")
        return _from_lines(path)
    if suffix not in (".csv", ".tsv"):
        _refuse_label_sep(label_sep, f"{'Parquet' if suffix == '.parquet' else 'JSONL'} rows "
                          "give a list")
    rows = read_records(path)
    if not rows:
        raise DataError(f"{path} has no rows; give a file with at least one record")
    return _from_records(
        rows, path, text_field, label_field, label_sep, id_field, image_field, require_labels,
        skip_bad_images,
    )


def _refuse_label_sep(label_sep: str | None, why: str) -> None:
    """``label_sep`` splits CSV/TSV cells only; given for another format, a UsageError."""
    if label_sep is not None:
        raise UsageError(f"--label-sep splits CSV cells; {why} (drop --label-sep)")


def _from_stdin(
    text_field: str, label_field: str, label_sep: str | None, id_field: str,
    image_field: str | None, require_labels: bool, skip_bad_images: bool,
) -> Dataset:
    """Items piped in (DATA given as ``-``): JSONL when the first non-blank line is a JSON
    object, else one text per line. Messages name the source ``<stdin>``."""
    source, text = Path("<stdin>"), sys.stdin.read().removeprefix("\ufeff")
    if text.lstrip().startswith("{"):
        _refuse_label_sep(label_sep, "JSONL rows give a list")
        rows = _read_jsonl(source, text)
        return _from_records(rows, source, text_field, label_field, None, id_field,
                             image_field, require_labels, skip_bad_images)
    if require_labels:
        raise DataError("labelled data piped in must be JSONL (one object with text and label "
                        "per line); plain lines have no labels")
    _refuse_label_sep(label_sep, "plain text has no labels")
    return _from_lines(source, text)


def _from_lines(path: Path, text: str | None = None) -> Dataset:
    texts = []
    ids = []
    with _open_text(path, text) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                texts.append(line)
                ids.append(str(lineno))
    if not texts:
        raise DataError(f"{path} has no non-empty lines; give one item per line")
    return Dataset(texts, None, ids, "text", str(path))


def _open_text(path: Path, text: str | None = None) -> Any:
    """The file's lines, or those of ``text`` already read (stdin)."""
    if text is not None:
        return io.StringIO(text)
    # utf-8-sig: files saved by Excel/Notepad start with a BOM that would otherwise
    # become part of the first header name or break the first JSON line.
    return open(path, encoding="utf-8-sig", newline="")


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs of a JSONL, CSV/TSV or Parquet file; line numbers are
    1-based, count the header and blank lines, and name the line a record starts on (a
    Parquet row's number instead). Malformed lines and non-UTF-8 text are DataErrors."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        if suffix in (".csv", ".tsv"):
            return _read_csv(path, suffix == ".tsv")
        return _read_parquet(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from e


#: Column separators a .csv file may use, and their names in messages.
_DELIMITERS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "'|' characters"}
#: The largest field size csv accepts everywhere (a C long; Windows' is 32-bit).
_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


def _sniff_delimiter(path: Path, f: Any) -> str:
    """The separator of a .csv: the one its header line uses; csv.Sniffer decides
    between several, on the first 64 KiB. No separator at all is one column."""
    sample = f.read(65536)
    f.seek(0)
    found = [d for d in _DELIMITERS if d in sample.partition("\n")[0]]
    if len(found) <= 1:
        return found[0] if found else ","
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(found)).delimiter
    except csv.Error:
        raise DataError(
            f"{path}:1: cannot tell which separates the columns (tried "
            f"{', '.join(_DELIMITERS[d] for d in found)}); separate them with one of those "
            "only, or save the data as JSONL"
        ) from None


def _read_csv(path: Path, tabs: bool) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    limit = csv.field_size_limit(_FIELD_LIMIT)  # fields as long as JSONL allows
    with _open_text(path) as f:
        delimiter = "\t" if tabs else _sniff_delimiter(path, f)
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None) or []
            repeated = sorted({h for h in header if h.strip() and header.count(h) > 1})
            if repeated:
                raise DataError(
                    f"{path}:1: the header names {', '.join(map(repr, repeated))} more than "
                    "once; rename or remove the repeated column so each name appears once"
                )
            # A record starts on the line after the previous one ended: quoted
            # fields may span lines, and blank lines are skipped.
            start = reader.line_num + 1
            sep = _DELIMITERS[delimiter]
            example = "" if tabs else f' ("like{delimiter} this")'
            width = len(header)
            for values in reader:
                # Empty trailing fields (a spreadsheet's trailing separators) are not data.
                while len(values) > width and not values[-1].strip():
                    values.pop()
                if values and len(values) > width:
                    raise DataError(
                        f"{path}:{start}: {len(values)} fields but the header has {width}; "
                        f"quote fields that contain {sep}{example}, or save the data as JSONL"
                    )
                if values:
                    # A short row lacks its last fields: the field checks name what is missing.
                    rows.append((start, dict(zip(header, values, strict=False))))
                start = reader.line_num + 1
        except csv.Error as e:  # e.g. a field over the limit
            raise DataError(
                f"{path}:{reader.line_num}: malformed {path.suffix[1:].upper()} ({e}); fix "
                "that line, or save the data as JSONL"
            ) from e
        finally:
            csv.field_size_limit(limit)
    return rows


def _read_jsonl(path: Path, text: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with _open_text(path, text) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: malformed JSON ({e.msg}); fix that line so each line "
                    "is one JSON object"
                ) from e
            if not isinstance(rec, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}; "
                    "write one object per line"
                )
            rows.append((lineno, rec))
    return rows


def _read_parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "reading Parquet needs pyarrow: pip install 'fewshot[parquet]'"
        ) from e
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"cannot read Parquet file {path} ({e}); check the file") from e
    return [(i + 1, r) for i, r in enumerate(table.to_pylist())]


def _from_records(
    rows: list[tuple[int, dict[str, Any]]],
    path: Path,
    text_field: str,
    label_field: str,
    label_sep: str | None,
    id_field: str,
    image_field: str | None,
    require_labels: bool,
    skip_bad_images: bool,
) -> Dataset:
    first = rows[0][1]
    if image_field is None and text_field not in first:
        image_field = next((f for f in _IMAGE_FIELDS if f in first), None)
    field_name = image_field or text_field
    what = "a path" if image_field else "text"
    table = path.suffix.lower() in (".csv", ".tsv")
    if (label_field == "label" and (label_sep is not None or not table)
            and not any("label" in rec for _, rec in rows)
            and any("labels" in rec for _, rec in rows)):
        label_field = "labels"  # multi-label rows: {"text": ..., "labels": [...]}
    items: list[Any] = []
    labels: list[str | list[str]] = []
    ids: list[str] = []
    has_label = True
    kind: tuple[bool, int] | None = None  # (labels are lists, on which line) of the first
    # Among label lists a bare number is a list left out, not a label name: say so on its line.
    lists_at = next((n for n, rec in rows if isinstance(rec.get(label_field), list)), None)
    for lineno, rec in rows:
        number = rec.get(label_field)
        if (lists_at is not None and isinstance(number, int | float)
                and not isinstance(number, bool) and math.isfinite(number)):
            raise DataError(
                f"{path}:{lineno}: the '{label_field}' field holds a number ({json.dumps(number)})"
                f", not a list of labels (line {lists_at} has one); write a list of label "
                f"names, e.g. [\"{number}\"]"
            )
        value = _field(path, lineno, rec, field_name, what)
        if value is None and field_name in rec:
            raise DataError(
                f"{path}:{lineno}: the '{field_name}' field is empty; fill it in or remove "
                "the row"
            )
        if value is None:
            raise DataError(
                f"{path}:{lineno}: no '{field_name}' field; name the right field with "
                f"--{'image' if image_field else 'text'}-field (fields here: "
                f"{', '.join(map(str, rec)) or 'none'})"
            )
        items.append(_image_path(path, value) if image_field else value)
        label = _field(path, lineno, rec, label_field, "a label", label_sep)
        if label is not None:
            listed = isinstance(label, list)
            if kind is None:
                kind = (listed, lineno)
            elif listed != kind[0]:
                held = ("a list here but one label", "one label here but a list")[kind[0]]
                raise DataError(
                    f"{path}:{lineno}: the '{label_field}' field holds {held} on line "
                    f"{kind[1]}; give every row a list of labels (multi-label) or every row "
                    "one label"
                )
        if label is None and require_labels:
            if label_field in rec and (label_field == "labels" or (kind and kind[0])):
                raise DataError(
                    f"{path}:{lineno}: the '{label_field}' field is empty; give a list of "
                    "labels ([] for none) or remove the row"
                )
            if label_field in rec:
                raise DataError(
                    f"{path}:{lineno}: the '{label_field}' field is empty; every "
                    "training/evaluation row needs a label (fill it in or remove the row)"
                )
            if "labels" in rec and label_field == "label" and table:
                raise DataError(
                    f"{path}:{lineno}: no 'label' column, only 'labels'; pass --label-sep "
                    "to split its cells into label lists (for example --label-sep ';'), or "
                    "--label-field labels for one label per row"
                )
            if "labels" in rec and label_field == "label":
                raise DataError(
                    f"{path}:{lineno}: no 'label' field but a 'labels' one, while other rows "
                    "have 'label'; give every row the same label field"
                )
            raise DataError(
                f"{path}:{lineno}: no '{label_field}' field; every training/evaluation "
                f"row needs a label (name the field with --label-field)"
            )
        if label is None:
            has_label = False
        else:
            labels.append(label)
        rid = rec.get(id_field)
        ids.append(str(rid) if rid is not None else str(lineno))
    if label_sep is not None and has_label and labels:
        _check_label_sep(path, rows, label_field, label_sep)
    ds = Dataset(
        items, labels if has_label else None, ids, "image" if image_field else "text", str(path)
    )
    if image_field:
        _check_images(ds, skip_bad_images)
    return ds


#: Strings that often separate labels in a cell, named when --label-sep is not the one.
_LABEL_SEPARATORS = (",", ";", "|", "/")


def _check_label_sep(
    path: Path, rows: list[tuple[int, dict[str, Any]]], field: str, sep: str
) -> None:
    """``--label-sep`` that splits no label cell is a DataError naming a cell and the
    separator its cells use: a wrong separator would read every list as one label."""
    cells = [(n, str(rec.get(field) or "").strip()) for n, rec in rows]
    cells = [(n, cell) for n, cell in cells if cell]
    if not cells or any(sep in cell for _, cell in cells):
        return
    used = [s for s in _LABEL_SEPARATORS if s != sep and any(s in c for _, c in cells)]
    n, cell = next(((n, c) for n, c in cells if used and used[0] in c), cells[0])
    hint = f" (they hold {used[0]!r})" if used else ""
    raise DataError(
        f"{path}:{n}: --label-sep {sep!r} splits no label cell (this one is {cell!r}); pass "
        f"the separator the cells use{hint}, or drop --label-sep for one label per row"
    )


def _field(
    path: Path, lineno: int, rec: dict[str, Any], name: str, what: str,
    sep: str | None = None,
) -> str | list[str] | None:
    """The field as a string (numbers are written out); None when it is missing, null or
    blank. A list, dict, bool, NaN or infinity would become a junk string: a DataError.

    A label may be a list of label names (strings, repeats dropped), and ``sep`` splits
    a label string into one (names stripped, empty ones dropped: a blank cell is [])."""
    value = rec.get(name)
    if sep is not None and isinstance(value, str) and what == "a label":
        return list(dict.fromkeys(y for y in map(str.strip, value.split(sep)) if y))
    if isinstance(value, float) and not math.isfinite(value):
        held, fix = json.dumps(value), "fill it in or remove the row"
    elif isinstance(value, list) and what == "a label":
        for y in value:
            if isinstance(y, str) and y.strip():
                continue
            if isinstance(y, str):
                held, fix = "an empty name", "remove it or fill it in"
            elif isinstance(y, bool | int | float):
                kind = "a bool" if isinstance(y, bool) else "a number"
                held, fix = f"{kind} ({json.dumps(y)})", "give label names as strings"
            else:
                held = "null" if y is None else f"a {type(y).__name__}"
                fix = "give label names as strings"
            raise DataError(f"{path}:{lineno}: the '{name}' field holds {held} in its list; {fix}")
        return list(dict.fromkeys(value))
    elif isinstance(value, dict | list | bool):
        held, fix = f"a {type(value).__name__}", "write it as a string"
    else:
        return None if value is None or not str(value).strip() else str(value)
    raise DataError(f"{path}:{lineno}: the '{name}' field holds {held}, not {what}; {fix}")


def _image_path(table: Path, value: Any) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else table.parent / p


def _load_image_folder(folder: Path, require_labels: bool, skip_bad_images: bool) -> Dataset:
    # Hidden files and folders (.ipynb_checkpoints, .thumbnails, ...) are not data.
    entries = sorted(
        (
            p for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ),
        # The bytes of the name on disk (fsencode: names that are not UTF-8 sort too).
        key=lambda p: os.fsencode(p.relative_to(folder).as_posix()),
    )
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    labelled = bool(class_dirs)
    if labelled:
        top_level = [p for p in entries if p.parent == folder]
        if top_level:
            raise DataError(
                f"{folder} mixes class folders with loose images (e.g. {top_level[0].name}); "
                "move every image into a <label>/ folder"
            )
        counts = {d.name: 0 for d in class_dirs}
        for p in entries:
            counts[p.relative_to(folder).parts[0]] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise DataError(
                f"class folder {folder / empty[0]} has no images; add images or remove the folder"
            )
    if not labelled and not entries:
        tables = sorted(p.name for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if tables:  # a folder of text data without split names, not an image folder
            raise DataError(
                f"{folder} has no train/test files or class folders; point at the file "
                f"itself (e.g. {folder / tables[0]}) or name it "
                f"train{Path(tables[0]).suffix} or test{Path(tables[0]).suffix}"
            )
    if not labelled and require_labels:
        raise DataError(
            f"{folder} has no class folders; labelled images go in <folder>/<label>/<file>"
        )
    if not entries:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rel = [p.relative_to(folder).as_posix() for p in entries]
    labels = [r.split("/", 1)[0] for r in rel] if labelled else None
    ds = Dataset(list(entries), labels, rel, "image", str(folder))
    _check_images(ds, skip_bad_images)
    return ds


def _check_images(ds: Dataset, skip_bad_images: bool) -> None:
    """Missing files always fail; undecodable ones are dropped only when asked to."""
    for p in ds.items:
        if not Path(p).is_file():
            raise DataError(f"image file not found: {p}; fix the path in {ds.source}")
    if not skip_bad_images:
        return
    from PIL import Image

    keep = []
    for i, p in enumerate(ds.items):
        try:
            with Image.open(p) as im:
                im.load()  # a full decode: verify() passes truncated files
            keep.append(i)
        except Exception as e:  # PIL raises many types for broken files
            warnings.warn(f"skipping unreadable image {p} ({e})", stacklevel=3)
            ds.skipped.append(str(p))
    if len(keep) < len(ds.items):
        sub = ds.subset(keep)
        ds.items, ds.labels, ds.ids = sub.items, sub.labels, sub.ids
        if not ds.items:
            raise DataError(f"no readable images in {ds.source}")
