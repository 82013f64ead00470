"""The fewshot CLI: train -> predict -> evaluate, embed, and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fewshot.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never write to the real user cache, whatever a test forgets to pass.
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.delenv("FEWSHOT_MODELS", raising=False)


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object):
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def assert_error(result, code: int, *fragments: str) -> str:
    """Exit ``code`` and exactly one stderr line, 'error: ...', naming the problem."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def enc(tiny_text_model_dir: Path) -> list[str]:
    return ["--encoder", str(tiny_text_model_dir)]


@pytest.fixture
def model(tmp_path: Path, sentiment_jsonl: Path, enc: list[str], cache_dir: Path) -> Path:
    out = tmp_path / "model"
    ok("train", sentiment_jsonl, "-o", out, *enc, "--head", "logreg", "--cache-dir", cache_dir,
       "--device", "cpu")
    return out


@pytest.fixture
def unlabelled(tmp_path: Path) -> Path:
    path = tmp_path / "new.jsonl"
    rows = [{"id": "a", "text": "a great film"}, {"id": "b", "text": "awful boring plot"},
            {"id": "c", "text": "très bien ☺"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


# -- help and imports -------------------------------------------------------------------------
def test_help_lists_commands() -> None:
    result = ok("--help")
    for command in ("train", "predict", "evaluate", "embed"):
        assert command in result.stdout
    assert "--output" in ok("train", "--help").stdout


def test_version() -> None:
    from fewshot import __version__

    assert ok("--version").stdout.strip() == f"fewshot {__version__}"


def test_cli_import_and_help_do_not_load_torch() -> None:
    code = (
        "import fewshot.cli, sys; print('torch' in sys.modules)\n"
        "from typer.testing import CliRunner\n"
        "for args in (['--help'], ['train', '--help'], ['predict', '--help']):\n"
        "    assert CliRunner().invoke(fewshot.cli.app, args).exit_code == 0, args\n"
        "heavy = ('torch', 'faiss', 'sentence_transformers', 'timm', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False", "[]"]


def _console_script() -> str:
    script = Path(sys.executable).with_name("fewshot")
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    return str(script)


def test_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "FEWSHOT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([_console_script(), "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout
    # A real process: the error is one stderr line, no traceback, no library noise.
    out = subprocess.run(
        [_console_script(), "train", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "m")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"error: no such file or folder: {tmp_path / 'missing.jsonl'}; check the path"
    ]
    assert out.stdout == ""


# -- train / predict / evaluate ---------------------------------------------------------------
def test_train_writes_model_folder(model: Path, tiny_text_model_dir: Path, cache_dir: Path):
    assert sorted(p.name for p in model.iterdir()) == [
        "calibration.safetensors", "fewshot.json", "head.safetensors"  # calibrated by default
    ]
    manifest = json.loads((model / "fewshot.json").read_text())
    assert manifest["classes"] == ["neg", "pos"]
    assert manifest["n_train"] == 16
    assert manifest["head"]["type"] == "logreg"
    assert manifest["encoder"]["name"] == str(tiny_text_model_dir)
    assert list(cache_dir.rglob("shard-*.safetensors")), "--cache-dir was not used"


def test_train_reports_on_stderr(tmp_path: Path, sentiment_jsonl: Path, enc, cache_dir) -> None:
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--cache-dir", cache_dir,
                "--head", "knn", "--head-param", "k=3")
    assert "trained knn on 16 text examples, 2 classes" in result.stderr
    assert result.stdout == ""
    head = json.loads((tmp_path / "m" / "fewshot.json").read_text())["head"]
    assert head["type"] == "knn" and head["params"]["k"] == 3


def test_predict_jsonl(model: Path, unlabelled: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "pred.jsonl"
    result = ok("predict", model, unlabelled, "-o", out, "--cache-dir", cache_dir)
    assert f"wrote 3 predictions to {out}" in result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert [r["text"] for r in rows] == ["a great film", "awful boring plot", "très bien ☺"]
    assert [r["label"] for r in rows[:2]] == ["pos", "neg"]
    for r in rows:
        assert set(r) == {"id", "text", "label", "score", "probabilities"}
        assert set(r["probabilities"]) == {"neg", "pos"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["score"] == max(r["probabilities"].values())
        assert r["probabilities"][r["label"]] == r["score"]
        assert 0.5 <= r["score"] <= 1.0


def test_predict_csv_matches_jsonl(model: Path, unlabelled: Path, tmp_path: Path, cache_dir):
    ok("predict", model, unlabelled, "-o", tmp_path / "p.jsonl", "--cache-dir", cache_dir)
    ok("predict", model, unlabelled, "-o", tmp_path / "p.csv", "--no-cache")
    with open(tmp_path / "p.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "text", "label", "score", "p_neg", "p_pos"]
    jsonl = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text("utf-8").splitlines()]
    for row, ref in zip(rows, jsonl, strict=True):
        assert (row["id"], row["text"], row["label"]) == (ref["id"], ref["text"], ref["label"])
        probs = [float(row["p_neg"]), float(row["p_pos"])]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert float(row["score"]) == pytest.approx(max(probs), abs=1e-6)
        assert probs == pytest.approx([ref["probabilities"]["neg"], ref["probabilities"]["pos"]],
                                      abs=1e-5)


def test_predict_parquet_matches_jsonl(model: Path, unlabelled: Path, tmp_path: Path,
                                       cache_dir: Path) -> None:
    import pyarrow.parquet as pq

    ok("predict", model, unlabelled, "-o", tmp_path / "p.jsonl", "--cache-dir", cache_dir)
    result = ok("predict", model, unlabelled, "-o", tmp_path / "p.parquet", "--cache-dir",
                cache_dir)
    assert f"wrote 3 predictions to {tmp_path / 'p.parquet'}" in result.stderr
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["id", "text", "label", "score", "probabilities"]
    jsonl = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text("utf-8").splitlines()]
    assert table.to_pylist() == jsonl
    assert [r["text"] for r in jsonl] == ["a great film", "awful boring plot", "très bien ☺"]


def test_predict_plain_text_file(model: Path, tmp_path: Path, cache_dir: Path) -> None:
    txt = tmp_path / "lines.txt"
    txt.write_text("a great film\n\nawful boring plot\n")
    ok("predict", model, txt, "-o", tmp_path / "p.jsonl", "--cache-dir", cache_dir)
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows] == [("1", "pos"), ("3", "neg")]


def test_evaluate_table_and_json(model: Path, sentiment_jsonl: Path, cache_dir: Path) -> None:
    result = ok("evaluate", model, sentiment_jsonl, "--cache-dir", cache_dir)
    assert "accuracy=1.0000" in result.stdout and "n=16" in result.stdout
    assert "confusion matrix" in result.stdout
    assert "neg" in result.stdout and "pos" in result.stdout

    result = ok("evaluate", model, sentiment_jsonl, "--json", "--cache-dir", cache_dir)
    report = json.loads(result.stdout)
    assert report["n"] == 16
    for key in ("accuracy", "macro_f1"):
        assert 0.0 <= report[key] <= 1.0
    assert report["accuracy"] == 1.0 and report["macro_f1"] == 1.0
    assert report["confusion_matrix"] == {"labels": ["neg", "pos"], "matrix": [[8, 0], [0, 8]]}
    assert set(report["per_class"]) == {"neg", "pos"}


def test_evaluate_unknown_labels(model: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "eval.jsonl"
    rows = [("a good movie", "pos"), ("awful film", "neg"), ("the plot", "meh")]
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    assert_error(invoke("evaluate", model, data, "--cache-dir", cache_dir), 1,
                 "labels the model was not trained on: meh", "--allow-unknown-labels")
    result = ok("evaluate", model, data, "--json", "--allow-unknown-labels",
                "--cache-dir", cache_dir)
    report = json.loads(result.stdout)
    assert report["n"] == 3
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["per_class"]["meh"]["support"] == 1
    assert report["per_class"]["meh"]["recall"] == 0.0
    assert report["calibration_rows"] == 2
    # The text report says ECE and Brier leave the unknown row out, on one line.
    text = ok("evaluate", model, data, "--allow-unknown-labels", "--cache-dir", cache_dir)
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("ECE="))
    assert line.endswith("over the 2 rows whose label the model knows (1 left out)")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "data.jsonl"],
         "error: Missing option '--output' / '-o'; see 'fewshot train --help'"),
        (["train", "data.jsonl", "-o", "m", "--bogus"],
         "error: No such option: --bogus; see 'fewshot train --help'"),
        (["nosuch"], "error: No such command 'nosuch'; see 'fewshot --help'"),
        (["train", "data.jsonl", "-o", "m", "--shots", "-1"],
         "error: Invalid value for '--shots': "),
        # checked before anything runs, so a cache hit cannot hide the typo
        (["predict", "model", "data.txt", "-o", "p.jsonl", "--device", "foo"],
         "error: Invalid value for '--device': unknown device 'foo'; use auto, cpu, cuda, "
         "cuda:N or mps; see 'fewshot predict --help'"),
    ],
)
def test_script_usage_errors_are_one_line(args, line, monkeypatch, capsys) -> None:
    from fewshot.cli import main

    monkeypatch.setattr("sys.argv", ["fewshot", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(line), err


def test_script_keeps_help_version_and_our_own_errors(monkeypatch, capsys, tmp_path) -> None:
    from fewshot.cli import main

    for args, code in ((["--version"], 0), (["train", "--help"], 0), (["train"], 2),
                       (["train", str(tmp_path / "nope"), "-o", str(tmp_path / "m")], 1)):
        monkeypatch.setattr("sys.argv", ["fewshot", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == code, args
    out = capsys.readouterr()
    from fewshot import __version__

    assert out.out.startswith(f"fewshot {__version__}\n")
    assert "Usage: fewshot train" in out.out  # --help, and a bare command shows its help
    assert out.err.strip().splitlines()[-1] == (
        f"error: no such file or folder: {tmp_path / 'nope'}; check the path")


def test_train_warns_about_classes_with_one_example(tmp_path: Path, sentiment_jsonl: Path,
                                                     enc, cache_dir) -> None:
    data = tmp_path / "typo.jsonl"
    data.write_text(sentiment_jsonl.read_text() + json.dumps({"text": "good", "label": "pos "})
                    + "\n")
    result = ok("train", data, "-o", tmp_path / "m", *enc, "--cache-dir", cache_dir)
    assert result.stderr.splitlines()[-1] == (
        "warning: 1 class has a single example (pos ): never held out, so calibration and "
        "review thresholds do not cover it; add examples, or check for a typo in the label"
    )
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m2", *enc, "--cache-dir", cache_dir)
    assert "single example" not in result.stderr
    # One per class by choice (--shots 1) is not a typo to warn about.
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m3", *enc, "--cache-dir", cache_dir,
                "--shots", "1")
    assert "single example" not in result.stderr


def test_evaluate_with_many_classes_lists_confusions(tmp_path: Path, enc, cache_dir) -> None:
    from conftest import TINY_VOCAB

    words = [w for w in TINY_VOCAB if len(w) > 2][:26]
    rows = [(f"{words[2 * c]} {words[2 * c + 1]}", f"class_with_a_long_name_{c:02d}")
            for c in range(13)] * 2
    rows.append((f"{words[1]} {words[0]}", "class_with_a_long_name_05"))  # one confusion, maybe
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    ok("train", data, "-o", tmp_path / "m", *enc, "--cache-dir", cache_dir)
    out = ok("evaluate", tmp_path / "m", data, "--cache-dir", cache_dir).stdout
    assert ("confusion matrix: 13 classes, too many to print (it is in --json); most "
            "frequent confusions") in out
    assert "┃ true" not in out  # no 13-column matrix
    assert "class_with_a_long_name_12 " in out  # labels are not cut to fit 80 columns
    report = json.loads(ok("evaluate", tmp_path / "m", data, "--json",
                           "--cache-dir", cache_dir).stdout)
    listed = [ln.split() for ln in out.splitlines() if " -> " in ln]
    expected = sorted(
        ((n, t, p) for t, row in zip(report["confusion_matrix"]["labels"],
                                     report["confusion_matrix"]["matrix"], strict=True)
         for p, n in zip(report["confusion_matrix"]["labels"], row, strict=True)
         if t != p and n), key=lambda x: (-x[0], x[1], x[2]))[:10]
    assert expected and [(int(n), t, p) for n, t, _, p in listed] == expected


def test_shots_trains_exactly_n_per_class(tmp_path: Path, sentiment_jsonl: Path, enc,
                                          tiny_text_encoder) -> None:
    from conftest import SENTIMENT
    from safetensors.numpy import load_file

    from fewshot.data import few_shot_indices

    out = tmp_path / "m"
    ok("train", sentiment_jsonl, "-o", out, *enc, "--no-cache", "--head", "knn",
       "--shots", 2, "--seed", 0)
    manifest = json.loads((out / "fewshot.json").read_text())
    assert manifest["n_train"] == 4
    arrays = load_file(str(out / "head.safetensors"))
    assert np.bincount(arrays["support_labels"]).tolist() == [2, 2]
    # The support set is exactly the protocol's sample.
    labels = [y for _, y in SENTIMENT]
    chosen = [SENTIMENT[i][0] for i in few_shot_indices(labels, 2, 0)]
    np.testing.assert_allclose(arrays["support"], tiny_text_encoder.encode(chosen), atol=1e-5)


def test_shots_above_a_class_size_warns(tmp_path: Path, sentiment_jsonl: Path, enc) -> None:
    # The protocol takes all 8 of each class; a silent 16 instead of 20 would mislead.
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--no-cache",
                "--shots", 10)
    assert "warning: --shots 10 is more than 2 of 2 classes have (neg: 8, pos: 8)" in (
        result.stderr)
    assert json.loads((tmp_path / "m" / "fewshot.json").read_text())["n_train"] == 16
    assert "warning" not in ok("train", sentiment_jsonl, "-o", tmp_path / "m2", *enc,
                               "--no-cache", "--shots", 8).stderr


def test_train_on_dataset_folder_split(tmp_path: Path, sentiment_jsonl: Path, enc) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text(sentiment_jsonl.read_text())
    (folder / "test.jsonl").write_text(sentiment_jsonl.read_text())
    ok("train", folder, "-o", tmp_path / "m", *enc, "--no-cache")
    report = json.loads(ok("evaluate", tmp_path / "m", folder, "--json", "--no-cache").stdout)
    assert report["n"] == 16 and report["accuracy"] == 1.0


# -- embed -------------------------------------------------------------------------------------
def test_embed_npy(tmp_path: Path, sentiment_jsonl: Path, enc, tiny_text_encoder, cache_dir):
    out = tmp_path / "emb.npy"
    ok("embed", sentiment_jsonl, "-o", out, *enc, "--cache-dir", cache_dir)
    vectors = np.load(out, allow_pickle=False)
    assert vectors.shape == (16, 32) and vectors.dtype == np.float32
    from conftest import SENTIMENT

    np.testing.assert_allclose(vectors, tiny_text_encoder.encode([t for t, _ in SENTIMENT]),
                               atol=1e-5)
    sidecar = json.loads((tmp_path / "emb.ids.json").read_text())
    assert sidecar["ids"] == [str(i) for i in range(1, 17)]  # 1-based line numbers
    assert sidecar["labels"] == [y for _, y in SENTIMENT]
    assert (sidecar["n"], sidecar["dim"]) == (16, 32)
    assert sidecar["encoder_id"] == tiny_text_encoder.id


def test_embed_safetensors(tmp_path: Path, unlabelled: Path, enc, tiny_text_encoder) -> None:
    from safetensors import safe_open

    out = tmp_path / "emb.safetensors"
    ok("embed", unlabelled, "-o", out, *enc, "--no-cache")
    with safe_open(str(out), framework="numpy") as f:
        vectors = f.get_tensor("embeddings")
        meta = f.metadata()
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert meta["encoder_id"] == tiny_text_encoder.id and meta["n"] == "3"
    sidecar = json.loads((tmp_path / "emb.ids.json").read_text())
    assert sidecar["ids"] == ["a", "b", "c"] and sidecar["labels"] is None


def test_embed_refuses_existing_output(tmp_path: Path, unlabelled: Path, enc) -> None:
    out = tmp_path / "emb.npy"
    ok("embed", unlabelled, "-o", out, *enc, "--no-cache")
    assert_error(invoke("embed", unlabelled, "-o", out, *enc, "--no-cache"), 2,
                 "already exists", "--force")
    ok("embed", unlabelled, "-o", out, *enc, "--no-cache", "--force")
    # The same name in the other format would overwrite emb.ids.json: the message says why.
    other = tmp_path / "emb.safetensors"
    line = assert_error(invoke("embed", unlabelled, "-o", other, *enc, "--no-cache"), 2)
    assert line == (f"error: {tmp_path / 'emb.ids.json'} (the ids file written beside "
                    "emb.safetensors) already exists, perhaps from an embedding in another "
                    "format; choose another output name or pass --force")
    assert not other.exists()


def test_embed_bad_suffix(tmp_path: Path, unlabelled: Path) -> None:
    assert_error(invoke("embed", unlabelled, "-o", tmp_path / "emb.txt"), 2,
                 "--output must end in .npy or .safetensors")


# -- errors ------------------------------------------------------------------------------------
def test_missing_data_file(tmp_path: Path, enc) -> None:
    missing = tmp_path / "nope.jsonl"
    assert_error(invoke("train", missing, "-o", tmp_path / "m", *enc), 1,
                 "no such file or folder", str(missing))
    assert not (tmp_path / "m").exists()


def test_malformed_jsonl(tmp_path: Path, enc) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": \n')
    assert_error(invoke("train", data, "-o", tmp_path / "m", *enc), 1,
                 f"{data}:2: malformed JSON")


def test_missing_label_field(tmp_path: Path, enc) -> None:
    data = tmp_path / "nolabel.jsonl"
    data.write_text('{"text": "good", "label": "pos"}\n{"text": "bad"}\n')
    assert_error(invoke("train", data, "-o", tmp_path / "m", *enc), 1,
                 f"{data}:2: no 'label' field", "--label-field")


def test_csv_custom_fields(tmp_path: Path, enc) -> None:
    data = tmp_path / "d.csv"
    data.write_text("sentence,y\ngood great,pos\nbad awful,neg\nbest nice,pos\nworst sad,neg\n")
    assert_error(invoke("train", data, "-o", tmp_path / "m", *enc), 1, "no 'text' field")
    ok("train", data, "-o", tmp_path / "m", *enc, "--no-cache", "--text-field", "sentence",
       "--label-field", "y")
    assert json.loads((tmp_path / "m" / "fewshot.json").read_text())["classes"] == ["neg", "pos"]


def test_train_output_exists(model: Path, sentiment_jsonl: Path, enc) -> None:
    before = (model / "fewshot.json").read_text()
    assert_error(invoke("train", sentiment_jsonl, "-o", model, *enc, "--no-cache"), 2,
                 str(model), "already exists", "--force")
    assert (model / "fewshot.json").read_text() == before
    ok("train", sentiment_jsonl, "-o", model, *enc, "--no-cache", "--head", "centroid",
       "--force")
    assert json.loads((model / "fewshot.json").read_text())["head"]["type"] == "centroid"
    assert sorted(p.name for p in model.parent.iterdir() if p.name.startswith(".")) == []
    # --force never replaces a folder holding anything but a model's own files: a
    # project folder given as the output by mistake stays as it was.
    project = model.parent / "project"
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("mine")
    assert_error(invoke("train", sentiment_jsonl, "-o", project, *enc, "--no-cache", "--force"),
                 2, "holds files this command did not write (README.md, src)")
    assert (project / "README.md").read_text() == "mine" and (project / "src").is_dir()
    from fewshot import FewShotClassifier
    from fewshot.errors import UsageError

    with pytest.raises(UsageError, match="holds files this command did not write"):
        FewShotClassifier.load(model).save(project, overwrite=True)
    assert (project / "README.md").read_text() == "mine"


def test_predict_output_exists(model: Path, unlabelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    out.write_text("keep me\n")
    assert_error(invoke("predict", model, unlabelled, "-o", out), 2, "already exists")
    assert out.read_text() == "keep me\n"
    ok("predict", model, unlabelled, "-o", out, "--force", "--no-cache")
    assert len(out.read_text().splitlines()) == 3


def test_predict_bad_output_suffix(model: Path, unlabelled: Path, tmp_path: Path) -> None:
    assert_error(invoke("predict", model, unlabelled, "-o", tmp_path / "p.txt"), 2,
                 "--output must end in .jsonl, .csv or .parquet, got 'p.txt'")


def test_unknown_head(tmp_path: Path, sentiment_jsonl: Path, enc) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--head", "svm"),
                 2, "unknown head 'svm'", "centroid, knn, logreg")


def test_bad_head_param(tmp_path: Path, sentiment_jsonl: Path, enc) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", *enc,
                        "--head-param", "k"), 2, "--head-param takes KEY=VALUE")


