"""Heads: the scikit-learn classifier contract, exact behaviour, and array-only saving."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import ALL_HEADS
from safetensors.numpy import load, save
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fewshot.errors import UsageError
from fewshot.heads import (
    HEADS,
    AutoHead,
    CentroidHead,
    Head,
    KNNHead,
    LogisticRegressionHead,
    make_head,
)

LABELS = ["zebra", "ant", "moth"]  # deliberately not in sorted order
#: Every head, ``auto`` with its default settings and with three folds.
HEADS_HERE = [*ALL_HEADS, pytest.param(lambda: AutoHead(), id="auto"),
              pytest.param(lambda: AutoHead(folds=3, random_state=1), id="auto-3-folds")]


def _blobs(n_per: int = 10, dim: int = 16, seed: int = 0, spread: float = 0.6):
    """Three separable clusters with string labels, rows interleaved."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(LABELS), dim)) * 2
    X = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centers])
    y = np.repeat(LABELS, n_per)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


@pytest.fixture(scope="module")
def blobs():
    X, y = _blobs(seed=0)
    Xq, yq = _blobs(n_per=5, seed=0)  # same centers (same seed), fresh-ish noise
    rng = np.random.default_rng(1)
    Xq = Xq + 0.1 * rng.normal(size=Xq.shape).astype(np.float32)
    return X, y, Xq, yq



# -- the classifier contract ----------------------------------------------------------
@pytest.mark.parametrize("make", HEADS_HERE)
def test_contract(make, blobs) -> None:
    X, y, Xq, yq = blobs
    head = make()
    assert head.fit(X, y) is head
    assert list(head.classes_) == sorted(LABELS)
    assert head.n_features_in_ == X.shape[1]

    proba = head.predict_proba(Xq)
    assert proba.shape == (len(Xq), 3)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)

    pred = head.predict(Xq)
    np.testing.assert_array_equal(pred, head.classes_[proba.argmax(axis=1)])
    assert set(pred) <= set(LABELS)
    assert all(isinstance(p, str) for p in pred.tolist())  # labels come back unchanged
    assert np.mean(pred == yq) >= 0.9  # the blobs are separable
    assert head.score(Xq, yq) == pytest.approx(np.mean(pred == yq))


@pytest.mark.parametrize("make", HEADS_HERE)
def test_proba_columns_follow_classes(make, blobs) -> None:
    X, y, _, _ = blobs
    head = make().fit(X, y)
    for label in LABELS:
        centre = X[y == label].mean(axis=0, keepdims=True)
        col = list(head.classes_).index(label)
        assert head.predict_proba(centre).argmax() == col
        assert head.predict(centre)[0] == label


@pytest.mark.parametrize("make", HEADS_HERE)
def test_non_string_labels_kept(make, blobs) -> None:
    X, y, Xq, _ = blobs
    y_int = np.array([{"zebra": 30, "ant": 10, "moth": 20}[v] for v in y])
    head = make().fit(X, y_int)
    assert head.classes_.tolist() == [10, 20, 30]
    assert set(head.predict(Xq).tolist()) <= {10, 20, 30}


@pytest.mark.parametrize("make", HEADS_HERE)
def test_unfitted_and_wrong_width(make, blobs) -> None:
    X, y, _, _ = blobs
    head = make()
    with pytest.raises(NotFittedError):
        head.predict(X)
    with pytest.raises(NotFittedError):
        head.predict_proba(X)
    head.fit(X, y)
    with pytest.raises(ValueError, match="X has 15 features, but .* is expecting 16"):
        head.predict(X[:, :15])


# -- exact behaviour ------------------------------------------------------------------
def test_logreg_matches_sklearn(blobs) -> None:
    X, y, Xq, _ = blobs
    head = LogisticRegressionHead().fit(X, y)
    ref = LogisticRegression(C=1, max_iter=1000, random_state=0).fit(X, y)
    assert head.classes_.tolist() == ref.classes_.tolist()
    np.testing.assert_allclose(head.predict_proba(Xq), ref.predict_proba(Xq), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(head.predict(Xq), ref.predict(Xq))
    assert head.n_iter_ is not None


def test_logreg_needs_two_classes() -> None:
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="logistic regression needs at least 2 classes, got 1"):
        LogisticRegressionHead().fit(X, ["a", "a", "a"])


