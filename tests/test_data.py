"""load_dataset: every supported layout, and one useful line for every failure."""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewshot.data import Dataset, dataset_splits, load_dataset
from fewshot.errors import DataError, ImageReadError

ROWS = [("a good movie", "pos"), ("awful film", "neg"), ("great plot", "pos")]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _table(path: Path, header: list[str], rows: list[tuple], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, dtype=np.uint8)).save(path)
    return path


def _message(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, "error messages are one line"
    return msg


# -- text formats -------------------------------------------------------------------
def test_jsonl(sentiment_jsonl: Path) -> None:
    ds = load_dataset(sentiment_jsonl)
    assert isinstance(ds, Dataset)
    assert ds.modality == "text"
    assert len(ds) == 16
    assert ds.items[0] == "a good movie" and ds.labels[0] == "pos"
    assert ds.items[-1] == "poor movie very bad" and ds.labels[-1] == "neg"
    assert ds.ids == [str(i) for i in range(1, 17)]  # 1-based line numbers
    assert ds.classes == ["neg", "pos"]
    assert ds.source == str(sentiment_jsonl)


def test_jsonl_skips_blank_lines_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "d.ndjson"
    path.write_text(
        '{"text": "one", "label": "a"}\n\n   \n{"text": "two", "label": "b"}\n', encoding="utf-8"
    )
    ds = load_dataset(path)
    assert ds.items == ["one", "two"]
    assert ds.labels == ["a", "b"]
    assert ds.ids == ["1", "4"]  # the line each row is on: blank lines shift nothing


def test_csv(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.csv", ["text", "label"], ROWS + [("comma, inside", "neg")])
    ds = load_dataset(path)
    assert ds.items == [t for t, _ in ROWS] + ["comma, inside"]
    assert ds.labels == ["pos", "neg", "pos", "neg"]
    assert ds.modality == "text"


def test_tsv(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.TSV", ["label", "text"], [(y, t) for t, y in ROWS], "\t")
    ds = load_dataset(path)
    assert ds.items == [t for t, _ in ROWS]
    assert ds.labels == [y for _, y in ROWS]


def test_csv_with_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("text,label\nhéllo,a\n", encoding="utf-8-sig")
    ds = load_dataset(path)
    assert ds.items == ["héllo"] and ds.labels == ["a"]


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(
        pa.table({"text": ["x", "y", "z"], "label": [1, 0, 1], "id": [10, 11, 12]}), path
    )
    ds = load_dataset(path)
    assert ds.items == ["x", "y", "z"]
    assert ds.labels == ["1", "0", "1"]
    assert ds.ids == ["10", "11", "12"]


def test_txt_is_unlabelled_one_item_per_line(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("first line\n\nsecond, with comma\r\n  \nthird\n", encoding="utf-8")
    ds = load_dataset(path, require_labels=False)
    assert ds.items == ["first line", "second, with comma", "third"]
    assert ds.labels is None
    assert ds.ids == ["1", "3", "5"]  # 1-based line numbers
    assert ds.modality == "text"


def test_txt_with_labels_required_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("x\n")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path} is plain text (one item per line, no labels); labelled data must be "
        ".jsonl, .csv, .tsv or .parquet"
    )


def test_custom_field_names(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "d.jsonl",
        [{"sentence": "s1", "y": "a", "uid": "u-1"}, {"sentence": "s2", "y": "b", "uid": "u-2"}],
    )
    ds = load_dataset(path, text_field="sentence", label_field="y", id_field="uid")
    assert ds.items == ["s1", "s2"]
    assert ds.labels == ["a", "b"]
    assert ds.ids == ["u-1", "u-2"]


def test_labels_and_ids_converted_to_str(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "d.jsonl",
        [
            {"text": "a", "label": 0, "id": 7},
            {"text": "b", "label": 1},
            {"text": "c", "label": 2.5, "id": "x"},
            {"text": 42, "label": -3},
        ],
    )
    ds = load_dataset(path)
    assert ds.labels == ["0", "1", "2.5", "-3"]
    assert all(isinstance(y, str) for y in ds.labels)
    assert ds.ids == ["7", "2", "x", "4"]  # the id field, else the line number
    assert ds.items == ["a", "b", "c", "42"]
    assert ds.classes == ["-3", "0", "1", "2.5"]


def test_unlabelled_rows_allowed_when_not_required(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    ds = load_dataset(path, require_labels=False)
    assert ds.items == ["a", "b"]
    assert ds.labels is None  # kept only when every row has one
    full = _jsonl(tmp_path / "e.jsonl", [{"text": "a", "label": "x"}])
    assert load_dataset(full, require_labels=False).labels == ["x"]


# -- text errors ----------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == f"no such file or folder: {path}; check the path"


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_malformed_jsonl_line_names_line_number(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n{"text": "c"}\n')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    msg = _message(exc)
    assert msg.startswith(f"{path}:3: malformed JSON (")
    assert msg.endswith("); fix that line so each line is one JSON object")


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: expected a JSON object, got list; write one object per line"
    )


def test_missing_text_field(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "d.jsonl",
        [{"text": "a", "label": "x"}, {"sentence": "b", "label": "y"}],
    )
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: no 'text' field; name the right field with --text-field "
        "(fields here: sentence, label)"
    )


def test_empty_text_value_is_named_as_empty_not_missing(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.csv", ["text", "label"], [("ok", "a"), ("   ", "b")])
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    # header is line 1; the field exists, so --text-field would be the wrong advice
    assert _message(exc) == f"{path}:3: the 'text' field is empty; fill it in or remove the row"
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "ok", "label": "a"}\n{"text": null, "label": "b"}\n')
    with pytest.raises(DataError) as exc:
        load_dataset(jsonl)
    assert _message(exc) == f"{jsonl}:2: the 'text' field is empty; fill it in or remove the row"
    jsonl.write_text('{"text": "ok", "label": "a"}\n{"text": ["a", "b"], "label": "b"}\n')
    with pytest.raises(DataError) as exc:
        load_dataset(jsonl)
    assert _message(exc) == (
        f"{jsonl}:2: the 'text' field holds a list, not text; write it as a string"
    )
    jsonl.write_text('{"text": "ok", "label": "a"}\n{"text": "fine", "label": ""}\n')
    with pytest.raises(DataError) as exc:
        load_dataset(jsonl)
    assert _message(exc) == (
        f"{jsonl}:2: the 'label' field is empty; every training/evaluation row needs a "
        "label (fill it in or remove the row)"
    )


def test_text_folder_without_split_names_points_at_its_file(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "data.jsonl").write_text('{"text": "ok", "label": "a"}\n')
    for require in (True, False):
        with pytest.raises(DataError) as exc:
            load_dataset(folder, require_labels=require)
        assert _message(exc) == (
            f"{folder} has no train/test files or class folders; point at the file itself "
            f"(e.g. {folder / 'data.jsonl'}) or name it train.jsonl or test.jsonl"
        )


def test_csv_line_numbers_follow_multiline_fields_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\nok,a\n\n"two\nlines",b\nno label,\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc).startswith(f"{path}:6: the 'label' field is empty;")
    ds = load_dataset(path, require_labels=False)
    assert ds.items == ["ok", "two\nlines", "no label"]
    assert ds.ids == ["2", "4", "6"]  # the line each row starts on, as errors count


def test_csv_row_with_an_unquoted_comma_is_an_error_not_a_new_class(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nok,a\nHello, my parcel is late,b\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f'{path}:3: 3 fields but the header has 2; quote fields that contain commas '
        '("like, this"), or save the data as JSONL'
    )
    path.write_text("text,label\nok,a\n\"Hello, my parcel is late\",b\n", encoding="utf-8")
    assert load_dataset(path).labels == ["a", "b"]
    # Trailing empty fields (spreadsheet exports) are not extra data.
    path.write_text("text,label\nok,a,,\nfine,b,\n", encoding="utf-8")
    assert load_dataset(path).labels == ["a", "b"]
    # A short row lacks its last fields: fine when they are not needed, named when they are.
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\tnote\nok\ta\nsome text\n", encoding="utf-8")
    assert load_dataset(tsv, require_labels=False).items == ["ok", "some text"]
    with pytest.raises(DataError) as exc:
        load_dataset(tsv)
    assert _message(exc).startswith(f"{tsv}:3: no 'label' field;")
    tsv.write_text("text\tlabel\nok\ta\tstray\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(tsv)
    assert _message(exc) == (
        f"{tsv}:2: 3 fields but the header has 2; quote fields that contain tabs, or save the "
        "data as JSONL"
    )


def test_csv_field_over_csvs_default_limit_loads(tmp_path: Path) -> None:
    # csv's default limit is 131,072 characters a field; JSONL has none, so CSV neither.
    path = tmp_path / "d.csv"
    path.write_text('text,label\nok,a\n"' + "x" * 200_000 + '",b\n', encoding="utf-8")
    ds = load_dataset(path)
    assert [len(t) for t in ds.items] == [2, 200_000] and ds.labels == ["a", "b"]
    assert csv.field_size_limit() == 131_072, "the process-wide limit is put back"


def _jsonl_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ('["positive", 3]', "holds a number (3) in its list; give label names as strings"),
        ('["positive", "a"]', "holds a list here but one label on line 1; give every row a "
         "list of labels (multi-label) or every row one label"),
        ('{"name": "positive"}', "holds a dict, not a label; write it as a string"),
        ("true", "holds a bool, not a label; write it as a string"),
        ("false", "holds a bool, not a label; write it as a string"),
        ("NaN", "holds NaN, not a label; fill it in or remove the row"),
        ("-Infinity", "holds -Infinity, not a label; fill it in or remove the row"),
    ],
)
def test_label_that_is_not_a_string_or_number(tmp_path: Path, label: str, message: str) -> None:
    path = _jsonl_lines(
        tmp_path / "d.jsonl", '{"text": "ok", "label": "a"}', "",
        f'{{"text": "fine", "label": {label}}}',
    )
    for require in (True, False):  # junk is junk whether or not labels are needed
        with pytest.raises(DataError) as exc:
            load_dataset(path, require_labels=require)
        assert _message(exc) == f"{path}:3: the 'label' field {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "holds NaN, not text; fill it in or remove the row"),
        ("Infinity", "holds Infinity, not text; fill it in or remove the row"),
        ('{"a": 1}', "holds a dict, not text; write it as a string"),
        ("false", "holds a bool, not text; write it as a string"),
    ],
)
def test_text_that_is_not_a_string_or_number(tmp_path: Path, text: str, message: str) -> None:
    path = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "ok", "label": "a"}',
                        f'{{"text": {text}, "label": "b"}}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == f"{path}:2: the 'text' field {message}"