def test_unknown_head_param_key(tmp_path: Path, sentiment_jsonl: Path, enc) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--head", "knn",
                        "--head-param", "foo=1"), 2, "head 'knn' has no setting foo",
                 "index, k, weights")
    assert not (tmp_path / "m").exists()


def test_bad_option_value_is_usage_error(tmp_path: Path, sentiment_jsonl: Path) -> None:
    result = invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--shots", 0)
    assert result.exit_code == 2
    assert "--shots" in result.stderr


def test_bad_device(tmp_path: Path, sentiment_jsonl: Path, enc, monkeypatch, capsys) -> None:
    from fewshot.cli import main

    args = ["train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--no-cache", "--device"]
    monkeypatch.setattr("sys.argv", ["fewshot", *map(str, args), "gpu"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: Invalid value for '--device': unknown device 'gpu'; use auto, cpu, cuda, "
        "cuda:N or mps; see 'fewshot train --help'")
    assert not (tmp_path / "m").exists()
    # A well-formed device that is not here is refused as the option is read.
    monkeypatch.setattr("sys.argv", ["fewshot", *map(str, args), "cuda:99"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "device 'cuda:99' is not available" in capsys.readouterr().err


def test_single_class(tmp_path: Path, enc) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text('{"text": "good", "label": "pos"}\n{"text": "great", "label": "pos"}\n')
    assert_error(invoke("train", data, "-o", tmp_path / "m", *enc), 1,
                 f"error: {data} has a single class (pos); a classifier needs at least two")


def test_predict_folder_not_a_model(tmp_path: Path, unlabelled: Path) -> None:
    (tmp_path / "notmodel").mkdir()
    assert_error(invoke("predict", tmp_path / "notmodel", unlabelled, "-o", tmp_path / "p.jsonl"),
                 1, "not a fewshot model folder", "fewshot.json")
    assert_error(invoke("predict", tmp_path / "absent", unlabelled, "-o", tmp_path / "p.jsonl"),
                 1, "no model folder at")
    assert not (tmp_path / "p.jsonl").exists()


def test_model_from_newer_format(model: Path, unlabelled: Path, tmp_path: Path) -> None:
    manifest = json.loads((model / "fewshot.json").read_text())
    manifest["format_version"] = 99
    (model / "fewshot.json").write_text(json.dumps(manifest))
    assert_error(invoke("predict", model, unlabelled, "-o", tmp_path / "p.jsonl"), 1,
                 "format 99", "upgrade fewshot")


def test_model_with_corrupt_head(model: Path, sentiment_jsonl: Path) -> None:
    (model / "head.safetensors").write_bytes(b"\x00" * 7)
    assert_error(invoke("evaluate", model, sentiment_jsonl), 1, "is corrupt",
                 "re-run fewshot train")


def test_model_encoder_changed(model: Path, sentiment_jsonl: Path, tiny_text_model_dir: Path,
                               copy_tree) -> None:
    from safetensors.numpy import load_file, save_file

    changed = copy_tree(tiny_text_model_dir, "changed")
    tensors = load_file(str(changed / "model.safetensors"))
    tensors = {k: v * 1.5 for k, v in tensors.items()}
    save_file(tensors, str(changed / "model.safetensors"))
    assert_error(invoke("evaluate", model, sentiment_jsonl, "--encoder", changed), 1,
                 "pass the original encoder with --encoder")


def test_unresolvable_encoder(tmp_path: Path, sentiment_jsonl: Path) -> None:
    line = assert_error(
        invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--encoder", tmp_path / "nomodel"),
        1, "cannot resolve text encoder", "tried",
    )
    assert "FEWSHOT_MODELS" in line
    # A bare name falls through to the hub, which is offline in tests.
    assert_error(
        invoke("train", sentiment_jsonl, "-o", tmp_path / "m", "--encoder", "no-such-model-xyz"),
        1, "tried", "hub sentence-transformers/no-such-model-xyz",
    )
    assert not (tmp_path / "m").exists()


def test_predict_wrong_modality(model: Path, image_folder: Path, tmp_path: Path) -> None:
    assert_error(invoke("predict", model, image_folder, "-o", tmp_path / "p.jsonl"), 1,
                 "holds image but the model classifies text")


def test_evaluate_wrong_modality(model: Path, image_folder: Path) -> None:
    assert_error(invoke("evaluate", model, image_folder, "--split", "train"), 1,
                 f"{image_folder} holds image but the model classifies text; pass matching data")


# -- images (a tiny local-dir timm model) --------------------------------------------------------
def test_image_train_predict_evaluate(tmp_path: Path, image_folder: Path, tiny_image_dir: Path,
                                      cache_dir: Path) -> None:
    enc = ["--encoder", f"local-dir:{tiny_image_dir}", "--cache-dir", cache_dir,
           "--device", "cpu"]
    ok("train", image_folder, "-o", tmp_path / "m", *enc, "--head", "centroid")
    manifest = json.loads((tmp_path / "m" / "fewshot.json").read_text())
    assert manifest["classes"] == ["blue", "red"] and manifest["n_train"] == 12
    assert manifest["encoder"]["modality"] == "image"
    ok("predict", tmp_path / "m", image_folder, "-o", tmp_path / "p.jsonl", *enc)
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == sorted(f"{c}/{c}{i}.png" for c in ("blue", "red")
                                             for i in range(6))
    assert all(set(r) == {"id", "path", "label", "score", "probabilities"} for r in rows)
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for r in rows)
    report = json.loads(ok("evaluate", tmp_path / "m", image_folder, "--json", *enc).stdout)
    assert report["n"] == 12 and 0.0 <= report["accuracy"] <= 1.0


def test_corrupt_image(tmp_path: Path, image_folder: Path, tiny_image_dir: Path) -> None:
    bad = image_folder / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    enc = ["--encoder", f"local-dir:{tiny_image_dir}", "--no-cache", "--device", "cpu"]
    assert_error(invoke("train", image_folder, "-o", tmp_path / "m", *enc), 1,
                 "cannot read image", "broken.png", "--skip-bad-images")
    assert not (tmp_path / "m").exists()
    result = ok("train", image_folder, "-o", tmp_path / "m", *enc, "--skip-bad-images")
    assert "warning: skipping unreadable image" in result.stderr and "broken.png" in result.stderr
    assert json.loads((tmp_path / "m" / "fewshot.json").read_text())["n_train"] == 12
    # Skipping shifts the rows the protocol numbers, so --shots refuses rather than
    # silently sampling another split.
    refused = invoke("train", image_folder, "-o", tmp_path / "m2", *enc,
                     "--skip-bad-images", "--shots", "2")
    assert refused.exit_code == 1, refused.output
    last = refused.stderr.strip().splitlines()[-1]  # after the skip warning
    assert last.startswith("error: --shots samples rows by their position") and "broken.png" in last
    assert not (tmp_path / "m2").exists()
    # select and suggest read image pools the same way.
    out = tmp_path / "s.jsonl"
    assert_error(invoke("suggest", image_folder, "--budget", "2", "-o", out, *enc), 1,
                 "cannot read image", "--skip-bad-images")
    ok("suggest", image_folder, "--budget", "2", "-o", out, *enc, "--skip-bad-images")
    ok("select", image_folder, image_folder, "--k", "2", "-o", tmp_path / "d.jsonl", *enc,
       "--skip-bad-images")
    rows = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all("broken" not in r["id"] for r in rows)


def test_image_folder_without_classes(tmp_path: Path, tiny_image_dir: Path) -> None:
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    assert_error(invoke("train", flat, "-o", tmp_path / "m",
                        "--encoder", f"local-dir:{tiny_image_dir}"),
                 1, "has no class folders")


def test_missing_local_dir_image_encoder(tmp_path: Path, image_folder: Path) -> None:
    assert_error(invoke("train", image_folder, "-o", tmp_path / "m",
                        "--encoder", f"local-dir:{tmp_path / 'nothing'}"),
                 1, "cannot resolve image encoder", "tried")


@pytest.mark.parametrize(("head", "param", "message"), [
    ("knn", "k=abc", "head 'knn' setting k takes a whole number, got 'abc'; e.g. k=5"),
    ("knn", "k=2.5", "setting k takes a whole number, got 2.5"),
    ("centroid", "center=1", "setting center takes true or false, got 1"),
    ("logreg", "C=strong", "setting C takes a number, got 'strong'"),
])
def test_head_param_of_the_wrong_kind(tmp_path: Path, sentiment_jsonl: Path, enc, head: str,
                                      param: str, message: str) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--head", head,
                        "--head-param", param), 2, message)


