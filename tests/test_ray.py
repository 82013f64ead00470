"""--engine ray on a real local Ray (started once for the module): the same predictions
as the local engine, and its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_streaming import invoke, ok, one_line_error


@pytest.fixture(scope="module")
def local_ray():
    import ray  # the `ray` extra, which dev installs: its absence is a failure here
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def model(tmp_path: Path, sentiment_jsonl: Path, tiny_text_model_dir: Path) -> Path:
    ok("train", sentiment_jsonl, "-o", tmp_path / "model", "--encoder", tiny_text_model_dir,
       "--no-cache", "--device", "cpu")
    return tmp_path / "model"


WORDS = "good great bad awful film plot movie boring nice dull".split()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    rows = [{"id": f"r{i}", "text": f"{WORDS[i % 10]} {WORDS[(i * 7) % 10]} film"}
            for i in range(300)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path) -> dict[str, dict]:
    if path.is_dir():
        from fewshot.jobs.ray_engine import read_output

        rows = read_output(path)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(x) for x in path.read_text().splitlines()]
    return {r["id"]: r for r in rows}


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_ray_predictions_equal_the_local_engine(local_ray, model: Path, data: Path,
                                                tmp_path: Path, suffix: str) -> None:
    ok("predict", model, data, "-o", tmp_path / f"local{suffix}", "--no-cache")
    result = ok("predict", model, data, "-o", tmp_path / f"ray{suffix}", "--no-cache",
                "--engine", "ray", "--workers", 2)
    assert "wrote 300 predictions to" in result.stderr
    local, distributed = _rows(tmp_path / f"local{suffix}"), _rows(tmp_path / f"ray{suffix}")
    assert len(local) == 300
    assert distributed == local


def test_ray_parquet_input(local_ray, model: Path, data: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in data.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    ok("predict", model, tmp_path / "data.parquet", "-o", tmp_path / "local.jsonl", "--no-cache")
    ok("predict", model, tmp_path / "data.parquet", "-o", tmp_path / "ray.parquet",
       "--no-cache", "--engine", "ray")
    assert _rows(tmp_path / "ray.parquet") == _rows(tmp_path / "local.jsonl")


def test_ray_row_without_text_is_one_line(local_ray, model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "good film"}\n{"id": "b", "body": "bad film"}\n')
    line = one_line_error(invoke("predict", model, bad, "-o", tmp_path / "p.parquet",
                                 "--engine", "ray", "--no-cache"), 1)
    # Arrow's reader gives the row a null text; the row is named by its id.
    assert line == f"error: {bad}:id b: the 'text' field is empty; fill it in or remove the row"


def test_ray_refusals(model: Path, data: Path, tmp_path: Path) -> None:
    no_ids = tmp_path / "no_ids.jsonl"
    no_ids.write_text('{"text": "good film"}\n')
    assert one_line_error(invoke("predict", model, no_ids, "-o", tmp_path / "p.parquet",
                                 "--engine", "ray"), 1) == (
        f"error: --engine ray needs an 'id' field in every row of {no_ids} (distributed "
        "readers do not know line numbers); add ids or use --engine local")
    assert one_line_error(invoke("predict", model, data, "-o", tmp_path / "p.parquet",
                                 "--engine", "ray", "--resume"), 2) == (
        "error: --resume works with --engine local only (Ray retries failed tasks itself; "
        "rerun to redo a failed job); drop --resume or use --engine local")
    assert one_line_error(invoke("predict", model, data, "-o", "-", "--engine", "ray"), 2) == (
        "error: --engine ray writes a folder of files; give --output a path (out.parquet or "
        "out.jsonl), not -")
    assert one_line_error(invoke("predict", model, data, "-o", tmp_path / "p.jsonl",
                                 "--workers", 2), 2) == (
        "error: --ray-address and --workers are for --engine ray; add --engine ray or drop them")
