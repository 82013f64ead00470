"""CLI: calibrated train/evaluate, review, audit, label descriptions, self-training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import SENTIMENT
from test_cli import assert_error, invoke, ok


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.delenv("FEWSHOT_MODELS", raising=False)


@pytest.fixture
def common(tiny_text_model_dir: Path, cache_dir: Path) -> list[object]:
    return ["--encoder", tiny_text_model_dir, "--cache-dir", cache_dir, "--device", "cpu"]


@pytest.fixture
def model(tmp_path: Path, sentiment_jsonl: Path, common: list[object]) -> Path:
    out = tmp_path / "model"
    result = ok("train", sentiment_jsonl, "-o", out, "--head", "logreg", *common)
    assert "calibration: temperature" in result.stderr
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- evaluate: calibration metrics ---------------------------------------------------------------
def test_evaluate_reports_ece_and_brier(
    model: Path, sentiment_jsonl: Path, common: list[object], tmp_path: Path
) -> None:
    report = json.loads(ok("evaluate", model, sentiment_jsonl, "--json", *common).stdout)
    assert report["calibration"] == "temperature" and report["ece_bins"] == 15
    for key in ("ece", "brier", "ece_uncalibrated", "brier_uncalibrated"):
        assert 0.0 <= report[key] <= 2.0, key
    text = ok("evaluate", model, sentiment_jsonl, *common).stdout
    assert "ECE=" in text and "uncalibrated ECE=" in text
    plain = tmp_path / "plain"
    ok("train", sentiment_jsonl, "-o", plain, "--calibration", "none", *common)
    report = json.loads(ok("evaluate", plain, sentiment_jsonl, "--json", *common).stdout)
    assert report["calibration"] is None and "ece_uncalibrated" not in report
    assert not (plain / "calibration.safetensors").exists()


def test_train_rejects_unknown_calibration(
    sentiment_jsonl: Path, common: list[object], tmp_path: Path
) -> None:
    result = invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--calibration", "platt",
                    *common)
    assert_error(result, 2, "unknown calibration 'platt'", "--calibration",
                 "temperature, isotonic or none")
    assert not (tmp_path / "m").exists()


# -- review -----------------------------------------------------------------------------------
def test_review_splits_and_summarises(
    model: Path, sentiment_jsonl: Path, common: list[object], tmp_path: Path
) -> None:
    out = tmp_path / "review"
    result = ok("review", model, sentiment_jsonl, "-o", out, "--target-precision", "0.9",
                "--conformal", "0.8", *common)
    assert sorted(p.name for p in out.iterdir()) == [
        "accepted.jsonl", "summary.json", "to_review.jsonl"
    ]
    accepted, queued = _jsonl(out / "accepted.jsonl"), _jsonl(out / "to_review.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert len(accepted) == summary["n_accepted"] and len(queued) == summary["n_review"]
    assert len(accepted) + len(queued) == len(SENTIMENT) and summary["n_held_out"] == 16
    conf_a = [r["confidence"] for r in accepted]
    conf_q = [r["confidence"] for r in queued]
    assert conf_a == sorted(conf_a, reverse=True) and conf_q == sorted(conf_q)
    assert all(c >= summary["threshold"] for c in conf_a)
    assert all(c < summary["threshold"] for c in conf_q)
    row = (accepted or queued)[0]
    assert set(row) >= {"id", "text", "label", "confidence", "set", "given_label"}
    assert row["label"] in row["set"]
    assert summary["measured"]["conformal_coverage"] is not None
    assert "accepted" in result.stderr and "estimated precision" in result.stderr
    # How firm the estimate is: the bound from the accepted held-out rows, said in words.
    from scipy.stats import beta

    k, p = summary["n_held_out_accepted"], summary["estimated_precision"]
    assert 0 < k <= 16 and summary["precision_lower_95"] == pytest.approx(
        0.05 ** (1 / k) if p == 1.0 else beta.ppf(0.05, p * k, k - p * k + 1))
    assert summary["n_held_out_accepted_effective"] == pytest.approx(k)  # no weights
    assert (f"with {k} held-out predictions at or above the threshold, precision on new data "
            f"could be as low as {summary['precision_lower_95']:.3f} (approximate one-sided "
            "95% bound)" in result.stderr)
    # CSV, on unlabelled text.
    new = tmp_path / "new.txt"
    new.write_text("a good film\nawful boring plot\n")
    ok("review", model, new, "-o", tmp_path / "r2", "--format", "csv", *common)
    rows = []
    for name in ("accepted.csv", "to_review.csv"):
        with open(tmp_path / "r2" / name, newline="") as f:
            rows += list(csv.DictReader(f))
    assert sorted(r["text"] for r in rows) == ["a good film", "awful boring plot"]
    assert "measured" not in json.loads((tmp_path / "r2" / "summary.json").read_text())
    # One item: one of the two files has no rows, yet both have the same columns.
    one = tmp_path / "one.txt"
    one.write_text("a good film\n")
    ok("review", model, one, "-o", tmp_path / "r3", "--format", "csv", *common)
    headers = {(tmp_path / "r3" / n).read_text().splitlines()[0]
               for n in ("accepted.csv", "to_review.csv")}
    assert headers == {"id,text,label,confidence,p_neg,p_pos"}
    # --force replaces an earlier review, never a folder of other files.
    ok("review", model, one, "-o", tmp_path / "r3", "--force", *common)
    assert sorted(p.name for p in (tmp_path / "r3").iterdir()) == [
        "accepted.jsonl", "summary.json", "to_review.jsonl"
    ]
    (tmp_path / "r3" / "notes.txt").write_text("mine")
    assert_error(invoke("review", model, one, "-o", tmp_path / "r3", "--force", *common), 2,
                 "holds files this command did not write (notes.txt)")
    assert (tmp_path / "r3" / "notes.txt").read_text() == "mine"


def test_review_and_suggest_write_parquet(
    model: Path, sentiment_jsonl: Path, common: list[object], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    ok("review", model, sentiment_jsonl, "-o", tmp_path / "j", *common)
    result = ok("review", model, sentiment_jsonl, "-o", tmp_path / "p", "--format", "parquet",
                *common)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "accepted.parquet", "summary.json", "to_review.parquet"
    ]
    assert f"{tmp_path / 'p' / 'accepted.parquet'}" in result.stderr
    for name in ("accepted", "to_review"):
        assert pq.read_table(tmp_path / "p" / f"{name}.parquet").to_pylist() == _jsonl(
            tmp_path / "j" / f"{name}.jsonl")
    ok("suggest", sentiment_jsonl, "--budget", "3", "-o", tmp_path / "s.jsonl", *common)
    ok("suggest", sentiment_jsonl, "--budget", "3", "-o", tmp_path / "s.parquet", *common)
    assert pq.read_table(tmp_path / "s.parquet").to_pylist() == _jsonl(tmp_path / "s.jsonl")


def test_review_warns_of_labels_the_model_never_saw(
    model: Path, common: list[object], tmp_path: Path
) -> None:
    data = _write_jsonl(tmp_path / "d.jsonl", [
        {"text": "a good film", "label": "pos"}, {"text": "awful plot", "label": "neg"},
        {"text": "so so", "label": "meh"},
    ])
    out = tmp_path / "review"
    result = ok("review", model, data, "-o", out, *common)
    assert "warning: 1 items of" in result.stderr
    assert "labels the model was not trained on (meh); the measured figures count them as " \
        "wrong" in result.stderr
    measured = json.loads((out / "summary.json").read_text())["measured"]
    assert measured["unknown_labels"] == 1 and measured["accuracy_all"] <= 2 / 3


def test_review_errors(
    model: Path, sentiment_jsonl: Path, common: list[object], tmp_path: Path
) -> None:
    out = tmp_path / "review"
    out.mkdir()
    assert_error(invoke("review", model, sentiment_jsonl, "-o", out, *common), 2,
                 "already exists")
    assert_error(invoke("review", model, sentiment_jsonl, "-o", tmp_path / "r",
                        "--target-precision", "0", *common), 2, "--target-precision")
    assert_error(invoke("review", model, sentiment_jsonl, "-o", tmp_path / "r",
                        "--format", "xml", *common), 2, "--format")
    plain = tmp_path / "plain"
    ok("train", sentiment_jsonl, "-o", plain, "--calibration", "none", *common)
    assert_error(invoke("review", plain, sentiment_jsonl, "-o", tmp_path / "r", *common), 1,
                 "trained without calibration")
    assert not (tmp_path / "r").exists()


# -- audit ------------------------------------------------------------------------------------
def test_audit_finds_a_flipped_label_and_duplicates(
    tmp_path: Path, common: list[object]
) -> None:
    rows = [{"id": f"r{i}", "text": t, "label": y} for i, (t, y) in enumerate(SENTIMENT)]
    rows[0]["label"] = "neg"  # "a good movie" labelled neg
    rows.append({"id": "dup", "text": "great film", "label": "neg"})  # conflicts with r1
    data = _write_jsonl(tmp_path / "train.jsonl", rows)
    test = _write_jsonl(tmp_path / "test.jsonl", [{"text": "awful film"}])
    out = tmp_path / "audit.jsonl"
    result = ok("audit", data, "-o", out, "--test", test, "--k", "3", *common)
    ranked = _jsonl(out)
    assert len(ranked) == len(rows) and [r["rank"] for r in ranked] == list(range(1, 18))
    top3 = {r["id"] for r in ranked[:3]}
    assert "r0" in top3
    r0 = next(r for r in ranked if r["id"] == "r0")
    assert r0["suggested_label"] == "pos" and "label_disagrees" in r0["flags"]
    dup = next(r for r in ranked if r["id"] == "dup")
    assert "conflicting_duplicate" in dup["flags"] and dup["duplicates"] == ["r1"]
    leak = next(r for r in ranked if r["id"] == "r9")  # "awful film" is also in test
    assert "in_test" in leak["flags"] and leak["test_duplicates"] == ["1"]  # its line
    assert "most likely mislabelled" in result.stdout and "conflicting labels" in result.stdout
    report = json.loads(ok("audit", data, "-o", tmp_path / "a.csv", "--json", *common).stdout)
    assert report["conflicting_groups"] == [["r1", "dup"]] and report["test"] is None
    with open(tmp_path / "a.csv", newline="") as f:
        assert next(csv.DictReader(f))["rank"] == "1"


def test_audit_report_of_a_one_example_class(tmp_path: Path, common: list[object]) -> None:
    # A class with one example is never held out: the report says so instead of
    # "(model agrees)" next to p(label)=n/a.
    rows = [{"id": f"r{i}", "text": t, "label": y} for i, (t, y) in enumerate(SENTIMENT)]
    rows.append({"id": "solo", "text": "so so, neither good nor bad", "label": "meh"})
    data = _write_jsonl(tmp_path / "train.jsonl", rows)
    result = ok("audit", data, "-o", tmp_path / "a.jsonl", "--top", "17", *common)
    line = next(ln for ln in result.stdout.splitlines() if "[solo]" in ln)
    assert "meh (no out-of-fold prediction: one example of its class)" in line
    assert "p(label)=n/a" in line and "model agrees" not in line


def test_audit_errors(tmp_path: Path, sentiment_jsonl: Path, common: list[object]) -> None:
    assert_error(invoke("audit", sentiment_jsonl, "-o", tmp_path / "a.txt", *common), 2,
                 "--output must end in .jsonl, .csv or .parquet, got 'a.txt'")
    one = _write_jsonl(tmp_path / "one.jsonl", [{"text": "good", "label": "pos"}] * 2)
    assert_error(invoke("audit", one, "-o", tmp_path / "a.jsonl", *common), 1, "single class")
    assert_error(invoke("audit", sentiment_jsonl, "-o", tmp_path / "a.jsonl", "--head", "svm",
                        *common), 2, "unknown head 'svm'")


# -- label descriptions -----------------------------------------------------------------------
def test_train_with_label_descriptions_zero_shot(
    tmp_path: Path, sentiment_jsonl: Path, common: list[object]
) -> None:
    desc = tmp_path / "labels.json"
    desc.write_text(json.dumps({"pos": "good great excellent", "neg": "bad awful terrible"}))
    out = tmp_path / "zero"
    result = ok("train", sentiment_jsonl, "-o", out, "--shots", "0", "--label-descriptions",
                desc, *common)
    assert "trained auto on 0 text examples, 2 classes (+ 2 label descriptions)" in result.stderr
    report = json.loads(ok("evaluate", out, sentiment_jsonl, "--json", *common).stdout)
    assert report["accuracy"] >= 0.8
    manifest = json.loads((out / "fewshot.json").read_text())
    assert manifest["label_descriptions"]["pos"] == "good great excellent"


def test_label_description_errors(
    tmp_path: Path, sentiment_jsonl: Path, common: list[object]
) -> None:
    desc = tmp_path / "labels.json"
    desc.write_text(json.dumps({"positive": "good"}))
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--label-descriptions",
                        desc, *common), 1, "labels not in", "positive")
    desc.write_text(json.dumps({"pos": "good"}))
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--shots", "0",
                        "--label-descriptions", desc, *common), 1, "missing: neg")
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--shots", "0",
                        *common), 2, "--shots 0")
    desc.write_text("{not json")
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--label-descriptions",
                        desc, *common), 1, "not valid JSON")


# -- self-training ----------------------------------------------------------------------------
def test_train_self_trains_on_unlabelled_pool(
    tmp_path: Path, sentiment_jsonl: Path, common: list[object]
) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("good good film\ngreat great movie\nawful awful plot\nterrible bad film\n"
                    "a good movie\n")  # the last one is a labelled example: left out
    out = tmp_path / "m"
    result = ok("train", sentiment_jsonl, "-o", out, "--unlabelled", pool,
                "--pseudo-label-threshold", "0.5", "--pseudo-labels-per-class", "1", *common)
    assert "self-training: 2 round(s) added 4 pseudo-labels from a pool of 4" in result.stderr
    manifest = json.loads((out / "fewshot.json").read_text())
    assert manifest["self_training"]["added"] == 4 and manifest["n_train"] == 16
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m2", "--unlabelled", pool,
                        "--calibration", "none", *common), 2, "--unlabelled")


def test_new_commands_help_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import fewshot.cli, sys\n"
        "from typer.testing import CliRunner\n"
        "for args in (['review', '--help'], ['audit', '--help'], ['evaluate', '--help']):\n"
        "    assert CliRunner().invoke(fewshot.cli.app, args).exit_code == 0, args\n"
        "heavy = ('torch', 'faiss', 'sentence_transformers', 'timm', 'sklearn', 'scipy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_review_of_one_shot_model_explains(tmp_path: Path, common: list[object]) -> None:
    data = _write_jsonl(tmp_path / "one.jsonl", [{"text": "good film", "label": "pos"},
                                                 {"text": "bad film", "label": "neg"}])
    ok("train", data, "-o", tmp_path / "m", *common)
    assert_error(invoke("review", tmp_path / "m", data, "-o", tmp_path / "r", *common), 1,
                 "a class needs two")


def test_evaluate_shows_bracketed_labels_as_text(tmp_path: Path, common: list[object]) -> None:
    rows = [{"text": t, "label": f"[{y}]"} for t, y in SENTIMENT]
    data = _write_jsonl(tmp_path / "brackets.jsonl", rows)
    ok("train", data, "-o", tmp_path / "m", *common)
    out = ok("evaluate", tmp_path / "m", data, *common).stdout
    assert out.count("[pos]") >= 3 and out.count("[neg]") >= 3  # table, matrix row and header


def test_self_training_pool_of_only_training_items_is_an_error(
    tmp_path: Path, sentiment_jsonl: Path, common: list[object]
) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--unlabelled",
                        sentiment_jsonl, *common), 1,
                 "is also a training example, so there is nothing to pseudo-label")


def test_self_training_that_adds_nothing_says_why(
    tmp_path: Path, sentiment_jsonl: Path, common: list[object]
) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("good good film\ngreat great movie\n")  # no confident negative
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m", "--unlabelled", pool,
                "--pseudo-label-threshold", "0.5", *common)
    assert ("added nothing from 2 pool items (a round adds only when every class has an "
            "item at or above the confidence threshold)") in result.stderr
