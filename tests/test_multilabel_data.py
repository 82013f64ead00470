"""Multi-label data: label lists from JSONL/Parquet fields and split CSV cells, the
Dataset that holds them, the protocol's splits on them, and one line for every mistake."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest
from test_cli import assert_error, invoke, ok
from test_data import _jsonl, _jsonl_lines, _message, _table

from fewshot.data import Dataset, few_shot_indices, load_dataset, multi_label_few_shot_indices
from fewshot.errors import DataError, UsageError

EMOTIONS = [
    {"text": "wow, what a day", "labels": ["joy", "surprise", "joy"]},
    {"text": "fine", "labels": []},
    {"text": "how dare they", "labels": ["anger"]},
]

JSONL_SEP = "--label-sep splits CSV cells; JSONL rows give a list (drop --label-sep)"


def _load_quietly(path: Path, **kwargs) -> tuple[Dataset, list[str]]:
    """The dataset and the warnings loading it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(path, **kwargs)
    return ds, [str(w.message) for w in caught]


# -- Dataset ------------------------------------------------------------------------------
def test_dataset_of_label_lists() -> None:
    ds = Dataset(["a", "b", "c"], [["y", "x"], [], ["x"]], ["1", "2", "3"], "text", "s")
    assert ds.multi_label and ds.classes == ["x", "y"]
    sub = ds.subset([2, 1])
    assert sub.labels == [["x"], []] and sub.ids == ["3", "2"] and sub.multi_label
    sub.labels[0].append("z")
    assert ds.labels[2] == ["x"], "a subset's lists are its own"
    assert Dataset(["a"], [[]], ["1"], "text").multi_label  # no label anywhere is still lists
    assert Dataset(["a"], [[]], ["1"], "text").classes == []
    single = Dataset(["a", "b"], ["y", "x"], ["1", "2"], "text")
    assert not single.multi_label and single.classes == ["x", "y"]
    assert not Dataset(["a"], None, ["1"], "text").multi_label


# -- JSONL and Parquet ------------------------------------------------------------------------
def test_labels_field_is_read_when_rows_have_no_label(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", EMOTIONS)
    ds = load_dataset(path)
    assert ds.items == ["wow, what a day", "fine", "how dare they"]
    assert ds.labels == [["joy", "surprise"], [], ["anger"]]  # order kept, repeats dropped
    assert ds.multi_label and ds.classes == ["anger", "joy", "surprise"]
    assert ds.ids == ["1", "2", "3"]
    assert load_dataset(path, require_labels=False).labels == ds.labels


def test_renamed_list_field_and_label_field_of_lists(tmp_path: Path) -> None:
    tags = _jsonl(tmp_path / "t.jsonl", [{"text": "a", "tags": ["x", "y"]},
                                         {"text": "b", "tags": ["y"]}])
    ds = load_dataset(tags, label_field="tags")
    assert ds.labels == [["x", "y"], ["y"]] and ds.multi_label
    # A 'label' field of lists on every row is multi-label too.
    lists = _jsonl(tmp_path / "l.jsonl", [{"text": "a", "label": ["x"]},
                                          {"text": "b", "label": []}])
    assert load_dataset(lists).labels == [["x"], []]
    # A 'labels' field is looked for only under the default name.
    with pytest.raises(DataError) as exc:
        load_dataset(tags, label_field="y")
    assert _message(exc) == (
        f"{tags}:1: no 'y' field; every training/evaluation row needs a label "
        "(name the field with --label-field)"
    )


@pytest.mark.parametrize(
    ("element", "held"),
    [
        ("3", "a number (3)"),
        ("1.5", "a number (1.5)"),
        ("true", "a bool (true)"),
        ("null", "null"),
        ('{"name": "joy"}', "a dict"),
        ('["joy"]', "a list"),
    ],
)
def test_label_names_in_a_list_must_be_strings(tmp_path: Path, element: str, held: str) -> None:
    path = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "a", "labels": ["joy"]}', "",
                        f'{{"text": "b", "labels": ["joy", {element}]}}')
    for require in (True, False):
        with pytest.raises(DataError) as exc:
            load_dataset(path, require_labels=require)
        assert _message(exc) == (
            f"{path}:3: the 'labels' field holds {held} in its list; give label names as strings"
        )


