"""fewshot.confidence.label_shift and FewShotClassifier.adapt_prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTIMENT
from test_cli import assert_error, invoke, ok

from fewshot import FewShotClassifier
from fewshot.confidence.label_shift import (
    apply_class_prior,
    confusion_conditioning,
    em_class_prior,
    estimate_label_shift,
)
from fewshot.errors import DataError, ModelError, UsageError
from fewshot.model.folder import MANIFEST

TEXTS = [t for t, _ in SENTIMENT]
LABELS = [y for _, y in SENTIMENT]
#: Twenty positive reviews the tiny model has not seen, and four negative ones.
POSITIVE_POOL = [f"{a} {n}" for a in ("good", "great", "excellent", "wonderful", "nice")
                 for n in ("movie", "film", "plot", "story")]
POSITIVE_POOL += ["awful plot", "terrible film", "boring actor", "dull story"]


def _posterior(x: np.ndarray, prior: np.ndarray, means=(-2.0, 0.0, 2.0)) -> np.ndarray:
    """Exact p(y|x) for unit-variance Gaussian classes at ``means`` under ``prior``."""
    logp = -0.5 * (x[:, None] - np.asarray(means)[None, :]) ** 2 + np.log(prior)[None, :]
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _shifted_sample(prior: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=prior)
    return np.asarray([-2.0, 0.0, 2.0])[y] + rng.normal(size=n), y


def test_apply_class_prior_by_hand() -> None:
    out = apply_class_prior([[0.5, 0.5], [0.2, 0.8]], [0.5, 0.5], [0.8, 0.2])
    np.testing.assert_allclose(out, [[0.8, 0.2], [0.5, 0.5]])
    # Every probability on a class with prior 0: the row keeps its own.
    np.testing.assert_allclose(apply_class_prior([[0.0, 1.0]], [0.5, 0.5], [1.0, 0.0]),
                               [[0.0, 1.0]])


def test_em_recovers_a_shifted_class_mix_and_the_shifted_posterior() -> None:
    balanced = np.full(3, 1 / 3)
    target = np.array([0.6, 0.3, 0.1])
    x, _ = _shifted_sample(target, 20000)
    proba = _posterior(x, balanced)  # a calibrated model trained on a balanced set
    prior, iterations = em_class_prior(proba, balanced)
    np.testing.assert_allclose(prior, target, atol=0.02)
    assert 1 < iterations < 1000
    # Moving the balanced posterior to the true mix gives the true posterior exactly.
    np.testing.assert_allclose(apply_class_prior(proba, balanced, target),
                               _posterior(x, target), atol=1e-12)


def test_estimate_uses_the_prior_only_when_confusions_can_show_it() -> None:
    balanced = np.full(3, 1 / 3)
    x, _ = _shifted_sample(np.array([0.6, 0.3, 0.1]), 3000)
    pool = _posterior(x, balanced)
    ox, oy = _shifted_sample(balanced, 300, seed=1)
    sharp = estimate_label_shift(pool, _posterior(ox, balanced), oy, balanced)
    assert sharp.used and sharp.threshold == pytest.approx(1 / np.sqrt(np.bincount(oy).min()))
    assert sharp.sigma_min > sharp.threshold and sharp.prior[0] > 0.5
    # kNN vote shares: the same estimate is reported, never used.
    votes = estimate_label_shift(pool, _posterior(ox, balanced), oy, balanced, vote_shares=True)
    assert not votes.used and "vote shares" in votes.reason and votes.prior == sharp.prior
    # A classifier whose held-out rows all look alike cannot tell a shift from confusion.
    flat = np.full((300, 3), 1 / 3) + np.random.default_rng(2).normal(0, 1e-3, (300, 3))
    blind = estimate_label_shift(pool, flat, oy, balanced)
    assert not blind.used and "cannot tell a shift in the class mix" in blind.reason
    assert blind.sigma_min < 0.01
    # A class with no held-out rows: its confusions are unknown.
    missing = estimate_label_shift(pool, _posterior(ox, balanced)[oy < 2], oy[oy < 2], balanced)
    assert not missing.used and missing.threshold is None
    assert "no out-of-fold rows" in missing.reason
    assert confusion_conditioning(np.eye(3), [0, 1, 2], 3) == (pytest.approx(1.0), 1)


def test_estimate_errors() -> None:
    with pytest.raises(DataError, match="no unlabelled items"):
        estimate_label_shift(np.zeros((0, 2)), np.eye(2), [0, 1], [0.5, 0.5])
    with pytest.raises(DataError, match="training prior"):
        estimate_label_shift(np.eye(2), np.eye(2), [0, 1], [1.0, 0.0])


# -- the classifier ---------------------------------------------------------------------------
@pytest.fixture
def calibrated(tiny_text_encoder) -> FewShotClassifier:
    return FewShotClassifier(tiny_text_encoder, calibration="temperature", cache=False).fit(
        TEXTS, LABELS
    )


def test_adapt_prior_moves_probabilities_and_survives_save_and_load(
    calibrated: FewShotClassifier, tmp_path: Path, tiny_text_encoder
) -> None:
    before = calibrated.predict_proba(POSITIVE_POOL)
    raw = calibrated.predict_proba(POSITIVE_POOL, calibrated=False)
    assert calibrated.adapt_prior(POSITIVE_POOL) is calibrated
    report = calibrated.label_shift_
    assert report is not None and report["used"] and report["n_items"] == 24
    assert report["training_prior"] == [0.5, 0.5]
    pos = list(calibrated.classes_).index("pos")
    assert 0.75 < report["prior"][pos] < 0.9  # twenty of the twenty-four are positive
    after = calibrated.predict_proba(POSITIVE_POOL)
    np.testing.assert_allclose(after, apply_class_prior(before, [0.5, 0.5], report["prior"]),
                               rtol=1e-6)
    assert (after[:20, pos] > before[:20, pos]).all()
    np.testing.assert_array_equal(calibrated.predict_proba(POSITIVE_POOL, calibrated=False), raw)
    calibrated.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert manifest["class_counts"] == [8, 8] and manifest["label_shift"] == report
    loaded = FewShotClassifier.load(tmp_path / "m", encoder=tiny_text_encoder, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(POSITIVE_POOL), after)
    np.testing.assert_array_equal(loaded.class_prior_, np.asarray(report["prior"]))
    # Refitting forgets the prior: it belonged to the old model's data.
    refit = loaded.fit(TEXTS, LABELS)
    assert refit.label_shift_ is None and refit.class_prior_ is None


def test_adapt_prior_that_is_not_used_leaves_probabilities_alone(
    calibrated: FewShotClassifier,
) -> None:
    before = calibrated.predict_proba(POSITIVE_POOL)
    # Held-out rows that all look alike: the shift cannot be identified.
    calibrated.model_.calibration.oof_proba = np.full_like(calibrated.oof_proba_, 0.5)
    calibrated.adapt_prior(POSITIVE_POOL)
    assert calibrated.label_shift_ is not None and not calibrated.label_shift_["used"]
    assert calibrated.class_prior_ is None
    np.testing.assert_array_equal(calibrated.predict_proba(POSITIVE_POOL), before)


def test_adapt_prior_is_not_used_with_a_knn_head(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, "knn", calibration="temperature", cache=False)
    before = clf.fit(TEXTS, LABELS).predict_proba(POSITIVE_POOL)
    report = clf.adapt_prior(POSITIVE_POOL).label_shift_
    assert report is not None and not report["used"] and "vote shares" in report["reason"]
    np.testing.assert_array_equal(clf.predict_proba(POSITIVE_POOL), before)


def test_a_few_items_never_drive_a_class_to_zero(calibrated: FewShotClassifier) -> None:
    report = calibrated.adapt_prior(["great great film"]).label_shift_
    assert report is not None and not report["used"] and "too few" in report["reason"]
    assert min(report["prior"]) > 0.3  # one item against one pseudo-item per class
    assert calibrated.class_prior_ is None


def test_class_counts_follow_classes_with_int_labels_and_descriptions(
    tiny_text_encoder,
) -> None:
    texts = TEXTS[:8] + TEXTS[8:12]  # 8 positive, 4 negative
    labels = [1] * 8 + [0] * 4
    clf = FewShotClassifier(tiny_text_encoder, calibration="temperature", cache=False,
                            label_descriptions={1: "good great", 0: "bad awful"})
    clf.fit(texts, labels)
    assert clf.classes_.tolist() == [0, 1]
    np.testing.assert_array_equal(clf.class_counts_, [5, 9])  # + one description each
    np.testing.assert_allclose(clf.model_.training_prior, [5 / 14, 9 / 14])


def test_adapt_prior_errors(
    calibrated: FewShotClassifier, tiny_text_encoder, tmp_path: Path
) -> None:
    plain = FewShotClassifier(tiny_text_encoder, calibration=None, cache=False).fit(TEXTS, LABELS)
    with pytest.raises(UsageError, match="calibration='temperature'"):
        plain.adapt_prior(POSITIVE_POOL)
    with pytest.raises(DataError, match="no unlabelled items"):
        calibrated.adapt_prior([])
    calibrated.adapt_prior(POSITIVE_POOL).save(tmp_path / "m")
    manifest_path = tmp_path / "m" / MANIFEST
    good = json.loads(manifest_path.read_text())
    for key, value in (("prior", [1.0]), ("prior", [float("nan"), 1.0]), ("prior", "x")):
        manifest = json.loads(json.dumps(good))
        manifest["label_shift"][key] = value
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match="fewshot.json is corrupt"):
            FewShotClassifier.load(tmp_path / "m", encoder=tiny_text_encoder, cache=False)
    manifest = json.loads(json.dumps(good))
    manifest["class_counts"] = [8]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"class counts \[8\] for 2 classes"):
        FewShotClassifier.load(tmp_path / "m", encoder=tiny_text_encoder, cache=False)
    # Class counts are part of every model folder.
    manifest = json.loads(json.dumps(good))
    del manifest["class_counts"], manifest["label_shift"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="missing class_counts.*re-run fewshot train"):
        FewShotClassifier.load(tmp_path / "m", encoder=tiny_text_encoder, cache=False)


# -- CLI --------------------------------------------------------------------------------------
@pytest.fixture
def common(tiny_text_model_dir: Path, cache_dir: Path) -> list[object]:
    return ["--encoder", tiny_text_model_dir, "--cache-dir", cache_dir, "--device", "cpu"]


def test_cli_train_prior_from_and_predict_adapt_prior(
    tmp_path: Path, sentiment_jsonl: Path, common: list[object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "env-cache"))
    pool = tmp_path / "pool.txt"
    # The last is a labelled example: it stays in, it belongs to the population.
    pool.write_text("\n".join([*POSITIVE_POOL, "a good movie"]) + "\n")
    out = tmp_path / "m"
    result = ok("train", sentiment_jsonl, "-o", out, "--prior-from", pool, *common)
    assert "class prior: estimated from 25 unlabelled items and used (pos 0." in result.stderr
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["label_shift"]["used"] and manifest["label_shift"]["n_items"] == 25
    # evaluate scores the probabilities predict gives: calibrated, then moved to the prior.
    report = json.loads(ok("evaluate", out, sentiment_jsonl, "--json", *common).stdout)
    assert report["class_prior"] is True
    from fewshot.metrics import brier_score

    loaded = FewShotClassifier.load(out, encoder=str(common[1]), cache=False)
    y_idx = [list(loaded.classes_).index(v) for v in LABELS]
    assert report["brier"] == pytest.approx(brier_score(loaded.predict_proba(TEXTS), y_idx))
    assert report["brier"] != pytest.approx(
        brier_score(loaded.calibrate(loaded.predict_proba(TEXTS, calibrated=False)), y_idx))
    assert "+ class prior" in ok("evaluate", out, sentiment_jsonl, *common).stdout
    plain = tmp_path / "plain"
    ok("train", sentiment_jsonl, "-o", plain, *common)
    preds = tmp_path / "p.jsonl"
    result = ok("predict", plain, pool, "-o", preds, "--adapt-prior", *common)
    assert "class prior: estimated from 25 unlabelled items and used" in result.stderr
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    shifted = [r["probabilities"]["pos"] for r in rows]
    ok("predict", plain, pool, "-o", preds, "--force", *common)
    unshifted = [json.loads(r)["probabilities"]["pos"] for r in preds.read_text().splitlines()]
    assert all(a >= b for a, b in zip(shifted, unshifted, strict=True))
    assert shifted != unshifted
    assert_error(invoke("train", sentiment_jsonl, "-o", tmp_path / "m2", "--prior-from", pool,
                        "--calibration", "none", *common), 2, "--prior-from")
    result = ok("train", sentiment_jsonl, "-o", tmp_path / "m3", "--prior-from",
                sentiment_jsonl, *common)
    assert ("class prior: kept the training mix; 16 unlabelled items are too few to estimate "
            "the mix of 2 classes; give at least 20") in result.stderr
    assert_error(invoke("predict", tmp_path / "nocal", pool, "-o", tmp_path / "q.jsonl",
                        "--adapt-prior", *common), 1)
    ok("train", sentiment_jsonl, "-o", tmp_path / "nocal", "--calibration", "none", *common)
    assert_error(invoke("predict", tmp_path / "nocal", pool, "-o", tmp_path / "q.jsonl",
                        "--adapt-prior", *common), 2, "--calibration temperature")


# -- review under a class prior -----------------------------------------------------------------
def test_weighted_precision_threshold_and_conformal_quantile_by_hand() -> None:
    from fewshot.confidence.thresholds import conformal_quantile, precision_threshold

    conf = [0.9, 0.8, 0.7, 0.6]
    correct = [True, False, True, True]
    plain = precision_threshold(conf, correct, 0.75)
    assert (plain.threshold, plain.precision, plain.coverage) == (0.6, 0.75, 1.0)
    # The wrong row's class is three times as common where the model is used.
    weighted = precision_threshold(conf, correct, 0.75, weight=[1, 3, 1, 1])
    assert weighted.threshold == 0.9 and weighted.coverage == pytest.approx(1 / 6)
    assert precision_threshold(conf, correct, 0.75, weight=[1, 1, 1, 1]) == plain
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=50)
    y = rng.integers(0, 3, size=50)
    q = conformal_quantile(proba, y, 0.8)
    assert conformal_quantile(proba, y, 0.8, weight=np.full(50, 2.0)) == q
    # Up-weighting the rows with the largest scores raises the quantile.
    scores = 1 - proba[np.arange(50), y]
    heavy = np.where(scores > np.median(scores), 3.0, 1.0)
    assert conformal_quantile(proba, y, 0.8, weight=heavy) > q


def test_review_weights_held_out_rows_by_their_own_mix(tiny_text_encoder) -> None:
    from fewshot.confidence.thresholds import conformal_quantile, precision_threshold, review

    # Imbalanced, with descriptions (never held out): the held-out mix (4:8) is not
    # the training mix (5:9), and the weights must correct the held-out mix.
    clf = FewShotClassifier(tiny_text_encoder, calibration="temperature", cache=False,
                            label_descriptions={"pos": "good great", "neg": "bad awful"})
    clf.fit(TEXTS[:12], LABELS[:12]).adapt_prior(POSITIVE_POOL)
    prior = clf.class_prior_
    assert prior is not None
    result = review(clf, clf.predict_proba(POSITIVE_POOL), target_precision=0.99,
                    conformal=0.8)
    y = clf.oof_labels_
    mix = np.bincount(y, minlength=2) / len(y)
    np.testing.assert_allclose(mix, [4 / 12, 8 / 12])  # classes_ = [neg, pos]
    held = apply_class_prior(clf.calibrate(clf.oof_proba_), clf.model_.training_prior, prior)
    weight = (prior / mix)[y]
    wrong = (prior / clf.model_.training_prior)[y]
    assert not np.allclose(weight, wrong)
    assert result.threshold == precision_threshold(held.max(1), held.argmax(1) == y, 0.99, weight)
    assert result.conformal is not None
    assert result.conformal.q == conformal_quantile(held, y, 0.8, weight)


def test_weighted_precision_estimates_precision_at_the_shifted_mix() -> None:
    """Held-out rows drawn balanced, weighted to a 0.9/0.1 mix, estimate its precision."""
    from fewshot.confidence.thresholds import precision_threshold

    balanced, target = np.full(3, 1 / 3), np.array([0.6, 0.3, 0.1])
    x, y = _shifted_sample(balanced, 6000, seed=3)
    held = apply_class_prior(_posterior(x, balanced), balanced, target)
    t = precision_threshold(held.max(1), held.argmax(1) == y, 0.9, (target / balanced)[y])
    xs, ys = _shifted_sample(target, 20000, seed=4)
    shifted = _posterior(xs, target)
    accepted = shifted.max(1) >= t.threshold
    assert (shifted.argmax(1) == ys)[accepted].mean() == pytest.approx(t.precision, abs=0.01)
    assert accepted.mean() == pytest.approx(t.coverage, abs=0.02)


def test_adapt_prior_leaves_the_loaded_model_and_copies_alone(
    calibrated: FewShotClassifier, tiny_text_encoder, tmp_path: Path
) -> None:
    import copy

    folder = calibrated.save(tmp_path / "m")
    loaded = FewShotClassifier.load(folder, encoder=tiny_text_encoder, cache=False)
    twin = copy.copy(loaded)
    loaded.adapt_prior(POSITIVE_POOL)
    assert loaded.label_shift_ is not None
    assert twin.label_shift_ is None and twin.class_prior_ is None