def test_nan_in_parquet_is_named(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["x", "y"], "label": [1.0, float("nan")]}), path)
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: the 'label' field holds NaN, not a label; fill it in or remove the row"
    )


def test_labels_list_field_is_multi_label(tmp_path: Path) -> None:
    """(Every multi-label rule: tests/test_multilabel_data.py.)"""
    path = _jsonl(
        tmp_path / "d.jsonl",
        [{"text": "wow", "labels": ["joy", "surprise"]}, {"text": "hm", "labels": ["neutral"]}],
    )
    for ds in (load_dataset(path), load_dataset(path, label_field="labels"),
               load_dataset(path, require_labels=False)):
        assert ds.items == ["wow", "hm"] and ds.labels == [["joy", "surprise"], ["neutral"]]
        assert ds.multi_label and ds.classes == ["joy", "neutral", "surprise"]
    assert not load_dataset(_jsonl(tmp_path / "s.jsonl", [{"text": "a", "label": "x"}])).multi_label


def test_whitespace_label_is_empty(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": " "}])
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc).startswith(f"{path}:2: the 'label' field is empty;")


def test_csv_with_a_repeated_column_name(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label,label\nok,a,b\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:1: the header names 'label' more than once; rename or remove the repeated "
        "column so each name appears once"
    )
    path.write_text("id,text,label,id,text\n1,ok,a,2,no\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc).startswith(f"{path}:1: the header names 'id', 'text' more than once;")
    # Empty names (a spreadsheet's trailing separators) are not columns.
    path.write_text("text,label,,\nok,a,,\n", encoding="utf-8")
    assert load_dataset(path).labels == ["a"]


@pytest.mark.parametrize("sep", [";", "|", "\t"])
def test_csv_separator_is_detected(tmp_path: Path, sep: str) -> None:
    path = _table(tmp_path / "d.csv", ["text", "label"],
                  [("Hello, my parcel is late", "b"), ("ok", "a")], delimiter=sep)
    ds = load_dataset(path)
    assert ds.items == ["Hello, my parcel is late", "ok"] and ds.labels == ["b", "a"]


def test_csv_separator_detection_cases(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    # One column: no separator in the header, so a semicolon in a row is text.
    path.write_text("text\nHello; world\nfine\n", encoding="utf-8")
    assert load_dataset(path, require_labels=False).items == ["Hello; world", "fine"]
    # A header name with a comma in a semicolon file: the rows decide.
    path.write_text("text;label, coarse\nHello, world;a\nfoo;b\n", encoding="utf-8")
    assert load_dataset(path, label_field="label, coarse").labels == ["a", "b"]
    path.write_text("text;label\nok;a\nHello; my parcel is late;b\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f'{path}:3: 3 fields but the header has 2; quote fields that contain semicolons '
        '("like; this"), or save the data as JSONL'
    )
    path.write_text("text,label|note\n1,2,3\nx|y|z|w,5\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:1: cannot tell which separates the columns (tried commas, '|' characters); "
        "separate them with one of those only, or save the data as JSONL"
    )


def test_missing_label_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: no 'label' field; every training/evaluation row needs a label "
        "(name the field with --label-field)"
    )


def test_missing_custom_label_field_names_it(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.csv", ["text", "label"], ROWS)
    with pytest.raises(DataError) as exc:
        load_dataset(path, label_field="category")
    assert _message(exc).startswith(f"{path}:2: no 'category' field;")


@pytest.mark.parametrize("name", ["empty.jsonl", "blank.jsonl", "header_only.csv"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(
        {"empty.jsonl": "", "blank.jsonl": "\n  \n", "header_only.csv": "text,label\n"}[name]
    )
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == f"{path} has no rows; give a file with at least one record"


def test_empty_txt(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("\n \n")
    with pytest.raises(DataError) as exc:
        load_dataset(path, require_labels=False)
    assert _message(exc) == f"{path} has no non-empty lines; give one item per line"


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"cannot tell how to read {path} (suffix '.xlsx'); use .jsonl, .csv, .tsv, "
        ".parquet, .txt or an image folder"
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    msg = _message(exc)
    assert msg.startswith(f"{path} is not UTF-8 text (")
    assert msg.endswith("; re-save it as UTF-8")


def test_corrupt_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    msg = _message(exc)
    assert msg.startswith(f"cannot read Parquet file {path} (")
    assert msg.endswith("; check the file")


# -- image folders --------------------------------------------------------------------
def test_labelled_image_folder(image_folder: Path) -> None:
    ds = load_dataset(image_folder)
    assert ds.modality == "image"
    assert len(ds) == 12
    assert ds.ids == [f"blue/blue{i}.png" for i in range(6)] + [f"red/red{i}.png" for i in range(6)]
    assert ds.labels == ["blue"] * 6 + ["red"] * 6
    assert ds.items == [image_folder / r for r in ds.ids]
    assert all(isinstance(p, Path) and p.is_file() for p in ds.items)
    assert ds.classes == ["blue", "red"]
    assert ds.skipped == []


def test_image_folder_order_is_bytewise_by_relative_path(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for rel in ["b/2.png", "b/10.png", "B/z.jpg", "a/x.PNG", "a/sub/y.png"]:
        _png(root / rel)
    (root / "a" / "notes.txt").write_text("ignored")
    ds = load_dataset(root)
    assert ds.ids == ["B/z.jpg", "a/sub/y.png", "a/x.PNG", "b/10.png", "b/2.png"]
    assert ds.labels == ["B", "a", "a", "b", "b"]


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="names must be UTF-8 there")
def test_image_names_that_are_not_utf8_sort_by_their_bytes(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _png(root / "a" / "z.png")
    _png(root / "a" / "\u00e9.png")  # UTF-8 0xC3 0xA9
    _png(Path(os.fsdecode(os.fsencode(root / "a") + b"/\xe9.png")))  # Latin-1 0xE9
    ds = load_dataset(root)
    assert [os.fsencode(i) for i in ds.ids] == [b"a/z.png", b"a/\xc3\xa9.png", b"a/\xe9.png"]


def test_image_folder_ignores_hidden_folders(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _png(root / "cat" / "1.png")
    _png(root / ".thumbnails" / "t.png")
    _png(root / "cat" / ".ipynb_checkpoints" / "c.png")
    ds = load_dataset(root)
    assert ds.ids == ["cat/1.png"]
    assert ds.labels == ["cat"]


def test_unlabelled_flat_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for name in ["b.png", "a.jpg", "c.webp"]:
        if name.endswith(".webp"):
            root.mkdir(exist_ok=True)
            Image.new("RGB", (8, 8)).save(root / name)
        else:
            _png(root / name)
    ds = load_dataset(root, require_labels=False)
    assert ds.labels is None
    assert ds.ids == ["a.jpg", "b.png", "c.webp"]
    assert ds.modality == "image"


def test_flat_folder_when_labels_required(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    _png(root / "a.png")
    with pytest.raises(DataError) as exc:
        load_dataset(root)
    assert _message(exc) == (
        f"{root} has no class folders; labelled images go in <folder>/<label>/<file>"
    )


def test_folder_without_images(tmp_path: Path) -> None:
    root = tmp_path / "nothing"
    root.mkdir()
    (root / "readme.md").write_text("hi")
    with pytest.raises(DataError) as exc:
        load_dataset(root, require_labels=False)
    assert _message(exc).startswith(f"{root} holds no images (.bmp, .gif, .jpeg, .jpg,")


def test_empty_class_folder(image_folder: Path) -> None:
    (image_folder / "green").mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(image_folder)
    assert _message(exc) == (
        f"class folder {image_folder / 'green'} has no images; add images or remove the folder"
    )


def test_loose_images_next_to_class_folders(image_folder: Path) -> None:
    _png(image_folder / "stray.png")
    with pytest.raises(DataError) as exc:
        load_dataset(image_folder)
    assert _message(exc) == (
        f"{image_folder} mixes class folders with loose images (e.g. stray.png); "
        "move every image into a <label>/ folder"
    )


# -- tables of image paths ------------------------------------------------------------
def test_csv_of_image_paths_relative_to_the_file(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _table(
        image_folder / "list.csv",
        ["image", "label"],
        [("red/red0.png", "r"), ("blue/blue3.png", "b"), (str(image_folder / "red/red5.png"), "r")],
    )
    monkeypatch.chdir(tmp_path)  # relative paths must not depend on the working directory
    ds = load_dataset(table)
    assert ds.modality == "image"
    assert ds.items == [
        image_folder / "red/red0.png",
        image_folder / "blue/blue3.png",
        image_folder / "red/red5.png",
    ]
    assert ds.labels == ["r", "b", "r"]
    assert ds.ids == ["2", "3", "4"]  # line numbers: the header is line 1


@pytest.mark.parametrize("field", ["path", "file", "filename"])
def test_jsonl_of_image_paths_guesses_field(image_folder: Path, field: str) -> None:
    table = _jsonl(
        image_folder / "list.jsonl",
        [
            {field: "blue/blue0.png", "label": "blue", "id": "b0"},
            {field: "red/red1.png", "label": "red"},
        ],
    )
    ds = load_dataset(table)
    assert ds.modality == "image"
    assert ds.items == [image_folder / "blue/blue0.png", image_folder / "red/red1.png"]
    assert ds.ids == ["b0", "2"]


def test_explicit_image_field(image_folder: Path) -> None:
    table = _jsonl(
        image_folder / "l.jsonl", [{"text": "caption", "pic": "red/red2.png", "label": "x"}]
    )
    ds = load_dataset(table, image_field="pic")
    assert ds.modality == "image"
    assert ds.items == [image_folder / "red/red2.png"]


def test_table_with_missing_image_file(image_folder: Path) -> None:
    table = _table(
        image_folder / "l.csv", ["image", "label"], [("red/red0.png", "r"), ("gone.png", "x")]
    )
    with pytest.raises(DataError) as exc:
        load_dataset(table)
    assert _message(exc) == (
        f"image file not found: {image_folder / 'gone.png'}; fix the path in {table}"
    )


def test_table_with_missing_image_field_names_image_option(image_folder: Path) -> None:
    table = _jsonl(
        image_folder / "l.jsonl", [{"image": "red/red0.png", "label": "r"}, {"label": "x"}]
    )
    with pytest.raises(DataError) as exc:
        load_dataset(table)
    assert _message(exc) == (
        f"{table}:2: no 'image' field; name the right field with --image-field (fields here: label)"
    )


# -- dataset folders with splits ------------------------------------------------------
def test_text_dataset_folder_splits(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _jsonl(root / "train.jsonl", [{"text": "tr", "label": "a"}])
    _jsonl(root / "test.jsonl", [{"text": "te", "label": "b"}])
    assert dataset_splits(root) == ["train", "test"]
    assert load_dataset(root, "train").items == ["tr"]
    assert load_dataset(root, split="test").labels == ["b"]


def test_csv_dataset_folder_splits(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "train.csv").write_text("text,label\ntr,a\n")
    (root / "test.tsv").write_text("text\tlabel\nte\tb\n")
    assert dataset_splits(root) == ["train", "test"]
    assert load_dataset(root, "train").items == ["tr"]
    assert load_dataset(root, "test").labels == ["b"]


def test_image_dataset_folder_splits(tmp_path: Path, image_folder: Path) -> None:
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(image_folder, root / "train")
    _png(root / "test" / "red" / "q.png", 200)
    assert dataset_splits(root) == ["train", "test"]
    train = load_dataset(root, "train")
    assert len(train) == 12 and train.ids[0] == "blue/blue0.png"
    test = load_dataset(root, "test")
    assert test.ids == ["red/q.png"] and test.labels == ["red"]


def test_dataset_folder_requires_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _jsonl(root / "train.jsonl", [{"text": "tr", "label": "a"}])
    _jsonl(root / "test.jsonl", [{"text": "te", "label": "b"}])
    with pytest.raises(DataError) as exc:
        load_dataset(root)
    assert _message(exc) == (
        f"{root} is a dataset folder with splits train, test; name one "
        "(for example --split train) or point at the split itself"
    )


def test_dataset_folder_wrong_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _jsonl(root / "train.jsonl", [{"text": "tr", "label": "a"}])
    with pytest.raises(DataError) as exc:
        load_dataset(root, "validation")
    assert _message(exc) == f"{root} has no 'validation' split (it has train); pick one of those"


def test_shared_dataset_folders(shared_data: Path) -> None:
    sst2 = load_dataset(shared_data / "sst2", "test")
    assert sst2.modality == "text" and len(sst2) > 100
    assert set(sst2.labels) == {"negative", "positive"}
    hym = load_dataset(shared_data / "hymenoptera", "test")
    assert hym.modality == "image" and hym.classes == ["ants", "bees"]


# -- unreadable images ----------------------------------------------------------------
@pytest.fixture
def folder_with_corrupt_image(image_folder: Path) -> Path:
    (image_folder / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return image_folder


def test_skip_bad_images_drops_with_warning(folder_with_corrupt_image: Path) -> None:
    bad = folder_with_corrupt_image / "red" / "broken.png"
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*broken\.png") as rec:
        ds = load_dataset(folder_with_corrupt_image, skip_bad_images=True)
    assert sum("skipping unreadable image" in str(w.message) for w in rec) == 1
    assert len(ds) == 12
    assert "red/broken.png" not in ds.ids
    assert bad not in ds.items
    assert ds.skipped == [str(bad)]
    assert len(ds.labels) == len(ds.ids) == len(ds.items)
    assert ds.labels == [r.split("/")[0] for r in ds.ids]


def test_skip_bad_images_drops_truncated_file(image_folder: Path) -> None:
    good = sorted((image_folder / "red").iterdir())[0]
    from PIL import Image

    whole = image_folder / "red" / "whole.jpg"
    Image.open(good).convert("RGB").resize((64, 64)).save(whole, quality=95)
    cut = image_folder / "red" / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with Image.open(cut) as im:
        im.verify()  # the header check alone does not notice
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*cut\.jpg"):
        ds = load_dataset(image_folder, skip_bad_images=True)
    assert ds.skipped == [str(cut)]
    assert "red/whole.jpg" in ds.ids


def test_skip_bad_images_with_nothing_readable(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "x").mkdir(parents=True)
    (root / "x" / "a.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DataError) as exc:
        load_dataset(root, skip_bad_images=True)
    assert _message(exc) == f"no readable images in {root}"


def test_bad_image_kept_without_skip_then_encoder_names_it(
    folder_with_corrupt_image: Path, tiny_image_encoder
) -> None:
    bad = folder_with_corrupt_image / "red" / "broken.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning without skip_bad_images
        ds = load_dataset(folder_with_corrupt_image)
    assert len(ds) == 13
    assert "red/broken.png" in ds.ids and ds.skipped == []
    good = [p for p in ds.items if p != bad][:2]
    assert tiny_image_encoder.encode(good).shape == (2, tiny_image_encoder.dim)
    with pytest.raises(ImageReadError) as exc:
        tiny_image_encoder.encode([good[0], bad, good[1]])
    assert exc.value.path == str(bad)
    msg = _message(exc)
    assert msg.startswith(f"cannot read image {bad} (")
    assert "--skip-bad-images" in msg
    assert isinstance(exc.value, DataError)