def test_empty_name_in_a_list(tmp_path: Path) -> None:
    path = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "a", "labels": ["joy", " "]}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:1: the 'labels' field holds an empty name in its list; remove it or fill it in"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("true", "holds a bool, not a label; write it as a string"),
        ('{"joy": 1}', "holds a dict, not a label; write it as a string"),
        ("NaN", "holds NaN, not a label; fill it in or remove the row"),
    ],
)
def test_other_junk_in_a_labels_field(tmp_path: Path, value: str, message: str) -> None:
    path = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "a", "labels": ["joy"]}',
                        f'{{"text": "b", "labels": {value}}}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == f"{path}:2: the 'labels' field {message}"


def test_mixed_lists_and_single_labels(tmp_path: Path) -> None:
    path = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}',
                        '{"text": "b", "label": "y"}', '{"text": "c", "label": ["x"]}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:3: the 'label' field holds a list here but one label on line 1; give every "
        "row a list of labels (multi-label) or every row one label"
    )
    path = _jsonl_lines(tmp_path / "e.jsonl", '{"text": "a", "labels": []}',
                        '{"text": "b", "labels": "joy"}')
    with pytest.raises(DataError) as exc:
        load_dataset(path, require_labels=False)
    assert _message(exc) == (
        f"{path}:2: the 'labels' field holds one label here but a list on line 1; give every "
        "row a list of labels (multi-label) or every row one label"
    )


def test_missing_or_null_label_lists(tmp_path: Path) -> None:
    path = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "a", "labels": ["x"]}',
                        '{"text": "b", "labels": null}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: the 'labels' field is empty; give a list of labels ([] for none) or "
        "remove the row"
    )
    path = _jsonl_lines(tmp_path / "e.jsonl", '{"text": "a", "labels": ["x"]}', '{"text": "b"}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: no 'labels' field; every training/evaluation row needs a label "
        "(name the field with --label-field)"
    )
    # Unlabelled use keeps the items and drops labels some rows lack, as for single labels.
    assert load_dataset(path, require_labels=False).labels is None
    path = _jsonl_lines(tmp_path / "f.jsonl", '{"text": "a", "label": "x"}',
                        '{"text": "b", "labels": ["x"]}')
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: no 'label' field but a 'labels' one, while other rows have 'label'; give "
        "every row the same label field"
    )


def test_parquet_list_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "labels": [["x", "y"], []]}), path)
    ds = load_dataset(path)
    assert ds.labels == [["x", "y"], []] and ds.multi_label
    with pytest.raises(UsageError) as exc:
        load_dataset(path, label_sep=";")
    assert _message(exc) == (
        "--label-sep splits CSV cells; Parquet rows give a list (drop --label-sep)"
    )
    pq.write_table(pa.table({"text": ["a", "b"], "labels": [[1.0], [float("nan")]]}), path)
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:1: the 'labels' field holds a number (1.0) in its list; give label names as "
        "strings"
    )


# -- CSV/TSV: --label-sep -------------------------------------------------------------------
def test_csv_label_column_split_on_label_sep(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.csv", ["text", "label"],
                  [("wow", "joy; surprise"), ("fine", ""), ("hm", " ;neutral;; neutral ;")])
    ds, said = _load_quietly(path, label_sep=";")
    assert ds.labels == [["joy", "surprise"], [], ["neutral"]] and said == []
    assert ds.multi_label and ds.classes == ["joy", "neutral", "surprise"]
    # Without --label-sep a cell is one label, as before.
    assert load_dataset(path, require_labels=False).labels is None  # the blank cell
    tsv = _table(tmp_path / "d.tsv", ["sentence", "tags"], [("a", "x|y"), ("b", "y")], "\t")
    ds = load_dataset(tsv, text_field="sentence", label_field="tags", label_sep="|")
    assert ds.labels == [["x", "y"], ["y"]]
    # The column separator may separate labels too, inside quoted cells.
    comma = _table(tmp_path / "c.csv", ["text", "label"], [("a", "x,y"), ("b", "z")])
    assert load_dataset(comma, label_sep=",").labels == [["x", "y"], ["z"]]


