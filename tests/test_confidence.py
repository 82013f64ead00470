"""fewshot.confidence: calibration, review thresholds, conformal sets, audit, priors, self-train."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTIMENT

from fewshot import FewShotClassifier
from fewshot.confidence.audit import audit_labels, near_duplicate_groups
from fewshot.confidence.calibration import (
    IdentityCalibration,
    IsotonicCalibration,
    LabelCalibration,
    TemperatureScaling,
    fit_calibrator,
    fit_label_calibrator,
    fold_ids,
    out_of_fold_proba,
)
from fewshot.confidence.thresholds import (
    conformal_quantile,
    precision_threshold,
    prediction_sets,
    review,
)
from fewshot.errors import DataError, ModelError, UsageError
from fewshot.heads import CentroidHead, KNNHead, LogisticRegressionHead
from fewshot.metrics import brier_score, expected_calibration_error
from fewshot.model.folder import MANIFEST
from fewshot.model.state import Calibration
from fewshot.training.descriptions import check_label_descriptions, read_label_descriptions
from fewshot.training.self_training import select_pseudo_labels, self_train

CALIBRATION_FILE = Calibration.file
TEXTS = [t for t, _ in SENTIMENT]
LABELS = [y for _, y in SENTIMENT]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _overconfident(n: int, k: int = 4, true_t: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z / true_t); the 'model' says softmax(z): overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0, (n, k))
    truth = _softmax(z / true_t)
    y = np.array([rng.choice(k, p=p) for p in truth])
    return _softmax(z), y


def _blobs(n_per: int, k: int = 3, dim: int = 8, spread: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(k, dim) * 2.0
    Z = np.concatenate([c + rng.normal(0, spread, (n_per, dim)) for c in centres])
    return Z.astype(np.float32), np.repeat(np.arange(k), n_per)


# -- calibrators ------------------------------------------------------------------------------
def test_temperature_scaling_recovers_temperature_and_lowers_ece() -> None:
    proba, y = _overconfident(4000)
    ts = TemperatureScaling().fit(proba, y)
    assert ts.temperature == pytest.approx(3.0, rel=0.12)
    test_p, test_y = _overconfident(4000, seed=1)
    before = expected_calibration_error(test_p, test_y)
    after = expected_calibration_error(ts.transform(test_p), test_y)
    assert before > 0.2 and after < 0.04
    assert brier_score(ts.transform(test_p), test_y) < brier_score(test_p, test_y)
    # Temperature never changes the predicted class.
    np.testing.assert_array_equal(ts.transform(test_p).argmax(1), test_p.argmax(1))


def test_temperature_smoothing_calibrates_vote_shares() -> None:
    # kNN-like votes of 4 neighbours (zeros included): unanimous votes are right 85%
    # of the time, 3-to-1 votes 60%, so the raw shares are overconfident.
    rng = np.random.default_rng(0)

    def votes(n: int):
        y = rng.integers(0, 3, n)
        share = rng.choice([0.75, 1.0], n)
        right = rng.random(n) < np.where(share == 1.0, 0.85, 0.6)
        top = np.where(right, y, (y + rng.integers(1, 3, n)) % 3)
        p = np.zeros((n, 3))
        p[np.arange(n), top] = share
        p[np.arange(n), (top + 1) % 3] = 1 - share
        return p, y

    class TemperatureOnly(TemperatureScaling):
        EPS_GRID = (1e-4,)

    cal_p, cal_y = votes(3000)
    ts = TemperatureScaling().fit(cal_p, cal_y)
    assert ts.smoothing > 1e-3  # a class without votes keeps some probability
    test_p, test_y = votes(3000)
    before = expected_calibration_error(test_p, test_y)
    plain_ts = TemperatureOnly().fit(cal_p, cal_y)
    plain = expected_calibration_error(plain_ts.transform(test_p), test_y)
    after = expected_calibration_error(ts.transform(test_p), test_y)
    assert before > 0.12 and after < 0.07 and after < plain - 0.02
    again = TemperatureScaling.from_state(*ts.get_state())
    np.testing.assert_array_equal(again.transform(test_p), ts.transform(test_p))


def test_temperature_prior_shrinks_small_fits_towards_the_heads_own_scale() -> None:
    # 30 held-out rows of a 4x overconfident model: the penalised fit moves less far
    # from T=1 than the plain maximum-likelihood one, but still the right way.
    proba, y = _overconfident(30, true_t=4.0, seed=3)
    plain = TemperatureScaling(prior_sd=None).fit(proba, y)
    shrunk = TemperatureScaling().fit(proba, y)
    assert 1.0 < shrunk.temperature < plain.temperature
    # With thousands of rows the prior is negligible.
    proba, y = _overconfident(4000)
    big_plain = TemperatureScaling(prior_sd=None).fit(proba, y).temperature
    assert TemperatureScaling().fit(proba, y).temperature == pytest.approx(big_plain, rel=0.01)


def test_softmax_heads_keep_the_smoothing_floor() -> None:
    proba, y = _overconfident(400)
    ts = TemperatureScaling(fit_smoothing=False).fit(proba, y)
    assert ts.smoothing == 1e-4
    cal, _ = fit_calibrator("temperature", proba, y, zero_probabilities=False)
    assert cal.smoothing == 1e-4 and cal.temperature == pytest.approx(ts.temperature)
    assert KNNHead.zero_probabilities and not LogisticRegressionHead.zero_probabilities


def test_insignificant_temperature_leaves_probabilities_alone() -> None:
    # 40 held-out rows from fold models at chance: labels independent of the
    # probabilities. A maximum-likelihood temperature still moves far from 1 (it fits
    # the noise); the likelihood-ratio test keeps the head's own probabilities.
    rng = np.random.default_rng(0)
    proba = _softmax(rng.normal(0, 0.3, (40, 5)))
    y = rng.integers(0, 5, 40)
    assert abs(np.log(TemperatureScaling(prior_sd=None).fit(proba, y).temperature)) > 0.5
    cal, why = fit_calibrator("temperature", proba, y, zero_probabilities=False)
    assert isinstance(cal, IdentityCalibration)
    assert "no significant improvement" in why and "40 held-out" in why
    # Clear evidence (4000 overconfident rows) passes the test.
    cal, why = fit_calibrator("temperature", *_overconfident(4000))
    assert isinstance(cal, TemperatureScaling) and why is None and cal.evidence_ > 100


def test_isotonic_lowers_ece_and_round_trips() -> None:
    proba, y = _overconfident(4000)
    iso = IsotonicCalibration().fit(proba, y)
    test_p, test_y = _overconfident(4000, seed=1)
    out = iso.transform(test_p)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert expected_calibration_error(out, test_y) < 0.05
    config, arrays = iso.get_state()
    json.dumps(config)
    again = IsotonicCalibration.from_state(config, arrays)
    np.testing.assert_array_equal(again.transform(test_p), out)


def test_fit_calibrator_fallbacks() -> None:
    proba, y = _overconfident(60, k=3)
    cal, why = fit_calibrator("isotonic", proba, y)
    assert isinstance(cal, TemperatureScaling) and "isotonic needs 30" in why
    cal, why = fit_calibrator("isotonic", *_overconfident(600, k=3))
    assert isinstance(cal, IsotonicCalibration) and why is None
    nothing = np.full((4, 3), np.nan)
    cal, why = fit_calibrator("temperature", nothing, np.arange(4) % 3)
    assert isinstance(cal, IdentityCalibration) and "uncalibrated" in why
    with pytest.raises(UsageError, match="unknown calibration 'platt'"):
        fit_calibrator("platt", proba, y)


# -- out-of-fold predictions ------------------------------------------------------------------
def test_fold_ids_are_stratified_and_keep_every_class_in_training() -> None:
    y = np.array([0] * 8 + [1] * 3 + [2])
    folds = fold_ids(y, 5, random_state=0)
    assert (folds[y == 2] == -1).all()  # a single example is never held out
    assert (folds[y != 2] >= 0).all()
    for f in range(5):
        held = folds == f
        for c in (0, 1):
            assert ((y == c) & ~held).any()  # training part keeps the class
        assert (np.bincount(y[held], minlength=3) <= [2, 1, 0]).all()
    assert (fold_ids(np.arange(4), 5) == -1).all()  # all singletons: nothing to hold out


def test_out_of_fold_proba_never_trains_on_the_row() -> None:
    Z, y = _blobs(6)
    extra = (np.eye(3, 8, dtype=np.float32) * 2.0, np.arange(3))
    proba, held = out_of_fold_proba(KNNHead(k=1), Z, y, 3, n_splits=3, extra=extra)
    assert held.all() and proba.shape == (18, 3)
    # 1-NN on a training row would always find itself; held out it finds a neighbour.
    assert (proba.argmax(1) == y).mean() > 0.9
    Z2 = np.concatenate([Z, Z[:1] + 5.0])
    y2 = np.append(y, 3)  # a class with one row
    proba2, held2 = out_of_fold_proba(CentroidHead(), Z2, y2, 4, n_splits=3)
    assert not held2[-1] and np.isnan(proba2[-1]).all()
    # The single row of class 3 stays in every fold's training part.
    assert (proba2[held2, 3] > 0).all()
    np.testing.assert_allclose(proba2[held2].sum(axis=1), 1.0, rtol=1e-5)


def test_logreg_fold_clone_keeps_penalty_per_example() -> None:
    head = LogisticRegressionHead(C=2.0)
    assert head.for_subsample(0.8).C == 2.5
    assert KNNHead(k=3).for_subsample(0.5).get_params() == KNNHead(k=3).get_params()


# -- the classifier ---------------------------------------------------------------------------
@pytest.fixture
def calibrated(tiny_text_encoder) -> FewShotClassifier:
    return FewShotClassifier(tiny_text_encoder, head="logreg", calibration="temperature",
                             cache=False).fit(
        TEXTS, LABELS
    )


def test_classifier_calibration(calibrated: FewShotClassifier, tiny_text_encoder) -> None:
    assert calibrated.calibration_info_["method"] == "temperature"
    assert calibrated.calibration_info_["n_held_out"] == 16
    assert calibrated.oof_proba_.shape == (16, 2) and calibrated.oof_labels_.shape == (16,)
    raw = calibrated.predict_proba(TEXTS, calibrated=False)
    plain = FewShotClassifier(tiny_text_encoder, head="logreg", calibration=None,
                              cache=False).fit(TEXTS, LABELS)
    np.testing.assert_allclose(raw, plain.predict_proba(TEXTS), atol=1e-6)
    cal = calibrated.predict_proba(TEXTS)
    assert not np.allclose(cal, raw)
    np.testing.assert_array_equal(cal.argmax(1), raw.argmax(1))
    assert plain.calibrator_ is None and plain.oof_proba_.shape[0] == 0


def test_calibrated_model_round_trips(calibrated: FewShotClassifier, tmp_path: Path) -> None:
    folder = calibrated.save(tmp_path / "m")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["calibration"]["method"] == "temperature"
    assert sorted(p.name for p in folder.iterdir()) == [
        CALIBRATION_FILE, "fewshot.json", "head.safetensors"
    ]
    loaded = FewShotClassifier.load(folder, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), calibrated.predict_proba(TEXTS))
    np.testing.assert_array_equal(loaded.oof_proba_, calibrated.oof_proba_)
    assert loaded.calibration == "temperature"
    (folder / CALIBRATION_FILE).unlink()
    with pytest.raises(ModelError, match="missing calibration.safetensors"):
        FewShotClassifier.load(folder, cache=False)
    (folder / CALIBRATION_FILE).write_bytes(b"junk")
    with pytest.raises(ModelError, match="corrupt"):
        FewShotClassifier.load(folder, cache=False)


def test_uncalibrated_folder_loads_as_before(tiny_text_encoder, tmp_path: Path) -> None:
    clf = FewShotClassifier(tiny_text_encoder, calibration=None, cache=False).fit(TEXTS, LABELS)
    folder = clf.save(tmp_path / "m")
    assert "calibration" not in json.loads((folder / MANIFEST).read_text())
    loaded = FewShotClassifier.load(folder, cache=False)
    assert loaded.calibrator_ is None
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_isotonic_on_few_examples_falls_back(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, head="logreg", calibration="isotonic", cache=False)
    clf.fit(TEXTS, LABELS)
    assert clf.calibration_info_["method"] == "temperature"
    assert "isotonic needs" in clf.calibration_info_["fallback"]
    with pytest.raises(UsageError, match="unknown calibration 'platt'"):
        FewShotClassifier(tiny_text_encoder, calibration="platt", cache=False).fit(
            TEXTS, LABELS
        )


# -- review thresholds and conformal sets -----------------------------------------------------
def test_precision_threshold_reaches_target_on_fresh_data() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int):
        conf = rng.uniform(0.3, 1.0, n)
        return conf, rng.random(n) < conf  # calibrated: right with probability conf

    t = precision_threshold(*sample(20000), target=0.9)
    # Calibrated and uniform: accepted precision is (t + 1) / 2, so t is about 0.8.
    assert t.threshold == pytest.approx(0.8, abs=0.02)
    assert t.precision >= 0.9 and t.coverage == pytest.approx(0.2 / 0.7, abs=0.03)
    conf, correct = sample(20000)
    assert correct[conf >= t.threshold].mean() == pytest.approx(0.9, abs=0.015)


def test_precision_threshold_ties_and_unreachable() -> None:
    t = precision_threshold([0.9, 0.9, 0.8, 0.7], [True, False, True, True], target=0.5)
    assert t.threshold == 0.7 and t.precision == 0.75 and t.coverage == 1.0
    t = precision_threshold([0.9, 0.9, 0.8], [True, False, True], target=0.9)
    assert math.isinf(t.threshold) and t.coverage == 0.0  # the tie cannot be split
    with pytest.raises(UsageError):
        precision_threshold([0.5], [True], target=1.5)


def test_precision_threshold_reports_a_lower_bound_that_covers() -> None:
    # Every accepted row right: Clopper-Pearson's one-sided bound is alpha ** (1 / n).
    t = precision_threshold(np.linspace(0.9, 0.99, 10), [True] * 10, target=0.9)
    assert t.n_accepted == 10 and t.precision_lower == pytest.approx(0.05 ** (1 / 10))
    # 31 of 32 right (the support example's review): 0.860.
    t = precision_threshold(np.linspace(0.6, 0.99, 32), [False] + [True] * 31, target=0.95)
    assert t.precision == pytest.approx(31 / 32) and t.precision_lower == pytest.approx(
        0.86015, abs=1e-5)
    # Weights count by their effective number: equal weights change nothing.
    w = precision_threshold(np.linspace(0.6, 0.99, 32), [False] + [True] * 31, target=0.95,
                            weight=np.full(32, 3.0))
    assert w.precision_lower == pytest.approx(t.precision_lower)
    # Over repeated held-out sets of 30 rows at true precision 0.9, the bound stays
    # below 0.9 at least 95% of the time.
    rng = np.random.default_rng(0)
    below = [precision_threshold(np.ones(30), rng.random(30) < 0.9, target=0.5).precision_lower
             <= 0.9 for _ in range(2000)]
    assert np.mean(below) >= 0.95
    # The cut is chosen on the same rows, so the bound is approximate. Calibrated held-out
    # rows (confidence uniform on 0.5-1, right with probability conf): the slice at
    # threshold t has true precision (t + 1) / 2, and the bound stays under it about 95%
    # of the time (measured 0.957 with 40 rows, 0.948 with 300).
    for n in (40, 300):
        covered = []
        for _ in range(1000):
            conf = rng.uniform(0.5, 1.0, n)
            t = precision_threshold(conf, rng.random(n) < conf, target=0.9)
            if np.isfinite(t.threshold):
                covered.append(t.precision_lower <= (t.threshold + 1) / 2)
        assert len(covered) > 900 and np.mean(covered) >= 0.93, (n, np.mean(covered))


def test_conformal_sets_cover_at_the_stated_rate() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int):
        p = rng.dirichlet(np.full(5, 0.6), n)
        return p, np.array([rng.choice(5, p=r) for r in p])

    cal_p, cal_y = sample(2000)
    q = conformal_quantile(cal_p, cal_y, 0.9)
    test_p, test_y = sample(5000)
    sets = prediction_sets(test_p, q)
    covered = sets[np.arange(len(test_y)), test_y].mean()
    assert covered == pytest.approx(0.9, abs=0.02)
    assert sets.sum(axis=1).min() >= 1 and sets.sum(axis=1).mean() < 5
    assert math.isinf(conformal_quantile(cal_p[:5], cal_y[:5], 0.9))  # too few to promise 90%


def test_fitting_the_smoothing_term_too_needs_more_evidence(monkeypatch) -> None:
    # The likelihood-ratio test has one degree of freedom per fitted parameter: a
    # statistic of 4.5 passes for T alone (> 3.841) but not for T and eps (< 5.991).
    def fit(self, proba, y_idx):
        self.temperature, self.smoothing, self.evidence_ = 0.5, 1e-3, 4.5
        return self

    monkeypatch.setattr(TemperatureScaling, "fit", fit)
    proba, y = np.tile([[0.7, 0.3]], (10, 1)), np.array([0, 1] * 5)
    calibrator, why = fit_calibrator("temperature", proba, y, zero_probabilities=False)
    assert isinstance(calibrator, TemperatureScaling) and why is None
    calibrator, why = fit_calibrator("temperature", proba, y, zero_probabilities=True)
    assert isinstance(calibrator, IdentityCalibration)
    assert "likelihood ratio 4.50 < 5.991" in why


def test_conformal_quantile_is_the_split_conformal_order_statistic() -> None:
    # Scores 1 - p(true) are 0.00, 0.01, ..., 0.31 (n = 32). At 90% coverage the
    # quantile is the ceil(33 * 0.9) = 30th smallest score: 0.29, not the 31st.
    p_true = 1.0 - np.arange(32) / 100
    proba = np.stack([p_true, 1.0 - p_true], axis=1)
    y = np.zeros(32, dtype=int)
    assert conformal_quantile(proba, y, 0.9) == pytest.approx(0.29)
    assert conformal_quantile(proba, y, 0.96) == pytest.approx(0.31)  # rank 32 = n
    assert math.isinf(conformal_quantile(proba, y, 0.97))  # rank 33 > n


def test_review_needs_out_of_fold_predictions(tiny_text_encoder, calibrated) -> None:
    plain = FewShotClassifier(tiny_text_encoder, calibration=None, cache=False).fit(TEXTS, LABELS)
    with pytest.raises(ModelError, match="retrain it with calibration"):
        review(plain, plain.predict_proba(TEXTS), target_precision=0.9)
    proba = calibrated.predict_proba(["a good film", "awful plot", "the story"])
    result = review(calibrated, proba, target_precision=0.9, conformal=0.8)
    summary = result.summary()
    assert summary["n"] == 3 and summary["n_accepted"] + summary["n_review"] == 3
    assert result.accepted.tolist() == (result.confidence >= result.threshold.threshold).tolist()
    assert result.conformal.sets.shape == (3, 2)


# -- audit ------------------------------------------------------------------------------------
def test_audit_ranks_flipped_labels_first() -> None:
    Z, y = _blobs(30, k=3, spread=0.6)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), 9, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + 1) % 3
    result = audit_labels(Z, noisy, 3)
    top = set(result.order[:9].tolist())
    assert len(top & set(flipped.tolist())) >= 8
    assert (result.suggested[flipped] == y[flipped]).mean() >= 0.8
    assert result.suspicion.shape == (90,) and not result.outlier.any()


def test_audit_duplicates_test_leaks_and_outliers() -> None:
    Z, y = _blobs(10, k=2)
    Z = np.concatenate([Z, Z[:1], -5 * np.ones((1, 8), np.float32)])
    y = np.append(y, [1, 0])  # an exact copy of row 0 with another label; a far-away row
    Z_test = np.concatenate([Z[5:6] + 1e-4, np.full((1, 8), 9.0, np.float32)])
    result = audit_labels(Z, y, 2, k=5, Z_test=Z_test, duplicate_threshold=0.999)
    assert [0, 20] in result.duplicate_groups
    assert [0, 20] in result.conflicting_groups(y)
    assert list(result.test_duplicates) == [5]
    assert result.outlier[21] and result.outlier.sum() == 1
    assert near_duplicate_groups(Z[:1]) == []


def test_audit_runs_one_knn_search_for_agreement_outliers_and_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fewshot.confidence.audit as audit

    Z, y = _blobs(10, k=2)
    Z = np.concatenate([Z, Z[:1]])
    y = np.append(y, 1)
    calls: list[int] = []
    real = audit._neighbours

    def counted(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(k)
        return real(Z, k)

    monkeypatch.setattr(audit, "_neighbours", counted)
    result = audit_labels(Z, y, 2, k=5, duplicate_threshold=0.999)
    assert calls == [5]
    # The same groups as the stand-alone search finds.
    assert result.duplicate_groups == near_duplicate_groups(Z, 0.999, k=5) == [[0, 20]]


# -- label descriptions -----------------------------------------------------------------------
DESCRIPTIONS = {"pos": "good great excellent wonderful", "neg": "bad awful terrible boring"}


def test_descriptions_give_zero_shot_accuracy(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, label_descriptions=DESCRIPTIONS, cache=False)
    clf.fit([], [])
    assert list(clf.classes_) == ["neg", "pos"]
    accuracy = (clf.predict(TEXTS) == np.array(LABELS)).mean()
    assert accuracy >= 0.8  # chance is 0.5
    one_shot = FewShotClassifier(
        tiny_text_encoder, label_descriptions=DESCRIPTIONS, calibration="temperature",
        cache=False,
    ).fit(TEXTS[:1] + TEXTS[8:9], ["pos", "neg"])
    assert one_shot.calibration_info_["method"] == "identity"  # nothing to hold out
    assert (one_shot.predict(TEXTS) == np.array(LABELS)).mean() >= 0.8


def test_descriptions_saved_and_loaded(tiny_text_encoder, tmp_path: Path) -> None:
    clf = FewShotClassifier(tiny_text_encoder, label_descriptions=DESCRIPTIONS, cache=False)
    clf.fit(TEXTS, LABELS).save(tmp_path / "m")
    loaded = FewShotClassifier.load(tmp_path / "m", cache=False)
    assert loaded.label_descriptions == DESCRIPTIONS
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_read_label_descriptions(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"pos": " good ", "neg": "bad"}))
    assert read_label_descriptions(path) == {"pos": "good", "neg": "bad"}
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"label": "pos", "description": "good"}\n\n')
    assert read_label_descriptions(lines) == {"pos": "good"}
    for text, match in [("[1, 2]", "holds a JSON list"), ("{", "not valid JSON"),
                        ('{"pos": ""}', "label 'pos' has no description"), ("{}", "no label")]:
        path.write_text(text)
        with pytest.raises(DataError, match=match):
            read_label_descriptions(path)
    with pytest.raises(DataError, match="no label-descriptions file"):
        read_label_descriptions(tmp_path / "missing.json")
    lines.write_text('{"label": "pos", "description": "good"}\n{"label": "neg",\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON .* one JSON object"):
        read_label_descriptions(lines)
    path.write_bytes('{"pos": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        read_label_descriptions(path)
    with pytest.raises(DataError, match="must map label"):
        check_label_descriptions(["pos"])  # type: ignore[arg-type]


# -- self-training ----------------------------------------------------------------------------
def test_select_pseudo_labels_is_class_balanced() -> None:
    proba = np.array([
        [0.99, 0.01], [0.97, 0.03], [0.95, 0.05], [0.6, 0.4], [0.02, 0.98], [0.5, 0.5],
    ])
    available = np.ones(6, bool)
    rows, labels = select_pseudo_labels(proba, 0.9, per_class=5, available=available)
    # Class 1 has one confident row, so each class gets one: the most confident.
    assert sorted(zip(rows.tolist(), labels.tolist(), strict=True)) == [(0, 0), (4, 1)]
    available[4] = False
    rows, _ = select_pseudo_labels(proba, 0.9, per_class=5, available=available)
    assert len(rows) == 0


def test_self_train_adds_rounds_and_improves_a_weak_start() -> None:
    Z, y = _blobs(200, k=3, spread=0.9, seed=2)
    labelled = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(3)])
    pool_rows = np.setdiff1d(np.arange(len(y)), labelled)
    pool, pool_y = Z[pool_rows], y[pool_rows]
    head = LogisticRegressionHead()
    added_right: list[float] = []

    def fit(rows: np.ndarray, labels: np.ndarray):
        if len(rows):
            added_right.append(float((labels == pool_y[rows]).mean()))
        model = head.for_subsample(1.0).fit(
            np.concatenate([Z[labelled], pool[rows]]), np.concatenate([y[labelled], labels])
        )
        return model.predict_proba

    _, report = self_train(fit, pool, rounds=3, threshold=0.5, per_class=20)
    assert [r["added"] for r in report.rounds] == [60, 60, 60] and report.added == 180
    assert min(added_right) > 0.9
    assert report.rounds[0]["per_class"] == {"0": 20, "1": 20, "2": 20}


def test_classifier_self_training(tiny_text_encoder) -> None:
    pool = ["good good film", "great great movie", "awful awful plot", "terrible bad film",
            "the best actor", "the worst actor", "a story"]
    clf = FewShotClassifier(
        tiny_text_encoder, calibration="temperature", pseudo_label_threshold=0.5,
        self_training_rounds=2, pseudo_labels_per_class=1, cache=False,
    ).fit(TEXTS, LABELS, unlabelled=pool)
    report = clf.self_training_
    assert report["pool"] == 7 and report["added"] == 4
    assert [r["per_class"] for r in report["rounds"]] == [{"neg": 1, "pos": 1}] * 2
    with pytest.raises(UsageError, match="set calibration"):
        FewShotClassifier(tiny_text_encoder, calibration=None, cache=False).fit(
            TEXTS, LABELS, unlabelled=pool)


def test_descriptions_need_text(tiny_image_encoder, image_folder: Path) -> None:
    paths = sorted(image_folder.rglob("*.png"))
    clf = FewShotClassifier(tiny_image_encoder, label_descriptions={"red": "a red square"},
                            cache=False)
    with pytest.raises(UsageError, match="text data only"):
        clf.fit(paths, [p.parent.name for p in paths])


def test_description_for_a_label_without_examples_warns(tiny_text_encoder) -> None:
    # A misspelt key ("positive" for "pos") would silently become a class of its own.
    typo = {"positive": DESCRIPTIONS["pos"], "neg": DESCRIPTIONS["neg"]}
    clf = FewShotClassifier(tiny_text_encoder, label_descriptions=typo, cache=False)
    with pytest.warns(UserWarning, match=r"labels with no examples \('positive'\)"):
        clf.fit(TEXTS, LABELS)
    assert list(clf.classes_) == ["neg", "pos", "positive"]


def test_self_training_keeps_pseudo_labels_out_of_the_calibration_folds(
    tiny_text_encoder,
) -> None:
    """Pseudo-labels come from a model that saw every labelled row: in the folds they
    would hand each held-out row its own label back."""
    from conftest import TINY_VOCAB

    rng = np.random.default_rng(0)
    texts = sorted({" ".join(rng.choice(TINY_VOCAB, 4)) for _ in range(80)})[:60]
    labels = rng.choice(["a", "b", "c"], len(texts)).tolist()  # no signal at all
    clf = FewShotClassifier(tiny_text_encoder, head="logreg", calibration="temperature",
                            pseudo_label_threshold=0.0, pseudo_labels_per_class=20,
                            self_training_rounds=2, cache=False)
    clf.fit(texts, labels, unlabelled=texts)  # the pool holds copies of the labelled rows
    assert clf.self_training_["added"] > 0
    oof_accuracy = float(np.mean(clf.oof_proba_.argmax(1) == clf.oof_labels_))
    base = FewShotClassifier(tiny_text_encoder, head="logreg", calibration="temperature",
                             cache=False).fit(texts, labels)
    np.testing.assert_allclose(clf.oof_proba_, base.oof_proba_, rtol=1e-6)
    assert oof_accuracy < 0.5


def test_review_refuses_thresholds_from_one_class(tiny_text_encoder) -> None:
    texts = [t for t, _ in SENTIMENT]
    labels = ["pos"] * (len(texts) - 2) + ["neg", "other"]
    clf = FewShotClassifier(tiny_text_encoder, calibration="temperature",
                            cache=False).fit(texts, labels)
    with pytest.raises(ModelError, match="only examples of 'pos' could be held out"):
        review(clf, clf.predict_proba(texts), target_precision=0.9)


def test_description_keys_match_int_labels(tiny_text_encoder) -> None:
    texts = [t for t, _ in SENTIMENT]
    labels = [1 if y == "pos" else 0 for _, y in SENTIMENT]
    descriptions = {"1": "good great excellent", "0": "bad awful terrible"}  # as JSON gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 'labels with no examples' warning
        clf = FewShotClassifier(tiny_text_encoder, label_descriptions=descriptions,
                                cache=False).fit(texts, labels)
    assert clf.classes_.tolist() == [0, 1]
    assert set(clf.predict(texts).tolist()) <= {0, 1}


def test_review_threshold_is_honest_with_isotonic_calibration() -> None:
    """An isotonic map scores its own rows too well; thresholds come from cross-fitted maps.

    Calibrated held-out rows (right with probability = confidence); the precision of
    what is accepted is measured on fresh rows from the same distribution.
    """
    import types

    from fewshot.confidence.calibration import IsotonicCalibration

    def draw(rng, n):
        s = rng.uniform(0.5, 1.0, n)
        pred = rng.integers(0, 2, n)
        y = np.where(rng.random(n) < s, pred, 1 - pred)
        proba = np.empty((n, 2))
        proba[np.arange(n), pred], proba[np.arange(n), 1 - pred] = s, 1 - s
        return proba, y, s

    precisions = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        oof, y, _ = draw(rng, 120)
        cal = IsotonicCalibration().fit(oof, y)
        clf = types.SimpleNamespace(oof_proba_=oof, oof_labels_=y, calibrator_=cal,
                                    calibrate=cal.transform, classes_=np.array(["a", "b"]),
                                    class_prior_=None)
        test, _, s = draw(rng, 4000)
        accepted = review(clf, cal.transform(test), target_precision=0.9).accepted
        if accepted.any():
            precisions.append(s[accepted].mean())
    assert len(precisions) >= 30
    assert np.mean(precisions) >= 0.89  # in-sample isotonic thresholds gave 0.87


# -- multi-label: per-label Platt maps --------------------------------------------------------
def _platt_data(n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities of 3 labels whose truth is sigmoid(a * logit(p) + b), known a and b."""
    rng = np.random.default_rng(0)
    a, b = np.array([2.0, 0.5, 1.0]), np.array([-1.0, 0.5, 0.0])
    z = rng.normal(-1.0, 1.5, (n, 3))
    truth = 1 / (1 + np.exp(-(a * z + b)))
    Y = (rng.uniform(size=(n, 3)) < truth).astype(np.int64)
    return 1 / (1 + np.exp(-z)), Y, a, b


