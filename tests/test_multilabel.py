"""Multi-label classification through FewShotClassifier: fit on label lists, per-label
thresholds, label lists out, a safe folder that round-trips exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTIMENT

from fewshot import FewShotClassifier
from fewshot.errors import DataError, UsageError

TEXTS = [t for t, _ in SENTIMENT]
#: Sentiment, plus "cinema" for texts that name a film or movie; one row has no label.
LABELS = [[y, "cinema"] if ("film" in t or "movie" in t) else [y] for t, y in SENTIMENT]
LABELS[5] = []


@pytest.mark.parametrize("head", ["logreg", "knn", "centroid"])
def test_fits_label_lists_and_predicts_label_lists(tiny_text_encoder, tmp_path: Path,
                                                    head: str) -> None:
    clf = FewShotClassifier(tiny_text_encoder, head, cache=False).fit(TEXTS, LABELS)
    assert clf.multi_label_ and clf.classes_.tolist() == ["cinema", "neg", "pos"]
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (16, 3) and not np.allclose(proba.sum(axis=1), 1.0)
    predicted = clf.predict(TEXTS)
    assert all(isinstance(row, list) for row in predicted)
    sentiment = [("pos" in p) - ("neg" in p) for p in predicted]
    truth = [1 if y == "pos" else -1 for _, y in SENTIMENT]
    assert np.mean(np.equal(sentiment, truth)) >= 0.8  # chance is well below
    thresholds = clf.model_.thresholds
    assert thresholds is not None and thresholds.values.shape == (3,)
    assert np.all((thresholds.values > 0) & (thresholds.values < 1))
    np.testing.assert_array_equal(clf.class_counts_, [8, 8, 7])  # cinema, neg, pos

    folder = clf.save(tmp_path / "m")
    manifest = json.loads((folder / "fewshot.json").read_text())
    assert manifest["classes"] == ["cinema", "neg", "pos"] and "thresholds" in manifest
    loaded = FewShotClassifier.load(folder, cache=False)
    assert loaded.multi_label_
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), proba)
    assert loaded.predict(TEXTS) == predicted


def test_min_labels_and_threshold_override(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, LABELS)
    none = clf.set_params(threshold=1.0).predict(TEXTS)
    assert none == [[]] * 16  # nothing reaches a threshold of 1
    top = clf.set_params(min_labels=1).predict(TEXTS)
    proba = clf.predict_proba(TEXTS)
    assert top == [[clf.classes_[i]] for i in proba.argmax(axis=1)]
    every = clf.set_params(threshold=0.0, min_labels=0).predict(TEXTS)
    assert every == [["cinema", "neg", "pos"]] * 16


def test_multi_label_errors(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, cache=False)
    with pytest.raises(DataError, match="label 2 is a str .*a list of labels for every item"):
        clf.fit(TEXTS[:4], [["pos"], ["neg"], "pos", ["neg"]])
    with pytest.raises(DataError, match="needs at least two"):
        clf.fit(TEXTS[:4], [["pos"], ["pos"], [], ["pos"]])
    with pytest.raises(UsageError, match="self-training works with one label per item; drop "
                       "unlabelled for multi-label data"):
        FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, LABELS, unlabelled=TEXTS)
    fitted = clf.fit(TEXTS, LABELS)
    with pytest.raises(UsageError, match="independent per-label probabilities"):
        fitted.adapt_prior(TEXTS)


def test_cli_train_predict_evaluate_on_label_lists(tiny_text_model_dir: Path,
                                                   tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fewshot.cli import app

    data = tmp_path / "ml.jsonl"
    data.write_text("".join(json.dumps({"text": t, "labels": y}) + "\n"
                            for t, y in zip(TEXTS, LABELS, strict=True)))
    runner, common = CliRunner(), ["--encoder", str(tiny_text_model_dir), "--no-cache"]
    r = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "m"), *common])
    assert r.exit_code == 0, r.output
    assert "thresholds: one per label, chosen on 16 out-of-fold rows (5 folds)" in r.output
    r = runner.invoke(app, ["predict", str(tmp_path / "m"), str(data), "-o",
                            str(tmp_path / "p.jsonl"), "--no-cache"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(isinstance(row["labels"], list) for row in rows)
    assert set(rows[0]["probabilities"]) == {"cinema", "neg", "pos"}
    r = runner.invoke(app, ["evaluate", str(tmp_path / "m"), str(data), "--json", "--no-cache"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["n"] == 16 and report["macro_f1"] > 0.6
    assert {"micro_f1", "subset_accuracy", "hamming_loss", "samples_f1"} <= set(report)
    r = runner.invoke(app, ["predict", str(tmp_path / "m"), str(data), "-o", "-", "--no-cache",
                            "--threshold", "1.0", "--min-labels", "1"])
    assert r.exit_code == 0, r.output
    assert all(len(json.loads(x)["labels"]) == 1 for x in r.stdout.splitlines())
    r = runner.invoke(app, ["review", str(tmp_path / "m"), str(data), "-o",
                            str(tmp_path / "rev"), "--no-cache"])
    assert r.exit_code == 2 and "multi-label model's per-label thresholds" in r.output
    r = runner.invoke(app, ["audit", str(data), "-o", str(tmp_path / "a.jsonl"), *common])
    assert r.exit_code == 2 and "label lists (multi-label) are not audited yet" in r.output
    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in SENTIMENT))
    r = runner.invoke(app, ["evaluate", str(tmp_path / "m"), str(single), "--no-cache"])
    assert r.exit_code == 1 and "one label per row but the model was trained on label lists" \
        in r.output


def test_decision_options_refused_for_a_single_label_model(tiny_text_model_dir: Path,
                                                          sentiment_jsonl: Path,
                                                          tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fewshot.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["train", str(sentiment_jsonl), "-o", str(tmp_path / "m"),
                            "--encoder", str(tiny_text_model_dir), "--no-cache"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "m"), str(sentiment_jsonl), "--no-cache",
                            "--min-labels", "1"])
    assert r.exit_code == 2 and "this model gives one label per item" in r.output
