"""Chunked predict/embed: the same output as the whole-file path, resumable after a
SIGKILL, and one-line errors for bad input that keep what was written."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fewshot.cli import app

runner = CliRunner()
WORDS = "good great bad awful film plot movie boring nice dull".split()


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "env-cache"))


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object):
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def model(tmp_path: Path, sentiment_jsonl: Path, tiny_text_model_dir: Path) -> Path:
    ok("train", sentiment_jsonl, "-o", tmp_path / "model", "--encoder", tiny_text_model_dir,
       "--no-cache", "--device", "cpu", "--calibration", "temperature")
    return tmp_path / "model"


def _texts(n: int) -> list[dict]:
    return [{"id": f"r{i}", "text": f"{WORDS[i % 10]} {WORDS[(i * 7) % 10]} film {i % 13}"}
            for i in range(n)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    rows = _texts(57)
    for r in rows[::5]:
        del r["id"]  # these rows are named by their line number
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")  # a blank line
    return path


def _whole_file(model: Path, data: Path, adapt_prior: bool = False) -> list[dict]:
    """The rows of the in-memory path: load everything, predict everything."""
    from fewshot.classifier import FewShotClassifier
    from fewshot.data import load_dataset

    clf = FewShotClassifier.load(model, cache=False, device="cpu", show_progress=False)
    ds = load_dataset(data, require_labels=False)
    proba = clf.predict_proba(ds.items, adapt_prior=adapt_prior)
    return [{"id": ds.ids[i], "text": ds.display(i), **a}
            for i, a in enumerate(clf.model_.prediction_rows(proba))]


def _read(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_chunked_predict_equals_the_whole_file_path(model: Path, data: Path, tmp_path: Path,
                                                    chunk: int) -> None:
    expected = _whole_file(model, data)
    assert len(expected) == 57 and expected[5]["id"] == "6" and expected[1]["id"] == "r1"
    for suffix in (".jsonl", ".parquet"):
        out = tmp_path / f"p{chunk}{suffix}"
        result = ok("predict", model, data, "-o", out, "--no-cache", "--chunk-size", chunk)
        assert result.stderr.strip().splitlines()[-1] == f"wrote 57 predictions to {out}"
        assert _read(out) == expected
        assert not Path(f"{out}.progress.json").exists()
        assert not Path(f"{out}.partial").exists() and not Path(f"{out}.parts").exists()


def test_chunked_inputs_and_outputs_agree(model: Path, data: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _texts(40)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    with open(tmp_path / "d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    expected = _whole_file(model, tmp_path / "d.parquet")
    for name in ("d.parquet", "d.csv"):
        ok("predict", model, tmp_path / name, "-o", tmp_path / f"{name}.jsonl", "--no-cache",
           "--chunk-size", 6)
        assert _read(tmp_path / f"{name}.jsonl") == expected
    # CSV output in chunks: one header, the whole file's cells.
    ok("predict", model, tmp_path / "d.csv", "-o", tmp_path / "p.csv", "--no-cache",
       "--chunk-size", 6)
    from fewshot.data import write_rows

    write_rows(tmp_path / "whole.csv", expected)
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "whole.csv").read_text()
    # stdin in chunks: what the file gives.
    text = "".join(json.dumps(r) + "\n" for r in rows)
    result = runner.invoke(app, ["predict", str(model), "-", "-o", "-", "--no-cache",
                                 "--chunk-size", "6"], input=text)
    assert result.exit_code == 0, result.output
    assert [json.loads(x) for x in result.stdout.splitlines()] == expected


def test_adapt_prior_in_chunks_equals_the_whole_file_path(model: Path, data: Path,
                                                          tmp_path: Path) -> None:
    expected = _whole_file(model, data, adapt_prior=True)
    ok("predict", model, data, "-o", tmp_path / "p.jsonl", "--no-cache", "--chunk-size", 5,
       "--adapt-prior")
    assert _read(tmp_path / "p.jsonl") == expected
    line = one_line_error(invoke("predict", model, data, "-o", tmp_path / "q.jsonl",
                                 "--adapt-prior", "--resume"), 2)
    assert line == ("error: --adapt-prior estimates the class mix from all of DATA before the "
                    "first row is written, so its run cannot resume: drop --resume")


def _cli() -> list[str]:
    return [sys.executable, "-c", "from fewshot.cli import main; main()"]


def test_resume_after_sigkill_writes_each_row_once(model: Path, tmp_path: Path) -> None:
    data = tmp_path / "big.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _texts(3000)))
    args = ["predict", str(model), str(data), "--no-cache", "--chunk-size", "10"]
    ok(*args, "-o", tmp_path / "whole.jsonl")
    out = tmp_path / "p.jsonl"
    env = {**os.environ, "FEWSHOT_CACHE": str(tmp_path / "c")}
    state = Path(f"{out}.progress.json")
    rng = random.Random(0)
    kills = 0
    for attempt in range(3):
        proc = subprocess.Popen([*_cli(), *args, "-o", str(out),
                                 *(["--resume"] if attempt else [])],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        written = json.loads(state.read_text())["rows_written"] if state.exists() else 0
        target = written + rng.randint(50, 600)  # rows, then a random few ms more
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if json.loads(state.read_text())["rows_written"] >= target:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.002)
        time.sleep(rng.random() * 0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills == 3, "every run finished before it could be killed: make the input bigger"
    assert not out.exists() and state.exists()
    result = ok(*args, "-o", out, "--resume")
    assert "of them before --resume)" in result.stderr
    rows = _read(out)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(3000)]
    assert rows == _read(tmp_path / "whole.jsonl")
    assert not state.exists() and not Path(f"{out}.partial").exists()


def _interrupt_after(source, n: int):
    """Make ``source`` stop with KeyboardInterrupt after ``n`` chunks (as a kill would);
    returns its own ``chunks`` to put back."""
    chunks = source.chunks

    def failing(size: int, skip: int = 0):
        for k, chunk in enumerate(chunks(size, skip)):
            if k == n:
                raise KeyboardInterrupt
            yield chunk

    source.chunks = failing
    return chunks


def test_resume_of_a_parquet_output(model: Path, tmp_path: Path) -> None:
    from fewshot.data.streaming import open_source
    from fewshot.jobs.predict import predict_file

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _texts(50)))
    from fewshot.classifier import FewShotClassifier

    clf = FewShotClassifier.load(model, cache=False, device="cpu", show_progress=False)
    source = open_source(data)
    out = tmp_path / "p.parquet"
    chunks = _interrupt_after(source, 3)
    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, source, out, model_dir=model, chunk_size=8, show_progress=False)
    # A part written after the last record (a kill between the two) is dropped on resume.
    (tmp_path / "p.parquet.parts" / "part-000003.parquet").write_bytes(b"half a file")
    source.chunks = chunks  # type: ignore[method-assign]
    done = predict_file(clf, source, out, model_dir=model, chunk_size=8, resume=True,
                        show_progress=False)
    assert (done.resumed_from, done.predicted) == (24, 50)
    assert _read(out) == _whole_file(model, data)
    assert not (tmp_path / "p.parquet.parts").exists()


# -- bad input ---------------------------------------------------------------------------------
def test_parquet_problems_are_one_line(model: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "body": ["good"]}), tmp_path / "nocol.parquet")
    assert one_line_error(invoke("predict", model, tmp_path / "nocol.parquet", "-o",
                                 tmp_path / "p.jsonl"), 1) == (
        f"error: {tmp_path / 'nocol.parquet'} has no 'text' column; name the right one with "
        "--text-field (columns here: id, body)")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    line = one_line_error(invoke("predict", model, tmp_path / "bad.parquet", "-o",
                                 tmp_path / "p.jsonl"), 1)
    assert line.startswith(f"error: cannot read Parquet file {tmp_path / 'bad.parquet'} (")
    assert line.endswith("; check the file")
    assert not list(tmp_path.glob("p.jsonl*"))


def test_a_bad_row_mid_stream_keeps_the_rows_before_it(model: Path, tmp_path: Path) -> None:
    rows = _texts(30)
    rows[24] = {"id": "r24", "body": "no text here"}
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "p.jsonl"
    line = one_line_error(invoke("predict", model, data, "-o", out, "--no-cache",
                                 "--chunk-size", 10), 1)
    assert line == (f"error: {data}:25: no 'text' field; name the right field with --text-field "
                    f"(fields here: id, body) (20 rows before it are kept in {out}.partial; "
                    "rerun with --resume once fixed)")
    assert [r["id"] for r in _read(Path(f"{out}.partial"))] == [f"r{i}" for i in range(20)]
    # The same run again is refused, not restarted over the kept rows.
    assert one_line_error(invoke("predict", model, data, "-o", out, "--no-cache"), 2) == (
        "error: an unfinished run of " + str(out) + " was left (p.jsonl.progress.json); pass "
        "--resume to continue it or --force to start over")
    rows[24]["text"] = rows[24].pop("body")
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))  # fixed in place
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in _texts(5)))
    for wrong, what in ((other, "was started on another input"),):
        line = one_line_error(invoke("predict", model, wrong, "-o", out, "--resume"), 1)
        assert line.startswith(f"error: cannot resume {out}: it {what} (")
    assert [r["id"] for r in _read(Path(f"{out}.partial"))] == [f"r{i}" for i in range(20)]


def test_resume_with_another_model_is_refused(model: Path, tmp_path: Path,
                                              sentiment_jsonl: Path,
                                              tiny_text_model_dir: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _texts(30)))
    out = tmp_path / "p.jsonl"
    from fewshot.classifier import FewShotClassifier
    from fewshot.data.streaming import open_source
    from fewshot.jobs.predict import predict_file

    clf = FewShotClassifier.load(model, cache=False, device="cpu", show_progress=False)
    source = open_source(data)
    _interrupt_after(source, 2)
    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, source, out, model_dir=model, chunk_size=10, show_progress=False)
    kept = Path(f"{out}.partial").read_bytes()
    ok("train", sentiment_jsonl, "-o", tmp_path / "other", "--encoder", tiny_text_model_dir,
       "--no-cache", "--head", "centroid")
    assert one_line_error(invoke("predict", tmp_path / "other", data, "-o", out, "--resume"),
                          1) == (
        f"error: cannot resume {out}: it was started with another model (or the model folder "
        "has changed since); resume with the same DATA, MODEL_DIR and options, or pass "
        "--force to start over")
    assert Path(f"{out}.partial").read_bytes() == kept
    ok("predict", model, data, "-o", out, "--resume", "--no-cache")
    assert [r["id"] for r in _read(out)] == [f"r{i}" for i in range(30)]


def test_a_bad_image_mid_stream(tmp_path: Path, image_folder: Path, tiny_image_dir: Path) -> None:
    enc = ["--encoder", f"local-dir:{tiny_image_dir}", "--no-cache", "--device", "cpu"]
    ok("train", image_folder, "-o", tmp_path / "m", *enc, "--head", "centroid")
    (image_folder / "red" / "red3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "p.jsonl"
    line = one_line_error(invoke("predict", tmp_path / "m", image_folder, "-o", out, *enc,
                                 "--chunk-size", 4), 1)
    assert "red3.png" in line and line.endswith(
        f"(8 rows before it are kept in {out}.partial; rerun with --resume once fixed)")
    assert len(_read(Path(f"{out}.partial"))) == 8
    result = ok("predict", tmp_path / "m", image_folder, "-o", out, *enc, "--chunk-size", 4,
                "--skip-bad-images", "--force")
    assert result.stderr.strip().splitlines()[-1] == (
        f"wrote 11 predictions and 1 rows for skipped images (see their error) to {out}")
    rows = _read(out)
    assert [r["id"] for r in rows] == [*(f"blue/blue{i}.png" for i in range(6)),
                                       *(f"red/red{i}.png" for i in (0, 1, 2, 4, 5, 3))]
    bad = next(r for r in rows if r["id"] == "red/red3.png")
    assert bad["label"] is None and bad["error"].startswith("unreadable image (")
    assert sum(r["error"] is None for r in rows) == 11


# -- embed ---------------------------------------------------------------------------------------
def test_chunked_embed_equals_the_whole_file(tmp_path: Path, sentiment_jsonl: Path,
                                             tiny_text_model_dir: Path,
                                             tiny_text_encoder) -> None:
    from safetensors.numpy import load_file

    expected = tiny_text_encoder.encode([t for t, _ in __import__("conftest").SENTIMENT])
    enc = ["--encoder", str(tiny_text_model_dir), "--no-cache"]
    for suffix in (".npy", ".safetensors", ".parquet"):
        out = tmp_path / f"emb-{suffix[1:]}{suffix}"
        ok("embed", sentiment_jsonl, "-o", out, *enc, "--chunk-size", 5)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(out).to_pylist()
            assert [r["id"] for r in table] == [str(i) for i in range(1, 17)]
            assert [r["label"] for r in table][:2] == ["pos", "pos"]
            got = np.array([r["embedding"] for r in table], dtype=np.float32)
        else:
            got = np.load(out) if suffix == ".npy" else load_file(out)["embeddings"]
            ids = json.loads(out.with_suffix(".ids.json").read_text())
            assert ids["ids"] == [str(i) for i in range(1, 17)] and ids["n"] == 16
            assert ids["labels"][0] == "pos" and ids["labels"][-1] == "neg"
        np.testing.assert_array_equal(got, expected)


def test_embed_resumes_after_an_interruption(tmp_path: Path, tiny_text_encoder) -> None:
    from fewshot.data.streaming import open_source
    from fewshot.jobs.embed import embed_file

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _texts(45)))
    for suffix in (".npy", ".parquet"):
        out = tmp_path / f"emb{suffix}"
        source = open_source(data)
        chunks = _interrupt_after(source, 2)
        with pytest.raises(KeyboardInterrupt):
            embed_file(tiny_text_encoder, source, out, chunk_size=10, show_progress=False)
        if suffix == ".npy":  # bytes written after the last record: cut off on resume
            with open(Path(f"{out}.partial"), "ab") as f:
                f.write(b"\1" * 7)
        source.chunks = chunks
        done = embed_file(tiny_text_encoder, source, out, chunk_size=10, resume=True,
                          show_progress=False)
        assert (done.n, done.resumed_from) == (45, 20)
        expected = tiny_text_encoder.encode([r["text"] for r in _texts(45)])
        if suffix == ".npy":
            np.testing.assert_array_equal(np.load(out), expected)
            ids = json.loads(out.with_suffix(".ids.json").read_text())
            assert ids["ids"] == [f"r{i}" for i in range(45)] and ids["labels"] is None
        else:
            import pyarrow.parquet as pq

            rows = pq.read_table(out).to_pylist()
            assert [r["id"] for r in rows] == [f"r{i}" for i in range(45)]
            np.testing.assert_array_equal(np.array([r["embedding"] for r in rows]), expected)
