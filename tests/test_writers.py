"""write_rows: JSONL, CSV and Parquet by the suffix, each read back exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fewshot.data import row_format, write_rows
from fewshot.errors import UsageError

ROWS = [
    {"id": "a", "text": "très bien ☺, \"quoted\"", "label": "pos", "score": 0.75,
     "probabilities": {"neg": 0.25, "pos": 0.75}, "flags": ["near_duplicate", "outlier"],
     "label_probability": None},
    {"id": "b", "text": "line\nbreak", "label": "neg", "score": 0.5,
     "probabilities": {"neg": 0.5, "pos": 0.5}, "flags": [], "label_probability": 0.125},
]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    assert write_rows(path, iter(ROWS)) == 2
    assert [json.loads(line) for line in path.read_text("utf-8").splitlines()] == ROWS
    assert "très bien ☺" in path.read_text("utf-8")  # not escaped


def test_csv_round_trip_is_flat(tmp_path: Path) -> None:
    path = tmp_path / "rows.CSV"
    assert write_rows(path, ROWS) == 2
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"id": "a", "text": "très bien ☺, \"quoted\"", "label": "pos", "score": "0.750000",
         "p_neg": "0.250000", "p_pos": "0.750000", "flags": "near_duplicate;outlier",
         "label_probability": ""},
        {"id": "b", "text": "line\nbreak", "label": "neg", "score": "0.500000",
         "p_neg": "0.500000", "p_pos": "0.500000", "flags": "", "label_probability": "0.125000"},
    ]


def test_csv_columns_give_a_header_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    assert write_rows(path, [], columns=["id", "label", "p_neg"]) == 0
    assert path.read_bytes() == b"id,label,p_neg\r\n"
    write_rows(path, [{"id": "x", "other": {"a": 1}}], columns=["id", "label", "other_a"])
    assert path.read_text().splitlines() == ["id,label,other_a", "x,,1"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    assert write_rows(path, iter(ROWS)) == 2
    table = pq.read_table(path)
    assert table.to_pylist() == ROWS
    assert str(table.schema.field("probabilities").type) == "struct<neg: double, pos: double>"
    assert str(table.schema.field("flags").type) == "list<element: string>"
    nested = [{"id": "q", "examples": [{"index": 3, "label": "pos", "score": 0.5}]}]
    write_rows(path, nested)
    assert pq.read_table(path).to_pylist() == nested


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("old\n")

    def broken():
        yield ROWS[0]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_rows(path, broken())
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_row_format(tmp_path: Path) -> None:
    assert row_format("a.JSONL") == ".jsonl" and row_format(Path("b.parquet")) == ".parquet"
    with pytest.raises(UsageError, match=r"^the output must end in \.jsonl, \.csv or "
                       r"\.parquet, got 'p\.txt'$"):
        write_rows(tmp_path / "p.txt", ROWS)
    assert not (tmp_path / "p.txt").exists()
    with pytest.raises(UsageError, match=r"^--output must end in \.jsonl or \.parquet, got "
                       r"'p\.csv'$"):
        row_format("p.csv", (".jsonl", ".parquet"), name="--output")


def test_parquet_without_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fewshot\[parquet\]'"):
        row_format("p.parquet")
    assert row_format("p.jsonl") == ".jsonl"


class _Stdout:
    """A stand-in for sys.stdout with a byte buffer, as a real one has."""

    def __init__(self) -> None:
        import io

        self.buffer = io.BytesIO()
        self.text = io.StringIO()

    def write(self, s: str) -> int:
        return self.text.write(s)

    def flush(self) -> None:
        pass


def test_dash_writes_to_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import pyarrow.parquet as pq

    for fmt, name in ((None, "rows.jsonl"), ("csv", "rows.csv"), (".parquet", "rows.parquet")):
        out = _Stdout()
        monkeypatch.setattr("sys.stdout", out)
        assert write_rows("-", ROWS, fmt=fmt) == 2
        monkeypatch.undo()
        write_rows(tmp_path / name, ROWS)
        if name.endswith(".parquet"):
            assert pq.read_table(io.BytesIO(out.buffer.getvalue())).to_pylist() == ROWS
        else:
            assert out.text.getvalue() == (tmp_path / name).read_bytes().decode()
    assert not list(Path.cwd().glob("-"))  # no file named '-'


def test_format_option_checks() -> None:
    assert row_format("-") == ".jsonl"
    assert row_format("-", fmt="CSV") == ".csv"
    assert row_format("out.csv", fmt="csv") == ".csv"
    with pytest.raises(UsageError) as e:
        row_format("out.csv", fmt="jsonl", name="--output")
    assert str(e.value) == (
        "--format jsonl does not match --output 'out.csv'; a file is written in the format "
        "its extension names: drop --format or change the extension")
    with pytest.raises(UsageError) as e:
        row_format("-", (".jsonl", ".parquet"), fmt="csv")
    assert str(e.value) == "--format must be jsonl or parquet, got 'csv'"


# -- RowStream: rows written chunk by chunk ----------------------------------------------------
@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv", "rows.parquet"])
def test_row_stream_equals_write_rows(tmp_path: Path, name: str) -> None:
    from fewshot.data.writers import RowStream

    stream = RowStream(tmp_path / "streamed" / name)
    for row in ROWS:
        stream.write([row])
        stream.commit()
    assert not (tmp_path / "streamed" / name).exists()  # only complete files appear
    stream.finish()
    write_rows(tmp_path / name, ROWS)
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / "streamed" / name).to_pylist() == ROWS
        assert pq.ParquetFile(tmp_path / "streamed" / name).num_row_groups == 2
        assert not (tmp_path / "streamed" / f"{name}.parts").exists()
    else:
        assert (tmp_path / "streamed" / name).read_bytes() == (tmp_path / name).read_bytes()
        assert not (tmp_path / "streamed" / f"{name}.partial").exists()


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv", "rows.parquet"])
def test_row_stream_resume_drops_what_was_not_committed(tmp_path: Path, name: str) -> None:
    from fewshot.data.writers import RowStream

    stream = RowStream(tmp_path / name)
    stream.write([ROWS[0]])
    state = stream.commit()
    stream.write([ROWS[1]])  # never committed: a kill here loses it, and only it
    stream.write([ROWS[1]])
    stream.close()
    resumed = RowStream(tmp_path / name, resume=state)
    resumed.write([ROWS[1]])
    resumed.commit()
    resumed.finish()
    write_rows(tmp_path / f"whole-{name}", ROWS)
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / name).to_pylist() == ROWS
    else:
        assert (tmp_path / name).read_bytes() == (tmp_path / f"whole-{name}").read_bytes()


def test_merge_parquet_types_a_column_null_in_one_part(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fewshot.data.writers import merge_parquet

    pq.write_table(pa.Table.from_pylist([{"id": "a", "error": None}]), tmp_path / "p0.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": "b", "error": "bad"}]), tmp_path / "p1.parquet")
    with open(tmp_path / "all.parquet", "wb") as f:
        assert merge_parquet([tmp_path / "p0.parquet", tmp_path / "p1.parquet"], f) == 2
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.schema.field("error").type == pa.string()
    assert table.to_pylist() == [{"id": "a", "error": None}, {"id": "b", "error": "bad"}]