def test_logreg_binary(blobs) -> None:
    X, y, Xq, _ = blobs
    keep = y != "moth"
    head = LogisticRegressionHead().fit(X[keep], y[keep])
    ref = LogisticRegression(C=1, max_iter=1000, random_state=0).fit(X[keep], y[keep])
    np.testing.assert_allclose(head.predict_proba(Xq), ref.predict_proba(Xq), rtol=1e-5, atol=1e-6)


def test_knn_k1_predicts_nearest_neighbour_label() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.array([f"c{i % 7}" for i in range(40)])
    Q = rng.normal(size=(25, 8)).astype(np.float32)
    head = KNNHead(k=1).fit(X, y)
    cos = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (
        X / np.linalg.norm(X, axis=1, keepdims=True)
    ).T
    np.testing.assert_array_equal(head.predict(Q), y[cos.argmax(axis=1)])
    proba = head.predict_proba(Q)
    assert set(np.unique(proba)) <= {0.0, 1.0}


def test_knn_exact_training_point_gets_its_label() -> None:
    X, y = _blobs(seed=5, spread=3.0)  # overlapping clusters
    head = KNNHead(k=1).fit(X, y)
    np.testing.assert_array_equal(head.predict(X), y)


def _two_vs_one():
    """Query right next to one 'a' point, with two 'b' points further away."""
    X = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]], dtype=np.float32)
    y = np.array(["a", "b", "b", "c"])
    q = np.array([[0.99, 0.01]], dtype=np.float32)
    return X, y, q


def test_knn_uniform_counts_votes() -> None:
    X, y, q = _two_vs_one()
    head = KNNHead(k=3, weights="uniform").fit(X, y)
    np.testing.assert_allclose(head.predict_proba(q), [[1 / 3, 2 / 3, 0.0]], rtol=1e-6)
    assert head.predict(q)[0] == "b"


def test_knn_distance_weights_by_inverse_cosine_distance() -> None:
    X, y, q = _two_vs_one()
    head = KNNHead(k=3, weights="distance").fit(X, y)
    qn = q / np.linalg.norm(q)
    w = 1.0 / (1.0 - (X[:3] / np.linalg.norm(X[:3], axis=1, keepdims=True)) @ qn[0])
    expected = np.array([w[0], w[1] + w[2], 0.0]) / w.sum()
    np.testing.assert_allclose(head.predict_proba(q)[0], expected, rtol=1e-4)
    assert head.predict(q)[0] == "a"


def test_knn_k_larger_than_support() -> None:
    X, y, q = _two_vs_one()
    proba = KNNHead(k=50, weights="uniform").fit(X, y).predict_proba(q)
    np.testing.assert_allclose(proba, [[0.25, 0.5, 0.25]], rtol=1e-6)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 0}, "k must be at least 1, got 0"),
        ({"weights": "gaussian"}, "weights must be 'distance' or 'uniform', got 'gaussian'"),
    ],
)
def test_knn_bad_params(params, message, blobs) -> None:
    X, y, _, _ = blobs
    with pytest.raises(ValueError, match=message):
        KNNHead(**params).fit(X, y)


@pytest.mark.parametrize(
    ("head", "params", "message"),
    [
        ("knn", {"k": 0}, "head 'knn': k must be at least 1, got 0; pick another value"),
        ("centroid", {"temperature": -1.0},
         "head 'centroid': temperature must be a positive number, got -1.0 (a negative one "
         "would favour the farthest class); pick another value"),
        ("centroid", {"temperature": 0}, "temperature must be a positive number, got 0"),
        ("logreg", {"C": 0.0}, "head 'logreg': C must be a positive number, got 0.0"),
    ],
)
def test_settings_out_of_range_are_usage_errors_before_fitting(head, params, message,
                                                               blobs) -> None:
    with pytest.raises(UsageError) as exc:
        make_head(head, **params)
    assert message in str(exc.value)
    # Set directly on an instance, fit refuses it the scikit-learn way.
    X, y, _, _ = blobs
    core = message.removeprefix(f"head '{head}': ").split(" (")[0].split(";")[0]
    with pytest.raises(ValueError, match=re.escape(core)):
        make_head(head).set_params(**params).fit(X, y)