def test_label_calibration_recovers_each_labels_map() -> None:
    P, Y, a, b = _platt_data()
    raw = fit_label_calibrator("platt_per_label_raw", P, Y)
    np.testing.assert_allclose(raw.a, a, atol=0.15)
    np.testing.assert_allclose(raw.b, b, atol=0.15)
    shared = fit_label_calibrator("platt", P, Y)
    assert np.ptp(shared.a) == 0 and np.ptp(shared.b) == 0  # one map for every label
    # Shrinkage pulls each label's map towards the shared one, the more so on few rows.
    for rows in (P.shape[0], 60):
        raw_few = fit_label_calibrator("platt_per_label_raw", P[:rows], Y[:rows])
        shrunk = fit_label_calibrator("platt_per_label", P[:rows], Y[:rows])
        centre = fit_label_calibrator("platt", P[:rows], Y[:rows])
        gap = np.hypot(shrunk.a - centre.a, shrunk.b - centre.b)
        assert np.all(gap < np.hypot(raw_few.a - centre.a, raw_few.b - centre.b))
    assert np.all(gap < 0.5)  # 60 rows: close to the shared map
    none = fit_label_calibrator("none", P, Y)
    np.testing.assert_array_equal(none.transform(P), P.astype(np.float32))
    # The fitted map lowers the per-label Brier score of the data it describes.
    assert ((raw.transform(P) - Y) ** 2).mean() < ((P - Y) ** 2).mean() - 0.005
    config, arrays = raw.get_state()
    again = LabelCalibration.from_state(config, arrays)
    np.testing.assert_array_equal(again.transform(P), raw.transform(P))
    # Vote shares of exactly 0 and 1 stay finite.
    assert np.isfinite(raw.transform(np.array([[0.0, 1.0, 0.5]]))).all()
    with pytest.raises(UsageError) as exc:
        LabelCalibration("isotonic")
    assert str(exc.value) == ("unknown label calibration 'isotonic'; choose one of none, platt, "
                              "platt_per_label, platt_per_label_raw")