def test_tune_options_without_tune_are_refused(tmp_path: Path, sentiment_jsonl: Path,
                                               enc) -> None:
    for extra in (["--tune-param", "epochs=3"], ["--tune-objective", "supcon"]):
        assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, *extra), 2,
                     "--tune-param and --tune-objective only apply when tuning; add --tune")
    assert not (tmp_path / "m").exists()


def test_tune_param_reaches_the_tuner(tmp_path: Path, sentiment_jsonl: Path, enc,
                                      cache_dir: Path) -> None:
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--cache-dir", cache_dir,
                "--tune", "--tune-param", "epochs=2", "--tune-param", "learning_rate=0.02",
                "--tune-param", "max_steps=null", "--seed", "3")
    assert "tuning: cosine, 2 steps (2 epochs)" in result.stderr
    tuning = json.loads((tmp_path / "m" / "fewshot.json").read_text())["tuning"]
    requested = tuning["requested"]
    assert (requested["epochs"], requested["learning_rate"], requested["max_steps"],
            requested["seed"], requested["objective"]) == (2, 0.02, None, 3, "auto")


@pytest.mark.parametrize(("param", "message"), [
    ("epoch=2", "unknown tuning setting(s) epoch; choose from augment, batch_size,"),
    ("epochs", "--tune-param takes KEY=VALUE, got 'epochs'"),
    ("epochs=0", "tuning epochs must be at least 1, got 0"),
    ("epochs=abc", "tuning setting epochs takes a whole number, got 'abc'"),
    ("learning_rate=fast", "tuning setting learning_rate takes a number, got 'fast'"),
    ("augment=maybe", "tuning setting augment takes true or false, got 'maybe'"),
    ("epochs=true", "tuning setting epochs takes a whole number, got True"),
])
def test_bad_tune_param_is_one_usage_line(tmp_path: Path, sentiment_jsonl: Path, enc,
                                          param: str, message: str) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--no-cache",
                        "--tune", "--tune-param", param), 2, message)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", ["select", "suggest"])