def test_negative_centroid_temperature_never_reaches_predictions(blobs) -> None:
    X, y, Xt, yt = blobs
    # A positive one scores well above chance on these blobs.
    assert (CentroidHead(temperature=5.0).fit(X, y).predict(Xt) == yt).mean() > 0.9
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        CentroidHead(temperature=-5.0).fit(X, y)


def test_centroid_is_cosine_to_class_means() -> None:
    X = np.array([[2, 0], [4, 0.2], [0, 1], [0.1, 3]], dtype=np.float32)
    y = np.array(["x", "x", "y", "y"])
    head = CentroidHead(temperature=1.0).fit(X, y)
    q = np.array([[1.0, 1.0]], dtype=np.float32)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    Z = unit(X)
    cents = unit(np.stack([Z[:2].mean(0), Z[2:].mean(0)]))
    logits = unit(q) @ cents.T
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(head.predict_proba(q), expected, rtol=1e-5)


def test_centroid_center_differs_from_plain() -> None:
    # A large shared offset makes every raw embedding nearly parallel; SimpleShot's
    # centring removes it.
    rng = np.random.default_rng(0)
    offset = np.full(8, 10.0)
    a = offset + rng.normal(size=(10, 8)) + np.eye(8)[0] * 1.5
    b = offset + rng.normal(size=(10, 8)) - np.eye(8)[0] * 1.5
    X = np.concatenate([a, b]).astype(np.float32)
    y = np.array(["a"] * 10 + ["b"] * 10)
    plain = CentroidHead().fit(X, y)
    cl2n = CentroidHead(center=True).fit(X, y)
    np.testing.assert_allclose(cl2n.mean_, X.mean(axis=0), rtol=1e-5)
    assert not np.any(plain.mean_)
    p_plain, p_cl2n = plain.predict_proba(X), cl2n.predict_proba(X)
    assert not np.allclose(p_plain, p_cl2n)
    # Centring sharpens the decision: the true-class margin grows on average.
    idx = (y == "b").astype(int)
    assert p_cl2n[np.arange(20), idx].mean() > p_plain[np.arange(20), idx].mean()
    assert np.mean(cl2n.predict(X) == y) >= np.mean(plain.predict(X) == y)


# -- auto: cross-validation among a centroid and balanced logistic regressions ---------
def _ordinal(n_per: int, seed: int):
    """Three classes along one direction (-1, 0, +1) under five noisy directions: the
    middle class has a centroid near zero after centring, so only a linear head with
    intercepts separates it."""
    rng = np.random.default_rng(seed)
    y_idx = np.repeat(np.arange(3), n_per)
    X = np.zeros((len(y_idx), 6), np.float32)
    X[:, 0] = y_idx - 1.0 + 0.15 * rng.normal(size=len(y_idx))
    X[:, 1:] = 3.0 * rng.normal(size=(len(y_idx), 5))
    return X, np.array(["lo", "mid", "hi"])[y_idx]


def _few_shot_many_classes(seed: int = 0):
    """30 classes, one with 8 examples, the others 1 or 2: the regime where the
    default logistic regression names the big class too often."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(30, 32))
    counts = np.array([8] + [1, 2] * 14 + [1])
    y = np.repeat(np.arange(30), counts)
    yq = np.repeat(np.arange(30), 20)
    X, Xq = (protos[v] + 0.8 * rng.normal(size=(len(v), 32)) for v in (y, yq))
    return X.astype(np.float32), y, Xq.astype(np.float32), yq


def _cv_by_hand(X, y, folds=5, random_state=0):
    """Each candidate's held-out accuracy, computed apart from AutoHead."""
    from fewshot.heads.base import fold_ids

    y_idx = np.unique(y, return_inverse=True)[1]
    fold = fold_ids(y_idx, folds, random_state)
    out = {}
    for name, (cls, params) in AutoHead.CANDIDATES.items():
        right = 0
        for f in np.unique(fold[fold >= 0]):
            test = fold == f
            head = cls(**params)
            if "C" in params:
                head = head.set_params(C=params["C"] * len(y) / (~test).sum())
            right += np.sum(head.fit(X[~test], y_idx[~test]).predict(X[test]) == y_idx[test])
        out[name] = right / (fold >= 0).sum()
    return out


