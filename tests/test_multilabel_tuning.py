"""Multi-label tuning (pair targets from label lists, rarest-label batches), fitting on an
indicator matrix, and the bench's multi-label scores: on the tiny fixture text model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SENTIMENT
from typer.testing import CliRunner

from fewshot import FewShotClassifier
from fewshot.cli import app
from fewshot.encoders import TextEncoder
from fewshot.errors import DataError, UsageError
from fewshot.tuning import ContrastiveTuner
from fewshot.tuning.objectives import inbatch_cosine_loss, pair_targets, supcon_loss
from fewshot.tuning.sampling import class_balanced_batches, label_groups, sample_label_list_pairs

TEXTS = [t for t, _ in SENTIMENT]
#: Sentiment, plus "cinema" for texts naming a film or movie; row 5 has no label.
LABELS = [[y, "cinema"] if ("film" in t or "movie" in t) else [y] for t, y in SENTIMENT]
LABELS[5] = []
#: Rows: {a,b}, {a}, {b,c}, {}, {}, {c}
Y6 = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 1]])


def fresh_text(model_dir: Path) -> TextEncoder:
    enc = TextEncoder(str(model_dir), device="cpu", show_progress=False)
    enc.fit()
    return enc


def test_pair_targets_from_label_lists_exactly() -> None:
    shared, valid = pair_targets(torch.as_tensor(Y6), "shared")
    jaccard, _ = pair_targets(torch.as_tensor(Y6), "jaccard")
    expected_shared = np.array([
        [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 1],
        [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1]])
    np.testing.assert_array_equal(shared.numpy(), expected_shared)
    # {a,b} vs {a}: 1/2; {a,b} vs {b,c}: 1/3; {b,c} vs {c}: 1/2.
    assert jaccard[0, 1] == pytest.approx(0.5) and jaccard[0, 2] == pytest.approx(1 / 3)
    assert jaccard[2, 5] == pytest.approx(0.5) and jaccard[1, 2] == 0
    np.testing.assert_array_equal(jaccard.numpy() > 0, expected_shared > 0)
    # Self-pairs and the pair of the two unlabelled rows are left out; an unlabelled
    # row against a labelled one is a negative that counts.
    v = valid.numpy()
    assert not v.diagonal().any() and not v[3, 4] and not v[4, 3]
    assert v[3, 0] and v[0, 3] and v.sum() == 30 - 2
    # One label per row: same class is the target, as before.
    t, _ = pair_targets(torch.tensor([0, 1, 0]))
    np.testing.assert_array_equal(t.numpy(), [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_losses_on_label_lists_match_a_direct_computation() -> None:
    z = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)),
                                      dim=1)
    labels = torch.as_tensor(Y6)
    cos = (z @ z.T).numpy()
    for overlap in ("shared", "jaccard"):
        t, v = (a.numpy() for a in pair_targets(labels, overlap))
        pos, neg = v & (t > 0), v & (t == 0)
        expected = (((cos[pos] - t[pos]) ** 2).mean() + (cos[neg] ** 2).mean()) / 2
        assert float(inbatch_cosine_loss(z, labels, overlap)) == pytest.approx(expected, rel=1e-5)
        logits = cos / 0.1
        np.fill_diagonal(logits, -np.inf)
        log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        w = np.where(pos, t, 0.0)
        anchors = w.sum(1) > 0  # unlabelled rows have no positive: not anchors
        per_anchor = (np.where(pos, log_prob, 0.0) * w).sum(1)[anchors] / w.sum(1)[anchors]
        assert float(supcon_loss(z, labels, 0.1, overlap)) == pytest.approx(
            -per_anchor.mean(), rel=1e-5)
    # Class indices give the same loss as their one-hot indicator rows ("shared").
    y = torch.tensor([0, 1, 0, 2, 1, 2])
    onehot = torch.nn.functional.one_hot(y)
    assert float(supcon_loss(z, y, 0.1)) == pytest.approx(float(supcon_loss(z, onehot, 0.1)))
    assert float(inbatch_cosine_loss(z, y)) == pytest.approx(float(inbatch_cosine_loss(z, onehot)))


def test_rows_are_grouped_by_their_rarest_label() -> None:
    # Label counts: a 2, b 2, c 2 -> ties go to the lower column; unlabelled rows: group 3.
    np.testing.assert_array_equal(label_groups(Y6), [0, 0, 1, 3, 3, 2])
    Y = np.array([[1, 1], [1, 0], [1, 0], [1, 1], [1, 0]])  # b (2 rows) is rarer than a
    np.testing.assert_array_equal(label_groups(Y), [1, 0, 0, 1, 0])
    batches = class_balanced_batches(label_groups(Y), 4, 2, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == [0, 1, 2, 3, 4]
    # Both rows of the rare label sit in the same batch, so each has its positive.
    assert any({0, 3} <= set(b.tolist()) for b in batches)


def test_sampled_pairs_are_positive_exactly_when_rows_share_a_label() -> None:
    rng = np.random.default_rng(0)
    left, right, target = sample_label_list_pairs(Y6, 3, rng, "shared")
    Yb = Y6.astype(bool)
    share = (Yb[left] & Yb[right]).any(axis=1)
    np.testing.assert_array_equal(target, share.astype(float))
    assert not (left == right).any()
    both_empty = ~Yb[left].any(axis=1) & ~Yb[right].any(axis=1)
    assert not both_empty.any()  # two unlabelled rows are never paired
    # Every labelled row gets 3 positives and 3 negatives; unlabelled rows 3 negatives.
    assert np.bincount(left[target == 1], minlength=6).tolist() == [3, 3, 3, 0, 0, 3]
    assert np.bincount(left[target == 0], minlength=6).tolist() == [3] * 6
    left, right, target = sample_label_list_pairs(Y6, 3, np.random.default_rng(0), "jaccard")
    inter = (Yb[left] & Yb[right]).sum(1)
    union = (Yb[left] | Yb[right]).sum(1)
    np.testing.assert_allclose(target, inter / union)


def test_tuner_on_label_lists_is_deterministic_and_changes_the_body(
    tiny_text_model_dir: Path,
) -> None:
    a, b = fresh_text(tiny_text_model_dir), fresh_text(tiny_text_model_dir)
    before = a.encode(TEXTS)
    settings = {"epochs": 4, "learning_rate": 1e-2, "batch_size": 8, "per_class": 2}
    report = ContrastiveTuner(**settings).tune(a, TEXTS, LABELS)
    ContrastiveTuner(**settings).tune(b, TEXTS, LABELS)
    assert report.objective == "cosine" and report.steps == 4 * 2  # 16 rows, batches of 8
    np.testing.assert_array_equal(a.encode(TEXTS), b.encode(TEXTS))
    assert not np.allclose(a.encode(TEXTS), before)
    for objective in ("supcon", "pairs"):
        r = ContrastiveTuner(objective, epochs=1, pairs_per_item=2, label_overlap="shared").tune(
            fresh_text(tiny_text_model_dir), TEXTS, LABELS)
        assert r.steps > 0 and np.isfinite(r.epoch_losses).all()


def test_tuner_label_list_errors(tiny_text_model_dir: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    with pytest.raises(UsageError, match="validation and early stopping score one label per "
                       "item; set validation_fraction=0"):
        ContrastiveTuner(validation_fraction=0.2).tune(enc, TEXTS, LABELS)
    with pytest.raises(UsageError, match="unknown label_overlap 'any'; choose shared or jaccard"):
        ContrastiveTuner(label_overlap="any").tune(enc, TEXTS, LABELS)
    with pytest.raises(DataError, match="label 1 is 'pos' but other items have label lists"):
        ContrastiveTuner().tune(enc, TEXTS[:3], [["pos"], "pos", ["neg"]])
    with pytest.raises(DataError, match="needs a class with at least two examples"):
        ContrastiveTuner().tune(enc, TEXTS[:3], [["pos"], ["neg"], []])


def test_classifier_tunes_on_label_lists_and_round_trips(tiny_text_model_dir: Path,
                                                        tmp_path: Path) -> None:
    tune = {"epochs": 3, "learning_rate": 1e-2}
    clf = FewShotClassifier(str(tiny_text_model_dir), tune=tune, cache=False,
                            show_progress=False).fit(TEXTS, LABELS)
    assert clf.multi_label_ and clf.tuning_["report"]["steps"] > 0
    predicted = clf.predict(TEXTS)
    assert all(isinstance(p, list) for p in predicted)
    loaded = FewShotClassifier.load(clf.save(tmp_path / "m"), cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS))
    assert loaded.predict(TEXTS) == predicted


def test_fits_an_indicator_matrix_and_predicts_one(tiny_text_encoder, tmp_path: Path) -> None:
    names = ["pos", "neg", "cinema"]  # not sorted: the columns keep this order
    Y = np.array([[int(n in row) for n in names] for row in LABELS])
    clf = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, Y, label_names=names)
    assert clf.multi_label_ and clf.fitted_on_indicator_
    assert clf.classes_.tolist() == names
    np.testing.assert_array_equal(clf.class_counts_, Y.sum(axis=0))
    pred = clf.predict(TEXTS)
    assert isinstance(pred, np.ndarray) and pred.shape == Y.shape and pred.dtype == np.int64
    assert (pred == Y).mean() >= 0.8
    # The same model fitted on label lists: the same probabilities, columns reordered.
    lists = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, LABELS)
    order = [lists.classes_.tolist().index(n) for n in names]
    np.testing.assert_allclose(clf.predict_proba(TEXTS), lists.predict_proba(TEXTS)[:, order],
                               rtol=1e-6)
    assert [names[j] for j in np.flatnonzero(pred[0])] == sorted(
        lists.predict(TEXTS)[0], key=names.index)

    loaded = FewShotClassifier.load(clf.save(tmp_path / "m"), cache=False)
    assert loaded.fitted_on_indicator_ and loaded.classes_.tolist() == names
    np.testing.assert_array_equal(loaded.predict(TEXTS), pred)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS))

    plain = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, Y)
    assert plain.classes_.tolist() == [0, 1, 2] and plain.predict(TEXTS).shape == Y.shape
    import scipy.sparse

    sparse = FewShotClassifier(tiny_text_encoder, cache=False).fit(
        TEXTS, scipy.sparse.csr_matrix(Y), label_names=names)
    np.testing.assert_array_equal(sparse.predict(TEXTS), pred)


def test_indicator_matrix_errors(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, cache=False)
    Y = np.array([[int(n in row) for n in ("pos", "neg", "cinema")] for row in LABELS])
    with pytest.raises(UsageError, match=r"label_names has 2 names \(2 distinct\) for 3 columns"):
        clf.fit(TEXTS, Y, label_names=["pos", "neg"])
    with pytest.raises(UsageError, match="label_names names the columns of an indicator matrix"):
        clf.fit(TEXTS, LABELS, label_names=["pos", "neg", "cinema"])
    with pytest.raises(DataError, match="holds only 0 and 1"):
        clf.fit(TEXTS, Y * 2)
    empty = np.concatenate([Y, np.zeros((16, 1), int)], axis=1)
    with pytest.raises(DataError, match=r"label\(s\) x have no positive row in y"):
        clf.fit(TEXTS, empty, label_names=["pos", "neg", "cinema", "x"])


def _multi_label_dataset(folder: Path) -> Path:
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps({"text": t, "labels": ys}) + "\n"
                    for t, ys in zip(TEXTS, LABELS, strict=True)))
    return folder


def test_bench_scores_multi_label_datasets(tiny_text_model_dir: Path, tmp_path: Path) -> None:
    from fewshot.bench import run_bench, write_summary
    from fewshot.data import few_shot_indices
    from fewshot.metrics import multilabel_report
    from fewshot.training.fitting import fit_embeddings

    data = _multi_label_dataset(tmp_path / "tiny_multi")
    rows = run_bench([data], tmp_path / "out", shots=[4], seeds=[0],
                     methods=["logreg", "tuned-logreg"], encoder=str(tiny_text_model_dir),
                     cache=False, show_progress=False)
    keys = {"macro_f1", "micro_f1", "samples_f1", "subset_accuracy", "hamming_loss"}
    by_method = {r["method"]: r for r in rows}
    for r in rows:
        assert r["error"] is None and r["multi_label"] and keys <= set(r)
        assert "accuracy" not in r and r["n_classes"] == 3
    assert by_method["tuned-logreg"]["fit_cpu_seconds"] > 0
    # The logreg row is exactly FewShotClassifier's fitting path on the protocol split.
    idx = few_shot_indices(LABELS, 4, 0)
    assert by_method["logreg"]["n_train"] == len(idx)
    enc = fresh_text(tiny_text_model_dir)
    model = fit_embeddings(enc, enc.encode([TEXTS[i] for i in idx]), [LABELS[i] for i in idx],
                           head="logreg", calibration=None)
    chosen = model.decide(model.head.predict_proba(enc.encode(TEXTS)))
    pred = [[str(model.classes[j]) for j in np.flatnonzero(r)] for r in chosen]
    report = multilabel_report(LABELS, pred, ["cinema", "neg", "pos"])
    for k in keys:
        assert by_method["logreg"][k] == pytest.approx(report[k])
    assert report["macro_f1"] > 0.6
    text = write_summary(rows, tmp_path / "summary.md")
    assert "## tiny_multi (macro_f1" in text
    assert "| method | 4-shot macro-F1 | micro-F1 | samples-F1 | subset acc | Hamming |" in text


def test_cli_train_tunes_on_label_lists(tiny_text_model_dir: Path, tmp_path: Path) -> None:
    data = _multi_label_dataset(tmp_path / "d")
    r = CliRunner().invoke(app, [
        "train", str(data / "train.jsonl"), "-o", str(tmp_path / "m"), "--encoder",
        str(tiny_text_model_dir), "--tune", "--tune-param", "epochs=2", "--no-cache"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "m" / "fewshot.json").read_text())
    assert manifest["classes"] == ["cinema", "neg", "pos"] and manifest["tuning"]
    assert (tmp_path / "m" / "body.safetensors").is_file()