def test_csv_labels_column(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.csv", ["text", "labels"], [("wow", "joy;surprise"), ("hm", "")])
    assert load_dataset(path, label_sep=";").labels == [["joy", "surprise"], []]
    # Without --label-sep its cells would be read whole: say what to pass.
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    assert _message(exc) == (
        f"{path}:2: no 'label' column, only 'labels'; pass --label-sep to split its cells into "
        "label lists (for example --label-sep ';'), or --label-field labels for one label per row"
    )
    assert load_dataset(path, label_field="labels", require_labels=False).labels is None


def test_label_sep_that_splits_nothing_is_an_error(tmp_path: Path) -> None:
    path = _table(tmp_path / "d.csv", ["text", "label"],
                  [("a", "x"), ("b", ""), ("c", "y, z"), ("d", "w")])
    for require in (True, False):
        with pytest.raises(DataError) as exc:
            load_dataset(path, label_sep=";", require_labels=require)
        assert _message(exc) == (
            f"{path}:4: --label-sep ';' splits no label cell (this one is 'y, z'); pass the "
            "separator the cells use (they hold ','), or drop --label-sep for one label per row"
        )
    # No other separator in sight: the first label cell is named.
    single = _table(tmp_path / "s.csv", ["text", "label"], [("a", ""), ("b", "x"), ("c", "y")])
    with pytest.raises(DataError) as exc:
        load_dataset(single, label_sep="|")
    assert _message(exc) == (
        f"{single}:3: --label-sep '|' splits no label cell (this one is 'x'); pass the "
        "separator the cells use, or drop --label-sep for one label per row"
    )
    # Nothing to split when no labels are read, or every cell is blank: no error.
    ds, said = _load_quietly(path, label_sep=";", label_field="other", require_labels=False)
    assert ds.labels is None and said == []
    blank = _table(tmp_path / "b.csv", ["text", "label"], [("a", ""), ("b", "")])
    assert load_dataset(blank, label_sep=";").labels == [[], []]
    # One row with two labels is enough to show the separator is right.
    assert load_dataset(_table(tmp_path / "o.csv", ["text", "label"],
                               [("a", "x"), ("b", "x;y")]), label_sep=";").labels == [
        ["x"], ["x", "y"]]


def test_a_number_among_label_lists(tmp_path: Path) -> None:
    for value, shown in (("3", "3"), ("2.5", "2.5")):
        path = _jsonl_lines(tmp_path / "d.jsonl", f'{{"text": "a", "labels": {value}}}',
                            '{"text": "b", "labels": ["joy"]}', "")
        for require in (True, False):
            with pytest.raises(DataError) as exc:
                load_dataset(path, require_labels=require)
            assert _message(exc) == (
                f"{path}:1: the 'labels' field holds a number ({shown}), not a list of labels "
                f'(line 2 has one); write a list of label names, e.g. ["{shown}"]'
            )
    # One number per row and no list anywhere: single-label data, numbers written out.
    numbers = _jsonl_lines(tmp_path / "n.jsonl", '{"text": "a", "label": 3}',
                           '{"text": "b", "label": 4}')
    assert load_dataset(numbers).labels == ["3", "4"]


def test_label_sep_outside_csv_is_a_usage_error(
    tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _jsonl(tmp_path / "d.jsonl", EMOTIONS)
    for require in (True, False):
        with pytest.raises(UsageError) as exc:
            load_dataset(path, label_sep=";", require_labels=require)
        assert _message(exc) == JSONL_SEP
    monkeypatch.setattr("sys.stdin", io.StringIO(path.read_text()))
    with pytest.raises(UsageError) as exc:
        load_dataset("-", label_sep=";")
    assert _message(exc) == JSONL_SEP
    txt = tmp_path / "d.txt"
    txt.write_text("a\nb\n")
    with pytest.raises(UsageError) as exc:
        load_dataset(txt, label_sep=";", require_labels=False)
    assert _message(exc) == (
        "--label-sep splits CSV cells; plain text has no labels (drop --label-sep)"
    )
    with pytest.raises(UsageError) as exc:
        load_dataset(image_folder, label_sep=";")
    assert _message(exc) == (
        "--label-sep splits CSV cells; an image folder's labels are its folder names "
        "(drop --label-sep)"
    )
    with pytest.raises(UsageError) as exc:
        load_dataset(path, label_sep="")
    assert _message(exc) == (
        "--label-sep is empty; give the string that separates labels in a cell (for example ';')"
    )


# -- tables of image paths ------------------------------------------------------------------
def test_image_tables_with_label_lists(image_folder: Path) -> None:
    table = _table(image_folder / "list.csv", ["image", "label"],
                   [("red/red0.png", "red;warm"), ("blue/blue1.png", "blue"), ("red/red2.png", "")])
    ds = load_dataset(table, label_sep=";")
    assert ds.modality == "image" and ds.multi_label
    assert ds.items == [image_folder / "red/red0.png", image_folder / "blue/blue1.png",
                        image_folder / "red/red2.png"]
    assert ds.labels == [["red", "warm"], ["blue"], []]
    assert ds.classes == ["blue", "red", "warm"]
    jsonl = _jsonl(image_folder / "list.jsonl", [
        {"path": "blue/blue0.png", "labels": ["blue", "cool"], "id": "b0"},
        {"path": "red/red1.png", "labels": ["red"]},
    ])
    ds = load_dataset(jsonl)
    assert ds.modality == "image" and ds.ids == ["b0", "2"]
    assert ds.labels == [["blue", "cool"], ["red"]]


# -- the protocol's splits ------------------------------------------------------------------
def test_loaded_label_lists_feed_the_protocol_split(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "labels": [["a"], ["b"], ["a", "b"], [], ["c"]][i % 5]}
            for i in range(40)]
    ds = load_dataset(_jsonl(tmp_path / "d.jsonl", rows))
    chosen = few_shot_indices(ds.labels, 3, 1)
    assert chosen == multi_label_few_shot_indices([r["labels"] for r in rows], 3, 1)
    picked = ds.subset(chosen)
    for c in ("a", "b", "c"):
        assert sum(c in ys for ys in picked.labels) >= 3
    assert sum(not ys for ys in picked.labels) >= 3


def test_go_emotions_reference_splits(shared_data: Path) -> None:
    reference = json.loads((shared_data.parent / "bench" / "splits" / "go_emotions.json")
                           .read_text())
    ds = load_dataset(shared_data / "go_emotions", "train")
    with open(shared_data / "go_emotions" / "train.jsonl", encoding="utf-8") as f:
        raw = [json.loads(line)["labels"] for line in f if line.strip()]
    assert ds.multi_label and ds.labels == raw and len(ds.classes) == 28
    assert len(reference) == 10
    for key, expected in reference.items():
        n, seed = (int(part.split("=")[1]) for part in key.split(","))
        assert few_shot_indices(ds.labels, n, seed) == expected, key


# -- the CLI ---------------------------------------------------------------------------------
COMMANDS = ["embed", "train", "predict", "evaluate", "bench", "review", "audit", "distill",
            "select", "suggest"]


@pytest.mark.parametrize("command", COMMANDS)
def test_label_sep_on_every_command_with_label_field(command: str) -> None:
    shown = ok(command, "--help").stdout
    assert ("--label-sep" in shown) == ("--label-field" in shown)


def test_embed_keeps_label_lists(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    data = _table(tmp_path / "d.csv", ["text", "label"], [("good film", "pos;cinema"),
                                                          ("bad", "neg")])
    out = tmp_path / "emb.npy"
    result = ok("embed", data, "-o", out, "--encoder", tiny_text_model_dir, "--no-cache",
                "--label-sep", ";")
    assert "warning" not in result.stderr
    sidecar = json.loads((tmp_path / "emb.ids.json").read_text())
    assert sidecar["labels"] == [["pos", "cinema"], ["neg"]]
    line = assert_error(invoke("embed", data, "-o", out, "--encoder", tiny_text_model_dir,
                               "--no-cache", "--label-sep", "|", "--force"), 1)
    assert line == (
        f"error: {data}:2: --label-sep '|' splits no label cell (this one is 'pos;cinema'); "
        "pass the separator the cells use (they hold ';'), or drop --label-sep for one label "
        "per row"
    )


def test_cli_label_sep_for_jsonl(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    data = _jsonl(tmp_path / "d.jsonl", EMOTIONS)
    line = assert_error(
        invoke("train", data, "-o", tmp_path / "m", "--encoder", tiny_text_model_dir,
               "--label-sep", ";"), 2)
    assert line == f"error: {JSONL_SEP}"


# -- bad input through the CLI: one line, the line or label named, a non-zero exit --------------
ML_TEXTS = ["a good movie", "great film", "excellent plot", "wonderful actor", "a bad movie",
            "awful film", "terrible plot", "boring actor"]
ML_LABELS = [["pos"], ["pos", "cinema"], ["pos"], ["pos"], ["neg"], ["neg", "cinema"], ["neg"],
             []]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"text": "b", "labels": ["joy", 7]}',
         "the 'labels' field holds a number (7) in its list; give label names as strings"),
        ('{"text": "b", "labels": ["joy", ["anger"]]}',
         "the 'labels' field holds a list in its list; give label names as strings"),
        ('{"text": "b", "labels": 7}',
         "the 'labels' field holds a number (7), not a list of labels (line 1 has one); "
         'write a list of label names, e.g. ["7"]'),
    ],
)
def test_cli_bad_label_values(tmp_path: Path, tiny_text_model_dir: Path, row: str,
                              message: str) -> None:
    data = _jsonl_lines(tmp_path / "d.jsonl", '{"text": "a", "labels": ["joy"]}', row)
    line = assert_error(invoke("train", data, "-o", tmp_path / "m", "--encoder",
                               tiny_text_model_dir, "--no-cache"), 1)
    assert line == f"error: {data}:2: {message}"
    assert not (tmp_path / "m").exists()