def test_auto_fold_ids_hold_out_no_singleton_and_keep_every_class() -> None:
    from fewshot.heads.base import fold_ids

    y_idx = np.array([0] * 7 + [1] * 2 + [2])
    fold = fold_ids(y_idx, 5, 0)
    assert fold[-1] == -1  # one example: never held out
    assert sorted(np.bincount(fold[:7])) == [1, 1, 1, 2, 2]  # 7 rows dealt over 5 folds
    assert sorted(fold[7:9].tolist()) == sorted(set(fold[7:9].tolist()))  # 2 rows, 2 folds
    for f in range(5):
        assert set(y_idx[fold != f]) == {0, 1, 2}
    assert (fold_ids(np.arange(4), 5, 0) == -1).all()  # all singletons: nothing held out


def test_auto_picks_logreg_where_centroids_cannot_separate() -> None:
    X, y = _ordinal(20, seed=0)
    Xq, yq = _ordinal(100, seed=1)
    head = AutoHead().fit(X, y)
    expected = _cv_by_hand(X, y)
    assert head.cv_accuracy_ == pytest.approx(expected)
    assert head.chosen_ == max(expected, key=expected.get) == "logreg C=10"
    assert expected["centroid"] < 0.6 < 0.9 < expected["logreg C=10"]
    ref = LogisticRegressionHead(C=10.0, class_weight="balanced").fit(X, y)
    np.testing.assert_array_equal(head.predict_proba(Xq), ref.predict_proba(Xq))
    assert np.mean(head.predict(Xq) == yq) >= 0.95
    assert np.mean(CentroidHead(center=True).fit(X, y).predict(Xq) == yq) < 0.6


def test_auto_picks_the_centroid_on_one_or_two_examples_per_class() -> None:
    X, y, Xq, yq = _few_shot_many_classes()
    head = AutoHead().fit(X, y)
    assert head.chosen_ == "centroid"
    ref = CentroidHead(center=True).fit(X, y)
    np.testing.assert_array_equal(head.predict_proba(Xq), ref.predict_proba(Xq))
    auto_acc = np.mean(head.predict(Xq) == yq)
    plain = np.mean(LogisticRegressionHead().fit(X, y).predict(Xq) == yq)
    assert auto_acc >= plain + 0.05  # 0.96 against 0.89


def test_auto_with_one_example_per_class_is_the_centroid() -> None:
    X, _, _, _ = _few_shot_many_classes()
    X, y = X[:4], np.array(["d", "c", "b", "a"])
    head = AutoHead().fit(X, y)
    assert head.chosen_ == "centroid" and head.cv_accuracy_ == {}
    np.testing.assert_array_equal(head.predict(X), y)


def test_auto_cross_validates_from_24_rows_and_3_per_class() -> None:
    X, y = _ordinal(8, seed=0)  # 24 rows, 8 per class
    assert set(AutoHead().fit(X, y).cv_accuracy_) == set(AutoHead.CANDIDATES)
    assert AutoHead().fit(X[1:], y[1:]).cv_accuracy_ == {}  # 23 rows: few
    keep = np.r_[0:2, 8:10, 16:24]  # 12 rows, median 2 per class: few
    assert AutoHead(few_rows=0).fit(X[keep], y[keep]).chosen_ == "centroid"
    assert AutoHead(few_rows=0).fit(X[np.r_[0:3, 8:11, 16:19]], y[np.r_[0:3, 8:11, 16:19]]
                                    ).cv_accuracy_ != {}  # 3 per class: cross-validated
    fold = AutoHead().for_subsample(0.8)
    assert (fold.few_rows, fold.few_per_class) == pytest.approx((19.2, 2.4))
    fitted = AutoHead().fit(*_ordinal(20, seed=0))  # chooses logreg C=10
    fold = fitted.for_subsample(0.8)  # the choice, regularised for 80% of the rows
    assert isinstance(fold, LogisticRegressionHead) and not hasattr(fold, "classes_")
    assert (fold.C, fold.class_weight) == (12.5, "balanced")


