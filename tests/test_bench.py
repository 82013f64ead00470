"""fewshot bench: protocol runner, resume, failure rows, reports, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fewshot.bench import (
    METHODS,
    MethodResult,
    load_results,
    parse_int_list,
    plot,
    register_method,
    run_bench,
    write_summary,
)
from fewshot.cache import EmbeddingCache, embed
from fewshot.cli import app
from fewshot.data import few_shot_indices, load_dataset
from fewshot.errors import UsageError

POS = ["good", "great", "excellent", "wonderful", "fine", "love", "loved", "best", "happy", "nice"]
NEG = ["bad", "awful", "terrible", "boring", "worst", "hate", "hated", "poor", "sad", "dull"]
NOUNS = ["movie", "film", "plot", "actor", "story"]

REQUIRED = {
    "dataset", "n_shot", "seed", "method", "encoder", "accuracy", "macro_f1", "mcc",
    "fit_seconds", "predict_seconds", "n_train", "n_test",
}


def _rows(rng: np.random.Generator, n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = POS if label == "pos" else NEG
        text = f"the {rng.choice(NOUNS)} was {rng.choice(words)} and {rng.choice(words)}"
        out.append({"text": text, "label": label})
    return out


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A dataset folder (train.jsonl + test.jsonl) the tiny text model separates."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "tinysent"
    folder.mkdir()
    for split, n in (("train", 40), ("test", 30)):
        with open(folder / f"{split}.jsonl", "w") as f:
            for row in _rows(rng, n):
                f.write(json.dumps(row) + "\n")
    return folder


def test_parse_int_list() -> None:
    assert parse_int_list("8,64") == [8, 64]
    assert parse_int_list("0-4") == [0, 1, 2, 3, 4]
    assert parse_int_list("0-1,7") == [0, 1, 7]
    with pytest.raises(UsageError, match="e.g. 8,64"):
        parse_int_list("a-b")


def test_rows_have_schema_and_match_independent_logreg(
    tiny_dataset: Path, tiny_text_encoder, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    out = tmp_path / "out"
    rows = run_bench([tiny_dataset], out, shots=[4], seeds=[0, 1], methods=["logreg", "knn"],
                     encoder=tiny_text_encoder, cache=EmbeddingCache(tmp_path / "c"),
                     show_progress=False)
    assert len(rows) == 4
    for r in rows:
        assert set(r) >= REQUIRED
        assert r["error"] is None
        assert r["dataset"] == "tinysent" and r["n_train"] == 8 and r["n_test"] == 30
        for k in ("accuracy", "macro_f1"):
            assert 0.0 <= r[k] <= 1.0
    # An independent scikit-learn LogisticRegression on the same split and embeddings.
    train = load_dataset(tiny_dataset, "train")
    test = load_dataset(tiny_dataset, "test")
    Xte = tiny_text_encoder.encode(test.items)
    for seed in (0, 1):
        idx = few_shot_indices(train.labels, 4, seed)
        Xtr = tiny_text_encoder.encode([train.items[i] for i in idx])
        ref = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(
            Xtr, [train.labels[i] for i in idx]
        )
        pred = ref.predict(Xte)
        row = next(r for r in rows if r["seed"] == seed and r["method"] == "logreg")
        assert row["accuracy"] == pytest.approx(accuracy_score(test.labels, pred), abs=1e-12)
        assert row["macro_f1"] == pytest.approx(f1_score(test.labels, pred, average="macro"),
                                                abs=1e-12)
        assert row["mcc"] == pytest.approx(matthews_corrcoef(test.labels, pred), abs=1e-12)
    assert all(r["accuracy"] > 0.8 for r in rows if r["method"] == "logreg")


def test_resume_skips_finished_rows_and_repairs_cut_line(
    tiny_dataset: Path, tiny_text_encoder, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    kw = dict(shots=[2], seeds=[0, 1], methods=["centroid"], encoder=tiny_text_encoder,
              cache=False, show_progress=False)
    run_bench([tiny_dataset], out, **kw)
    results = out / "results.jsonl"
    first = results.read_text().splitlines()
    assert len(first) == 2
    # Same call again: nothing to do, nothing appended.
    run_bench([tiny_dataset], out, **kw)
    assert results.read_text().splitlines() == first
    # A run killed mid-write leaves a partial line: it is dropped, the row redone.
    results.write_text(first[0] + "\n" + first[1][:25])
    rows = run_bench([tiny_dataset], out, **kw)
    lines = results.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    assert sorted(r["seed"] for r in rows) == [0, 1]


def test_resume_redoes_rows_of_another_encoder_id_with_the_same_name(
    tiny_dataset: Path, tiny_text_encoder, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    from fewshot.encoders import TextEncoder

    out = tmp_path / "out"
    kw = dict(shots=[2], seeds=[0], methods=["centroid"], cache=EmbeddingCache(tmp_path / "c"),
              show_progress=False)
    run_bench([tiny_dataset], out, encoder=tiny_text_encoder, **kw)
    # Same model folder (so the same name), another setting: another id, nothing reused.
    other = TextEncoder(str(tiny_text_model_dir), device="cpu", normalize=False,
                        show_progress=False)
    assert other.name == tiny_text_encoder.name and other.id != tiny_text_encoder.id
    rows = run_bench([tiny_dataset], out, encoder=other, **kw)
    assert [r["encoder_id"] for r in rows] == [tiny_text_encoder.id, other.id]
    # A row that records no encoder id is redone too, not trusted.
    results = out / "results.jsonl"
    old = {k: v for k, v in rows[0].items() if k != "encoder_id"}
    results.write_text(json.dumps(old) + "\n")
    rows = run_bench([tiny_dataset], out, encoder=tiny_text_encoder, **kw)
    assert len(rows) == 2 and rows[1]["encoder_id"] == tiny_text_encoder.id
    # And the same encoder again finds its row: nothing appended.
    run_bench([tiny_dataset], out, encoder=tiny_text_encoder, **kw)
    assert len(results.read_text().splitlines()) == 2
    # Rows are keyed on the encoder's id as it is now: a row under any other id is redone.
    other_id = "text-" + "0" * 32
    results.write_text(json.dumps({**rows[1], "encoder_id": other_id}) + "\n")
    rows = run_bench([tiny_dataset], out, encoder=tiny_text_encoder, **kw)
    assert [r["encoder_id"] for r in rows] == [other_id, tiny_text_encoder.id]


def test_resume_redoes_rows_fitted_with_other_method_settings(
    tiny_dataset: Path, tiny_text_encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fewshot.bench.methods import HeadMethod, TunedMethod, settings_fingerprint
    from fewshot.tuning import ContrastiveTuner

    out, said = tmp_path / "out", []
    kw = dict(shots=[2], seeds=[0], methods=["logreg"], encoder=tiny_text_encoder,
              cache=False, show_progress=False, log=said.append)
    (row,) = run_bench([tiny_dataset], out, **kw)
    assert row["method_settings"]["C"] == 1.0 and row["method_settings"]["head"] == "logreg"
    assert row["method_config"] == settings_fingerprint(row["method_settings"])
    # Another regularisation under the same method name is another run, and it says so.
    monkeypatch.setitem(METHODS, "logreg", lambda: HeadMethod("logreg", "logreg", C=10.0))
    rows = run_bench([tiny_dataset], out, **kw)
    assert [r["method_settings"]["C"] for r in rows] == [1.0, 10.0]
    assert any("1 logreg run(s)" in m and "other (or unrecorded) method settings" in m
               for m in said)
    # The same settings again find their row.
    run_bench([tiny_dataset], out, **kw)
    assert len(load_results(out / "results.jsonl")) == 2
    # A row that records no settings is not trusted either.
    results = out / "results.jsonl"
    results.write_text(json.dumps({k: v for k, v in rows[1].items()
                                   if k not in ("method_config", "method_settings")}) + "\n")
    assert len(run_bench([tiny_dataset], out, **kw)) == 2
    # A tuner default changed in the code (not on the command line) changes the key too.
    before = TunedMethod("t", "logreg").settings()
    monkeypatch.setattr(ContrastiveTuner, "DEFAULTS", {**ContrastiveTuner.DEFAULTS,
                                                       "text": (20, 5e-5, 0.1, 4)})
    after = TunedMethod("t", "logreg").settings()
    assert settings_fingerprint(before) != settings_fingerprint(after)
    assert "seed" not in after["tuner"] and after["tuner"]["objective"] == "auto"
    # Settings are kept as JSON holds them: numpy scalars resume as the same run, and a
    # setting with no stable text form is refused before anything runs.
    from fewshot.bench.methods import method_settings

    assert method_settings(HeadMethod("k", "knn", k=np.int64(3))) == method_settings(
        HeadMethod("k", "knn", k=3))

    class Opaque:
        name, uses_embeddings = "opaque", True

        def settings(self):
            return {"thing": object()}

    with pytest.raises(UsageError, match="has no stable text form"):
        method_settings(Opaque())


class Boom:
    """A bench method that always fails."""

    name = "boom"
    uses_embeddings = True

    def run(self, task) -> MethodResult:
        raise RuntimeError("kaput")


def test_failing_method_is_recorded_and_others_run(
    tiny_dataset: Path, tiny_text_encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METHODS, "boom", Boom)
    rows = run_bench([tiny_dataset], tmp_path / "out", shots=[2], seeds=[0],
                     methods=["boom", "logreg"], encoder=tiny_text_encoder, cache=False,
                     show_progress=False)
    by = {r["method"]: r for r in rows}
    assert by["boom"]["error"] == "RuntimeError: kaput" and by["boom"]["accuracy"] is None
    assert by["logreg"]["error"] is None and by["logreg"]["accuracy"] > 0.5
    # Failed rows are retried on resume.
    from fewshot.bench.methods import HeadMethod

    monkeypatch.setitem(METHODS, "boom", lambda: HeadMethod("boom", "logreg"))
    rows = run_bench([tiny_dataset], tmp_path / "out", shots=[2], seeds=[0],
                     methods=["boom"], encoder=tiny_text_encoder, cache=False,
                     show_progress=False)
    assert len(rows) == 3 and rows[-1]["method"] == "boom" and rows[-1]["error"] is None


def test_registered_method_plugs_in(tiny_dataset: Path, tiny_text_encoder, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    class Majority:
        name = "majority"
        uses_embeddings = False

        def run(self, task) -> MethodResult:
            top = max(set(task.train_labels), key=task.train_labels.count)
            return MethodResult([top] * len(task.test_items), 0.0, 0.0)

    monkeypatch.setattr("fewshot.bench.methods.METHODS", dict(METHODS))
    register_method("majority", Majority)
    rows = run_bench([tiny_dataset], tmp_path / "out", shots=[2], seeds=[0],
                     methods=["majority"], encoder=tiny_text_encoder, cache=False,
                     show_progress=False)
    assert rows[0]["accuracy"] == pytest.approx(0.5)


def test_unknown_method_is_usage_error(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown method 'nope'"):
        run_bench([tiny_dataset], tmp_path / "o", methods=["nope"], show_progress=False)


def test_summary_and_plots(tiny_dataset: Path, tiny_text_encoder, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = run_bench([tiny_dataset], out, shots=[2, 4], seeds=[0, 1, 2],
                     methods=["logreg", "centroid"], encoder=tiny_text_encoder,
                     cache=False, show_progress=False)
    text = write_summary(rows, out / "summary.md")
    assert "## tinysent (accuracy" in text
    accs = [r["accuracy"] for r in rows if r["method"] == "logreg" and r["n_shot"] == 4]
    mean, std = np.mean(accs), np.std(accs, ddof=1)
    assert "| logreg | " in text and f"{mean:.3f} +- {std:.3f}" in text
    # The protocol asks for macro-F1 and the fit and predict times, separately.
    f1s = [r["macro_f1"] for r in rows if r["method"] == "logreg" and r["n_shot"] == 4]
    four = [r for r in rows if r["method"] == "logreg" and r["n_shot"] == 4]
    predict = np.mean([r["predict_seconds"] for r in four])
    fit = np.mean([r["fit_seconds"] for r in four])
    line = next(ln for ln in text.splitlines() if ln.startswith("| logreg | "))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[5:9] == [f"{mean:.3f} +- {std:.3f}",
                          f"{np.mean(f1s):.3f} +- {np.std(f1s, ddof=1):.3f}",
                          f"{fit:.2f}", f"{predict:.2f}"]
    assert "| 4-shot | macro-F1 | fit s | predict s |" in text
    assert "mixes" not in line
    # Seeds resumed under a changed encoder setting keep the name but not the id.
    changed = [{**r, "encoder_id": "text-other"} if r["seed"] == 0 else r for r in rows]
    line = next(ln for ln in write_summary(changed, out / "s2.md").splitlines()
                if ln.startswith("| logreg | "))
    assert line.count("(mixes 2 encoder ids)") == 2  # the 2-shot and the 4-shot cells
    # Rows that record no id are not another setting.
    no_id = [{k: v for k, v in r.items() if k != "encoder_id"} if r["seed"] == 0 else r
             for r in rows]
    assert "(mixes" not in write_summary(no_id, out / "s3.md")
    # The same for seeds run under other method settings (a changed head or tuner default).
    assert all(r["method_config"] for r in rows)
    other = [{**r, "method_config": "0" * 12} if r["seed"] == 0 else r for r in rows]
    line = next(ln for ln in write_summary(other, out / "s4.md").splitlines()
                if ln.startswith("| logreg | "))
    assert line.count("(mixes 2 method settings)") == 2
    assert all(r["encode_seconds"] >= 0 for r in rows)
    paths = plot(rows, out)
    assert [p.name for p in paths] == ["accuracy_vs_shots.png", "fit_time_vs_accuracy.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_cli_bench(tiny_dataset: Path, tiny_text_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "bench", str(tiny_dataset), "--shots", "2", "--seeds", "0,1", "--methods", "logreg",
        "--encoder", str(tiny_text_model_dir), "--output", str(out),
        "--cache-dir", str(tmp_path / "cache"),
    ])
    assert result.exit_code == 0, result.output
    rows = load_results(out / "results.jsonl")
    assert [(r["seed"], r["method"]) for r in rows] == [(0, "logreg"), (1, "logreg")]
    assert (out / "summary.md").is_file() and (out / "accuracy_vs_shots.png").is_file()
    assert "tinysent" in result.stdout


def test_cli_bench_missing_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "no dataset folder at" in result.output


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--shots", "0", "--shots must be at least 1 per class, got 0"),
    ("--seeds", "-1", "--seeds must be 0 or more, got -1"),
])
def test_cli_bench_bad_shots_or_seeds(
    tiny_dataset: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = CliRunner().invoke(app, ["bench", str(tiny_dataset), option, value,
                                      "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "o").exists()


def test_embed_through_cache_matches_runner_embeddings(
    tiny_dataset: Path, tiny_text_encoder, tmp_path: Path
) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    run_bench([tiny_dataset], tmp_path / "out", shots=[2], seeds=[0], methods=["logreg"],
              encoder=tiny_text_encoder, cache=cache, show_progress=False)
    test = load_dataset(tiny_dataset, "test")
    # The runner embedded the whole test set through the cache; a lookup finds all of it.
    keys = [tiny_text_encoder.item_key(t) for t in test.items]
    _, found = cache.lookup(tiny_text_encoder.id, keys, tiny_text_encoder.dim)
    assert found.all()
    np.testing.assert_allclose(embed(tiny_text_encoder, test.items, cache),
                               tiny_text_encoder.encode(test.items), atol=1e-6)


def test_cli_bench_exits_nonzero_when_a_run_fails(
    tiny_dataset: Path, tiny_text_model_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(METHODS, "boom", Boom)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "bench", str(tiny_dataset), "--shots", "2", "--seeds", "0", "--methods", "boom,logreg",
        "--encoder", str(tiny_text_model_dir), "--output", str(out), "--no-cache", "--no-plots",
    ])
    assert result.exit_code == 1
    assert "1 run(s) failed; see the error field in" in result.stderr
    assert [r["error"] for r in load_results(out / "results.jsonl")] == [
        "RuntimeError: kaput", None]