def test_cli_label_sep_that_splits_nothing(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    data = _table(tmp_path / "d.csv", ["text", "label"],
                  [(t, ",".join(y)) for t, y in zip(ML_TEXTS, ML_LABELS, strict=True)])
    line = assert_error(invoke("train", data, "-o", tmp_path / "m", "--encoder",
                               tiny_text_model_dir, "--no-cache", "--label-sep", ";"), 1)
    assert line == (
        f"error: {data}:3: --label-sep ';' splits no label cell (this one is 'pos,cinema'); "
        "pass the separator the cells use (they hold ','), or drop --label-sep for one label "
        "per row"
    )
    ok("train", data, "-o", tmp_path / "m", "--encoder", tiny_text_model_dir, "--no-cache",
       "--label-sep", ",")


def test_cli_evaluate_label_never_trained_on(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    train = _jsonl(tmp_path / "train.jsonl", [{"text": t, "labels": y}
                                              for t, y in zip(ML_TEXTS, ML_LABELS, strict=True)])
    model = tmp_path / "m"
    ok("train", train, "-o", model, "--encoder", tiny_text_model_dir, "--no-cache")
    test = _jsonl(tmp_path / "test.jsonl", [
        {"text": "a good film", "labels": ["pos", "cinema"]},
        {"text": "the worst story", "labels": ["neg", "sarcasm"]},
        {"text": "it was fine", "labels": ["irony"]},
        {"text": "dull plot", "labels": ["neg"]},
    ])
    line = assert_error(invoke("evaluate", model, test, "--no-cache"), 1)
    assert line == (
        f"error: {test} has labels the model was not trained on: irony, sarcasm; fix the "
        "labels or pass --allow-unknown-labels"
    )
    report = json.loads(ok("evaluate", model, test, "--no-cache", "--json",
                           "--allow-unknown-labels").stdout)
    # The unknown labels are scored (never predicted: recall 0) and count in macro-F1.
    assert list(report["per_label"]) == ["cinema", "neg", "pos", "irony", "sarcasm"]
    for label in ("irony", "sarcasm"):
        assert report["per_label"][label] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                              "support": 1}
    f1s = [m["f1"] for m in report["per_label"].values()]
    assert report["macro_f1"] == pytest.approx(sum(f1s) / 5)
    assert report["n"] == 4