@pytest.mark.parametrize("data", ["ordinal", "few"])
def test_auto_state_round_trip_names_the_choice(data) -> None:
    X, y = _ordinal(20, 0) if data == "ordinal" else _few_shot_many_classes()[:2]
    head = AutoHead().fit(X, y)
    config, arrays = head.get_state()
    config2 = json.loads(json.dumps(config))
    assert config2["chosen"]["name"] == head.chosen_
    restored = HEADS["auto"].from_state(config2, load(save(arrays)))
    assert restored.chosen_ == head.chosen_
    assert type(restored.head_) is type(head.head_)
    np.testing.assert_array_equal(restored.predict_proba(X), head.predict_proba(X))
    for bad in ({"chosen": None}, {"chosen": {**config["chosen"], "type": "svm"}},
                {"chosen": {"name": "x", "type": "logreg"}}):
        with pytest.raises(ValueError, match="its chosen head .* is not one of centroid, "
                                             "logreg with its name and params"):
            AutoHead.from_state({**config2, **bad}, arrays)


def test_auto_multi_label_follows_the_positives_per_label() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    Y = (X[:, :3] > 0).astype(int)  # about 20 positives per label
    head = AutoHead().fit(X, Y)
    assert head.multi_label_ and head.chosen_ == "logreg C=1"
    np.testing.assert_array_equal(head.predict_proba(X),
                                  LogisticRegressionHead(C=1.0).fit(X, Y).predict_proba(X))
    few = AutoHead().fit(X[:4], Y[:4])  # at most 4 positives per label, below 5 folds
    assert few.chosen_ == "centroid"
    config, arrays = few.get_state()
    restored = AutoHead.from_state(json.loads(json.dumps(config)), load(save(arrays)))
    np.testing.assert_array_equal(restored.predict_proba(X), few.predict_proba(X))


def test_auto_bad_folds_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="head 'auto': folds must be at least 2, got 1"):
        make_head("auto", folds=1)
    with pytest.raises(UsageError, match="head 'auto': few_rows must be a number, 0 or more"):
        make_head("auto", few_rows=-1)


# -- saving as arrays -----------------------------------------------------------------
@pytest.mark.parametrize("make", HEADS_HERE)
def test_state_round_trip_through_safetensors(make, blobs) -> None:
    X, y, Xq, _ = blobs
    head = make().fit(X, y)
    config, arrays = head.get_state()
    assert config["type"] == head.name
    assert config["classes"] == sorted(LABELS)
    assert all(isinstance(a, np.ndarray) for a in arrays.values())

    config2 = json.loads(json.dumps(config))  # must be plain JSON
    arrays2 = load(save(arrays))
    restored = HEADS[config2["type"]].from_state(config2, arrays2)
    assert type(restored) is type(head)
    assert restored.get_params() == head.get_params()
    np.testing.assert_array_equal(restored.classes_, head.classes_)
    np.testing.assert_array_equal(restored.predict_proba(Xq), head.predict_proba(Xq))
    np.testing.assert_array_equal(restored.predict(Xq), head.predict(Xq))


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64, np.float32, np.bool_])
def test_state_round_trip_keeps_the_label_dtype(dtype, blobs) -> None:
    X, y, Xq, _ = blobs
    labels = (np.unique(y, return_inverse=True)[1] % 2).astype(dtype)
    head = LogisticRegressionHead().fit(X, labels)
    config, arrays = head.get_state()
    restored = LogisticRegressionHead.from_state(json.loads(json.dumps(config)), arrays)
    assert restored.classes_.dtype == np.dtype(dtype)  # int32 stays int32, not int64
    assert restored.predict(Xq).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(restored.predict(Xq), head.predict(Xq))
    text = LogisticRegressionHead().fit(X, y).get_state()[0]
    assert "classes_dtype" not in text  # string labels need no dtype
    for tampered in ({"classes_dtype": "<U3"},  # not numeric
                     {"classes": [0, 200], "classes_dtype": "|i1"},  # too narrow: overflow
                     {"classes": [0.5, 1.5], "classes_dtype": "<i4"}):  # would truncate
        with pytest.raises(ValueError, match="classes_dtype .* in fewshot.json does not hold"):
            LogisticRegressionHead.from_state({**config, **tampered}, arrays)


def test_get_state_needs_fit() -> None:
    with pytest.raises(NotFittedError):
        KNNHead().get_state()