def test_negative_seed_is_a_usage_error(tmp_path: Path, sentiment_jsonl: Path, enc,
                                        command: str) -> None:
    args = ([sentiment_jsonl, sentiment_jsonl, "--strategy", "random"] if command == "select"
            else [sentiment_jsonl, "--budget", "3"])
    result = invoke(command, *args, "-o", tmp_path / "o.jsonl", *enc, "--seed", "-1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--seed" in result.output and "greater than or equal to 0" in result.output


# -- an output is never one of the command's inputs --------------------------------------------
def test_predict_refuses_to_overwrite_its_input(model: Path, unlabelled: Path) -> None:
    before = unlabelled.read_bytes()
    assert_error(invoke("predict", model, unlabelled, "-o", unlabelled, "--force"), 2,
                 f"error: the output {unlabelled} is also the input DATA ({unlabelled}); "
                 "writing it would replace the input: choose another output")
    assert unlabelled.read_bytes() == before
    # The same file by another spelling is the same file.
    other = unlabelled.parent / "." / unlabelled.name
    assert_error(invoke("predict", model, unlabelled, "-o", other, "--force"), 2,
                 "is also the input DATA")


def test_audit_refuses_to_overwrite_the_test_file(tmp_path: Path, sentiment_jsonl: Path,
                                                  unlabelled: Path) -> None:
    before = unlabelled.read_bytes()
    assert_error(invoke("audit", sentiment_jsonl, "--output", unlabelled, "--test", unlabelled,
                        "--force"), 2,
                 f"error: the output {unlabelled} is also the input --test ({unlabelled})")
    assert unlabelled.read_bytes() == before
    # A split file of a dataset folder is an input of the folder.
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(sentiment_jsonl.read_bytes())
    (folder / "test.jsonl").write_bytes(before)
    assert_error(invoke("audit", folder, "-o", folder / "test.jsonl", "--force"), 2,
                 f"error: the output {folder / 'test.jsonl'} is the test split of the input "
                 f"DATA ({folder})")
    assert (folder / "test.jsonl").read_bytes() == before


def test_folder_outputs_never_replace_an_input(tmp_path: Path, model: Path, sentiment_jsonl: Path,
                                               unlabelled: Path, enc) -> None:
    # The teacher folder holds nothing but model files, so --force alone would replace it.
    assert_error(invoke("distill", model, unlabelled, "--student", enc[1], "-o", model,
                        "--force"), 2, f"the output {model} is also the input TEACHER_DIR")
    assert (model / "fewshot.json").is_file()
    assert_error(invoke("train", sentiment_jsonl, "-o", sentiment_jsonl.parent, "--force", *enc),
                 2, f"the output folder {sentiment_jsonl.parent} holds the input DATA")
    assert_error(invoke("review", model, unlabelled, "-o", model, "--force"), 2,
                 "is also the input MODEL_DIR")
    desc = tmp_path / "labels.json"
    desc.write_text('{"pos": "good", "neg": "bad"}')
    assert_error(invoke("train", sentiment_jsonl, "-o", desc, "--force", "--label-descriptions",
                        desc, *enc), 2, "is also the input --label-descriptions")
    assert_error(invoke("suggest", unlabelled, "--budget", 1, "-o", unlabelled, "--force", *enc),
                 2, "is also the input POOL")
    assert_error(invoke("select", sentiment_jsonl, unlabelled, "-o", unlabelled, "--force", *enc),
                 2, "is also the input QUERIES")
    # Outputs beside the inputs are fine.
    ok("predict", model, unlabelled, "-o", unlabelled.parent / "predictions.jsonl")


def test_embed_sidecar_is_never_an_input(tmp_path: Path, enc) -> None:
    ids = tmp_path / "emb.ids.json"
    ids.write_text('{"text": "a"}\n')
    # emb.npy's ids would go to emb.ids.json, the data being embedded.
    assert_error(invoke("embed", ids, "-o", tmp_path / "emb.npy", *enc, "--force"), 2,
                 f"the output {ids} is also the input DATA")


# -- exit codes: 1 for data problems ----------------------------------------------------------
def test_data_problems_exit_1(tmp_path: Path, sentiment_jsonl: Path, unlabelled: Path,
                              image_folder: Path, enc) -> None:
    assert_error(invoke("select", sentiment_jsonl, image_folder, "-o", tmp_path / "s.jsonl",
                        *enc, "--query-split", "train"), 1,
                 "the pool holds text but the queries hold image")
    assert_error(invoke("select", sentiment_jsonl, unlabelled, "-o", tmp_path / "s.jsonl",
                        "--k", 17, *enc), 1, "--k 17 is larger than the pool (16 items)")
    assert_error(invoke("suggest", unlabelled, "--budget", 4, "-o", tmp_path / "s.jsonl", *enc),
                 1, f"error: --budget 4 is larger than the pool (3 items); lower --budget or "
                 f"add items to {unlabelled}")
    assert not (tmp_path / "s.jsonl").exists()


# -- help ---------------------------------------------------------------------------------------
COMMANDS = ("embed", "train", "predict", "evaluate", "bench", "review", "audit", "distill",
            "select", "suggest")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_like_the_readme(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line).strip()
    assert usage.startswith(f"Usage: fewshot {command} [OPTIONS] ")
    arguments = usage.split("[OPTIONS] ")[1]
    assert arguments == arguments.upper() and "{" not in arguments, usage
    assert "<bool>" not in result.stdout
    import click

    cmd = typer_command(command)
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{command} {param.opts[0]} has no help"


def typer_command(name: str):
    import typer.main

    group = typer.main.get_command(app)
    return group.commands[name]  # type: ignore[attr-defined]


def test_help_usage_lines() -> None:
    lines = {c: next(x.strip() for x in runner.invoke(app, [c, "--help"]).stdout.splitlines()
                     if "Usage:" in x) for c in ("predict", "bench", "select")}
    assert lines == {
        "predict": "Usage: fewshot predict [OPTIONS] MODEL_DIR DATA",
        "bench": "Usage: fewshot bench [OPTIONS] DATASET_DIR...",
        "select": "Usage: fewshot select [OPTIONS] POOL QUERIES",
    }


@pytest.mark.parametrize("command", ["evaluate", "predict", "review"])
def test_model_commands_say_where_their_encoder_comes_from(command: str) -> None:
    option = next(p for p in typer_command(command).params if p.name == "encoder")
    assert option.help == ("Where the model's encoder is now: a folder or local-dir:PATH. "
                           "Default: the model's own encoder; pass a path to point a moved "
                           "model at its encoder.")


def test_suggest_help_explains_score() -> None:
    text = " ".join(typer_command("suggest").help.split())
    assert ("for diverse, the item's cosine similarity to the centre of its k-means region"
            in text)
    assert "for uncertain and hybrid, the model's uncertainty, 1 - (top probability - second " \
           "probability)" in text
    assert "for random, 0" in text


# -- devices --------------------------------------------------------------------------------------
@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the refusal needs a machine without CUDA")
def test_missing_cuda_is_refused_even_when_everything_is_cached(
    model: Path, unlabelled: Path, tmp_path: Path, cache_dir: Path, monkeypatch, capsys
) -> None:
    from fewshot.cli import main

    ok("predict", model, unlabelled, "-o", tmp_path / "p.jsonl", "--cache-dir", cache_dir)
    args = ["predict", model, unlabelled, "-o", tmp_path / "q.jsonl", "--cache-dir", cache_dir,
            "--device", "cuda"]
    monkeypatch.setattr("sys.argv", ["fewshot", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: Invalid value for '--device': device 'cuda' is not available (0 CUDA GPU(s) "
        "found); use --device auto or cpu (device='cpu' in Python); see 'fewshot predict --help'")
    assert not (tmp_path / "q.jsonl").exists()


# -- --skip-bad-images in predict ----------------------------------------------------------------
def test_predict_writes_a_row_for_each_skipped_image(tmp_path: Path, image_folder: Path,
                                                     tiny_image_dir: Path) -> None:
    enc = ["--encoder", f"local-dir:{tiny_image_dir}", "--no-cache", "--device", "cpu"]
    ok("train", image_folder, "-o", tmp_path / "m", *enc, "--head", "centroid")
    bad = image_folder / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    result = ok("predict", tmp_path / "m", image_folder, "-o", tmp_path / "p.jsonl", *enc,
                "--skip-bad-images")
    assert result.stderr.strip().splitlines()[-1] == (
        f"wrote 12 predictions and 1 rows for skipped images (see their error) to "
        f"{tmp_path / 'p.jsonl'}")
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 13 and all(r["error"] is None for r in rows[:12])
    skipped = rows[12]
    assert skipped["id"] == "red/broken.png" and skipped["path"] == str(bad)
    assert (skipped["label"], skipped["score"], skipped["probabilities"]) == (None, None, None)
    assert skipped["error"].startswith("unreadable image (cannot identify image file")
    ok("predict", tmp_path / "m", image_folder, "-o", tmp_path / "p.csv", *enc,
       "--skip-bad-images")
    with open(tmp_path / "p.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["id", "path", "label", "score", "p_blue", "p_red", "error"]
    assert (table[12]["label"], table[12]["p_red"], table[12]["error"]) == (
        "", "", skipped["error"])
    assert all(r["error"] == "" for r in table[:12])


# -- --output - ---------------------------------------------------------------------------------
def test_rows_to_stdout(model: Path, unlabelled: Path, tmp_path: Path, cache_dir: Path,
                        sentiment_jsonl: Path, enc) -> None:
    ok("predict", model, unlabelled, "-o", tmp_path / "p.jsonl", "--cache-dir", cache_dir)
    result = ok("predict", model, unlabelled, "-o", "-", "--cache-dir", cache_dir)
    assert result.stdout == (tmp_path / "p.jsonl").read_text(encoding="utf-8")
    assert result.stderr.strip().endswith("wrote 3 predictions to stdout")
    result = ok("predict", model, unlabelled, "-o", "-", "--format", "csv", "--cache-dir",
                cache_dir)
    assert result.stdout.splitlines()[0] == "id,text,label,score,p_neg,p_pos"
    assert len(result.stdout.splitlines()) == 4
    assert_error(invoke("predict", model, unlabelled, "-o", tmp_path / "p.csv", "--format",
                        "jsonl"), 2, "--format jsonl does not match --output 'p.csv'")
    assert_error(invoke("predict", model, unlabelled, "-o", "-", "--format", "xml"), 2,
                 "--format must be jsonl, csv or parquet, got 'xml'")
    # audit: the rows on stdout, the report on stderr.
    result = ok("audit", sentiment_jsonl, "-o", "-", "--cache-dir", cache_dir, *enc)
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == list(range(1, 17))
    assert "audited 16 labelled examples in 2 classes" in result.stderr
    result = ok("suggest", unlabelled, "--budget", 2, "-o", "-", "--strategy", "diverse",
                "--cache-dir", cache_dir, *enc)
    assert [json.loads(x)["rank"] for x in result.stdout.splitlines()] == [1, 2]
    result = ok("select", sentiment_jsonl, unlabelled, "-o", "-", "--k", 2, "--cache-dir",
                cache_dir, *enc)
    assert [len(json.loads(x)["examples"]) for x in result.stdout.splitlines()] == [2, 2, 2]


# -- progress when stderr is not a terminal -------------------------------------------------------
def test_long_loop_logs_plain_progress_lines(monkeypatch, capsys) -> None:
    import fewshot._progress as progress_module

    now = [100.0]
    monkeypatch.setattr(progress_module, "_clock", lambda: now[0])
    monkeypatch.setattr(progress_module, "_auto", lambda: False)  # not a terminal
    with progress_module.progress("Embedding texts", 5000) as advance:
        for _ in range(50):  # 100 items a step, 3 s a step: 33 items/s
            now[0] += 3.0
            advance(100)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == [
        "Embedding texts: 400/5,000 (8%), 33 items/s, ETA 138 s",
        "Embedding texts: 800/5,000 (16%), 33 items/s, ETA 126 s",
    ]
    assert len(lines) == 13  # every 12 s of a 150 s loop, and a last line
    assert lines[-1] == "Embedding texts: 5,000/5,000 done in 150 s"
    assert not any("\x1b" in line or "\r" in line for line in lines)


def test_short_loops_and_disabled_progress_print_nothing(monkeypatch, capsys) -> None:
    import fewshot._progress as progress_module

    now = [0.0]
    monkeypatch.setattr(progress_module, "_clock", lambda: now[0])
    monkeypatch.setattr(progress_module, "_auto", lambda: False)
    with progress_module.progress("Embedding texts", 10) as advance:
        now[0] += 9.0
        advance(10)
    with progress_module.progress("Embedding texts", 10, enabled=False) as advance:
        now[0] += 60.0
        advance(10)
    assert capsys.readouterr().err == ""


def test_transformers_bars_are_off_while_a_model_loads() -> None:
    from transformers.utils import logging as hf_logging

    from fewshot._progress import quiet_library_bars

    hf_logging.enable_progress_bar()
    for shown in (True, None, False):  # on a terminal too: fewshot shows its own
        with quiet_library_bars(shown):
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.is_progress_bar_enabled()


# -- a moved encoder ------------------------------------------------------------------------------
def test_moved_encoder_names_where_it_was_and_the_fix(
    tmp_path: Path, sentiment_jsonl: Path, unlabelled: Path, tiny_text_model_dir: Path, copy_tree
) -> None:
    encoder = copy_tree(tiny_text_model_dir, "encoder")
    ok("train", sentiment_jsonl, "-o", tmp_path / "m", "--encoder", encoder, "--no-cache")
    moved = encoder.rename(tmp_path / "encoder-moved")
    assert_error(
        invoke("predict", tmp_path / "m", unlabelled, "-o", tmp_path / "p.jsonl", "--no-cache"),
        1,
        f"error: cannot find the text encoder this model was trained with, '{encoder}' (tried: "
        f"folder {encoder}: not found; FEWSHOT_MODELS: not set); if it moved, pass --encoder "
        "PATH (encoder= in Python) to point the model at it",
    )
    ok("predict", tmp_path / "m", unlabelled, "-o", tmp_path / "p.jsonl", "--no-cache",
       "--encoder", moved)


def test_long_texts_chunk_is_saved_with_the_model(tmp_path: Path, sentiment_jsonl: Path, enc,
                                                  image_folder: Path) -> None:
    ok("train", sentiment_jsonl, "-o", tmp_path / "m", *enc, "--no-cache",
       "--long-texts", "chunk")
    ref = json.loads((tmp_path / "m" / "fewshot.json").read_text())["encoder"]
    assert ref["settings"] == {"long_texts": "chunk"}
    ok("predict", tmp_path / "m", sentiment_jsonl, "-o", tmp_path / "p.jsonl", "--no-cache")
    assert_error(invoke("embed", image_folder, "-o", tmp_path / "e.npy", "--no-cache",
                        "--long-texts", "chunk"), 2, "--long-texts works with text data only")
    assert_error(invoke("embed", sentiment_jsonl, "-o", tmp_path / "e.npy", *enc, "--no-cache",
                        "--long-texts", "all"), 2, "long_texts")


def test_predict_reads_stdin_and_writes_stdout(model: Path, cache_dir: Path) -> None:
    lines = runner.invoke(app, ["predict", str(model), "-", "-o", "-", "--cache-dir",
                                str(cache_dir)], input="a great film\n\nawful boring plot\n")
    assert lines.exit_code == 0, lines.output
    rows = [json.loads(x) for x in lines.stdout.splitlines()]
    assert [(r["id"], r["text"], r["label"]) for r in rows] == [
        ("1", "a great film", "pos"), ("3", "awful boring plot", "neg")]
    piped = '{"id": "t1", "text": "a great film"}\n{"text": "awful boring plot"}\n'
    jsonl = runner.invoke(app, ["predict", str(model), "-", "-o", "-", "--format", "csv",
                                "--cache-dir", str(cache_dir)], input=piped)
    assert jsonl.exit_code == 0, jsonl.output
    assert [row.split(",")[:3] for row in jsonl.stdout.splitlines()[1:]] == [
        ["t1", "a great film", "pos"], ["2", "awful boring plot", "neg"]]
    bad = runner.invoke(app, ["predict", str(model), "-", "-o", "-", "--cache-dir",
                              str(cache_dir)], input='{"text": "ok"}\n{broken\n')
    assert_error(bad, 1, "<stdin>:2: malformed JSON")


def test_folder_outputs_refuse_stdout_and_hard_links_count_as_inputs(
    tmp_path: Path, sentiment_jsonl: Path, enc
) -> None:
    assert_error(invoke("train", sentiment_jsonl, "-o", "-", *enc, "--no-cache"), 2,
                 "--output - (stdout) is for row outputs")
    assert not Path("-").exists()
    data = tmp_path / "data.jsonl"
    data.write_text(sentiment_jsonl.read_text())
    link = tmp_path / "link.jsonl"
    os.link(data, link)
    before = data.read_text()
    assert_error(invoke("audit", link, "-o", data, *enc, "--no-cache", "--force"), 2,
                 "is also the input DATA")
    assert data.read_text() == before


def test_only_one_input_reads_stdin(tmp_path: Path, enc) -> None:
    result = runner.invoke(app, ["select", "-", "-", "-o", str(tmp_path / "s.jsonl"), *enc],
                           input='{"text": "a", "label": "x"}\n')
    assert_error(result, 2, "POOL and QUERIES both read stdin (-); only one input can")


def test_stdin_with_a_byte_order_mark_is_jsonl(model: Path, cache_dir: Path) -> None:
    piped = '\ufeff{"id": "a", "text": "a great film"}\n'
    result = runner.invoke(app, ["predict", str(model), "-", "-o", "-", "--cache-dir",
                                 str(cache_dir)], input=piped)
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["id"] for x in result.stdout.splitlines()] == ["a"]