# -- scikit-learn composition ---------------------------------------------------------
@pytest.mark.parametrize("make", HEADS_HERE)
def test_clone(make, blobs) -> None:
    X, y, _, _ = blobs
    head = make().fit(X, y)
    copy = clone(head)
    assert type(copy) is type(head)
    assert copy.get_params() == head.get_params()
    assert not hasattr(copy, "classes_")


@pytest.mark.parametrize("make", HEADS_HERE)
def test_pipeline_with_scaler(make, blobs) -> None:
    X, y, Xq, yq = blobs
    pipe = make_pipeline(StandardScaler(), make()).fit(X, y)
    assert isinstance(pipe, Pipeline)
    proba = pipe.predict_proba(Xq)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pipe.predict(Xq), pipe.classes_[proba.argmax(axis=1)])
    assert pipe.score(Xq, yq) >= 0.9


def test_grid_search_over_knn_k(blobs) -> None:
    X, y, Xq, _ = blobs
    search = GridSearchCV(KNNHead(weights="uniform"), {"k": [1, 3, 5]}, cv=3).fit(X, y)
    assert search.best_params_["k"] in (1, 3, 5)
    assert set(search.cv_results_["param_k"]) == {1, 3, 5}
    assert search.best_score_ >= 0.9
    assert isinstance(search.best_estimator_, KNNHead)
    assert search.best_estimator_.k == search.best_params_["k"]
    assert search.predict(Xq).shape == (len(Xq),)


def test_grid_search_over_knn_k_from_np_arange(blobs) -> None:
    # np.arange gives numpy integers; every fold must fit and score (no nan error_score).
    X, y, _, _ = blobs
    search = GridSearchCV(KNNHead(weights="uniform"), {"k": np.arange(1, 4)}, cv=3,
                          error_score="raise").fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_score_ >= 0.9


# -- make_head ------------------------------------------------------------------------
def test_make_head_by_name() -> None:
    assert isinstance(make_head("knn"), KNNHead)
    assert isinstance(make_head("centroid", center=True), CentroidHead)
    assert make_head("centroid", center=True).center is True
    assert make_head("logreg", C=3.0).C == 3.0
    assert make_head("auto", folds=3).folds == 3
    assert set(HEADS) == {"knn", "centroid", "logreg", "auto"}


def test_make_head_from_instance() -> None:
    head = KNNHead(k=2)
    assert make_head(head) is head
    assert make_head(head, k=7).k == 7
    assert head.k == 2  # the settings go to a copy; the caller's head is unchanged
    # The same checks as by name (they were sklearn's ValueError, or none at all).
    with pytest.raises(UsageError, match="head 'knn' has no setting foo; its settings are"):
        make_head(head, foo=1)
    with pytest.raises(UsageError, match="head 'knn' setting k takes a whole number, got 'seven'"):
        make_head(head, k="seven")


def test_make_head_unknown_setting_names_the_settings() -> None:
    with pytest.raises(UsageError) as exc:
        make_head("knn", foo=1)
    assert str(exc.value) == (
        "head 'knn' has no setting foo; its settings are index, k, weights"
    )


def test_make_head_unknown_names_choices() -> None:
    with pytest.raises(UsageError) as exc:
        make_head("nope")
    assert str(exc.value) == "unknown head 'nope'; choose one of auto, centroid, knn, logreg"
    assert isinstance(exc.value, ValueError) and exc.value.exit_code == 2


# -- scikit-learn's own estimator checks ----------------------------------------------
def _expected_failures(estimator: Head) -> dict[str, str]:
    if isinstance(estimator, KNNHead):  # the check wants multi-label proba strictly in (0, 1)
        return {"check_classifiers_multilabel_output_format_predict_proba":
                "vote shares are exactly 0 or 1 where the neighbours agree"}
    return {}


# The heads' base (fewshot._estimator) mirrors sklearn.base.BaseEstimator without importing
# scikit-learn at start-up; these checks are what prove the contract holds.
@pytest.mark.filterwarnings("ignore:Estimator .* does not inherit from:UserWarning")
@parametrize_with_checks([KNNHead(), CentroidHead(), LogisticRegressionHead(), AutoHead()],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator: Head, check) -> None:
    check(estimator)
