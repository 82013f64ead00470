"""Heads on multi-label targets: indicator matrices in, per-label probabilities out,
exact values by hand, and array-only saving."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import ALL_HEADS
from safetensors.numpy import load, save
from scipy.sparse import csr_matrix
from scipy.special import expit, logit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV
from sklearn.utils import get_tags

from fewshot.heads import HEADS, CentroidHead, Head, KNNHead, LogisticRegressionHead
from fewshot.heads.base import l2n

N_LABELS = 4


def _multilabel(n: int, seed: int, dim: int = 16, noise: float = 0.25):
    """Rows with 0, 1 or 2 of 4 labels; a row is the sum of its labels' directions
    plus noise, so every label is separable (cosine and linearly)."""
    rng = np.random.default_rng(seed)
    directions = np.eye(dim)[:N_LABELS] * 3.0
    Y = np.zeros((n, N_LABELS), dtype=np.int64)
    for i in range(n):
        size = (0, 1, 1, 2)[i % 4]
        Y[i, rng.choice(N_LABELS, size=size, replace=False)] = 1
    base = np.where(Y.any(axis=1, keepdims=True), 0.0, 1.0) * np.eye(dim)[N_LABELS] * 3.0
    X = Y @ directions + base + noise * rng.normal(size=(n, dim))
    return X.astype(np.float32), Y


@pytest.fixture(scope="module")
def data():
    X, Y = _multilabel(160, seed=0)
    Xq, Yq = _multilabel(40, seed=1)
    return X, Y, Xq, Yq



# -- the contract -----------------------------------------------------------------------
@pytest.mark.parametrize("make", ALL_HEADS)
def test_contract_and_learning(make, data) -> None:
    X, Y, Xq, Yq = data
    assert (Y.sum(axis=1) == 0).any()  # rows with no label are training rows too
    head = make()
    assert head.fit(X, Y) is head
    assert head.multi_label_ is True
    np.testing.assert_array_equal(head.classes_, np.arange(N_LABELS))
    assert head.n_features_in_ == X.shape[1]

    proba = head.predict_proba(Xq)
    assert proba.shape == (len(Xq), N_LABELS) and proba.dtype == np.float32
    assert np.all((proba >= 0) & (proba <= 1))
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent labels, not a softmax
    pred = head.predict(Xq)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(np.int64))
    per_label = f1_score(Yq, pred, average=None)
    assert per_label.min() >= 0.9, per_label
    assert head.score(Xq, Yq) == pytest.approx(np.mean((pred == Yq).all(axis=1)))


@pytest.mark.parametrize("make", ALL_HEADS)
def test_single_label_mode_unchanged(make, data) -> None:
    X, Y, _, _ = data
    y = Y.argmax(axis=1)
    head = make().fit(X, y)
    assert head.multi_label_ is False
    assert "multi_label" not in head.get_state()[0]
    # Refit on an indicator matrix, then on labels again: the mode follows the last fit.
    assert head.fit(X, Y).multi_label_ and not head.fit(X, y).multi_label_
    assert head.predict(X).shape == (len(X),)


@pytest.mark.parametrize("make", ALL_HEADS)
def test_indicator_representations_agree(make, data) -> None:
    X, Y, Xq, _ = data
    ref = make().fit(X, Y).predict_proba(Xq)
    for same in (Y.tolist(), Y.astype(bool), Y.astype(np.float32), csr_matrix(Y)):
        np.testing.assert_array_equal(make().fit(X, same).predict_proba(Xq), ref)


def test_not_an_indicator_matrix_is_a_value_error(data) -> None:
    X, _, _, _ = data
    Y = np.ones((len(X), 2), dtype=np.int64)
    Y[::2, 1] = 2  # two values, so scikit-learn calls it multilabel-indicator
    with pytest.raises(ValueError, match=r"holds only 0 and 1, got values \[1, 2\]"):
        LogisticRegressionHead().fit(X, Y)


def test_head_without_multilabel_mode_refuses() -> None:
    class Nearest(Head):
        name = "nearest"

        def _fit(self, X, y_idx):
            self.X_, self.y_ = X, y_idx

        def _proba(self, X):
            return np.eye(len(self.classes_), dtype=np.float32)[self.y_[:len(X)]]

    X = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="head 'nearest' has no multi-label mode"):
        Nearest().fit(X, np.eye(4, dtype=int))
    assert not get_tags(Nearest()).classifier_tags.multi_label
    assert get_tags(KNNHead()).classifier_tags.multi_label
    assert get_tags(LogisticRegressionHead()).target_tags.multi_output


@pytest.mark.parametrize("make", ALL_HEADS)
def test_clone_and_grid_search(make, data) -> None:
    X, Y, _, _ = data
    head = make().fit(X, Y)
    copy = clone(head)
    assert copy.get_params() == head.get_params() and not hasattr(copy, "multi_label_")
    grid = {"C": [0.1, 1.0]} if isinstance(head, LogisticRegressionHead) else (
        {"k": [1, 3]} if isinstance(head, KNNHead) else {"temperature": [5.0, 10.0]})
    search = GridSearchCV(make(), grid, scoring="f1_macro", cv=3, error_score="raise")
    assert search.fit(X, Y).best_score_ >= 0.9


# -- logistic regression: one-vs-rest ---------------------------------------------------
def test_logreg_is_one_binary_logistic_regression_per_label(data) -> None:
    X, Y, Xq, _ = data
    head = LogisticRegressionHead(C=0.3, class_weight="balanced").fit(X, Y)
    assert head.coef_.shape == (N_LABELS, X.shape[1]) and head.intercept_.shape == (N_LABELS,)
    for j in range(N_LABELS):
        ref = LogisticRegression(C=0.3, class_weight="balanced", max_iter=1000,
                                 random_state=0).fit(X, Y[:, j])
        np.testing.assert_allclose(head.predict_proba(Xq)[:, j], ref.predict_proba(Xq)[:, 1],
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        head.predict_proba(Xq),
        expit(Xq.astype(np.float64) @ head.coef_.T + head.intercept_), rtol=1e-6)


def test_logreg_constant_columns_get_their_clipped_rate(data) -> None:
    X, Y, Xq, _ = data
    Y = np.column_stack([Y[:, 0], np.zeros(len(X), int), np.ones(len(X), int), Y[:, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn error, no warning
        head = LogisticRegressionHead().fit(X, Y)
    np.testing.assert_array_equal(head.coef_[1:3], 0.0)
    np.testing.assert_allclose(head.intercept_[1:3], [logit(1e-3), logit(1 - 1e-3)])
    proba = head.predict_proba(Xq)
    np.testing.assert_allclose(proba[:, 1], 1e-3, rtol=1e-5)
    np.testing.assert_allclose(proba[:, 2], 1 - 1e-3, rtol=1e-5)
    np.testing.assert_array_equal(head.predict(Xq)[:, 1:3], [[0, 1]] * len(Xq))
    assert head.n_iter_[1] == head.n_iter_[2] == 0 and head.n_iter_[0] > 0
    # The other columns are fitted exactly as without the constant ones.
    alone = LogisticRegressionHead().fit(X, Y[:, [0, 3]])
    np.testing.assert_array_equal(proba[:, [0, 3]], alone.predict_proba(Xq))


def test_logreg_for_subsample_scales_c(data) -> None:
    X, Y, _, _ = data
    assert LogisticRegressionHead(C=1.0).fit(X, Y).for_subsample(0.5).C == 2.0


# -- kNN: per-label vote shares ---------------------------------------------------------
def _tiny():
    """Query right next to row 0; rows 1 and 2 further away; row 3 opposite."""
    X = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]], dtype=np.float32)
    Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
    q = np.array([[0.99, 0.01]], dtype=np.float32)
    return X, Y, q


def test_knn_uniform_vote_shares_by_hand() -> None:
    X, Y, q = _tiny()
    head = KNNHead(k=3, weights="uniform").fit(X, Y)
    # Neighbours rows 0, 1, 2: label 0 on rows 0 and 1, label 1 on 1 and 2, label 2 none.
    np.testing.assert_allclose(head.predict_proba(q), [[2 / 3, 2 / 3, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(head.predict(q), [[1, 1, 0]])
    assert KNNHead.zero_probabilities  # a share can be exactly 0
    all_rows = KNNHead(k=50, weights="uniform").fit(X, Y).predict_proba(q)
    np.testing.assert_allclose(all_rows, [[0.5, 0.5, 0.25]], rtol=1e-6)


def test_knn_distance_vote_shares_by_hand() -> None:
    X, Y, q = _tiny()
    head = KNNHead(k=3).fit(X, Y)
    qn = q[0] / np.linalg.norm(q[0])
    w = 1.0 / (1.0 - X[:3] @ qn)  # rows of X are unit vectors
    expected = [(w[0] + w[1]) / w.sum(), (w[1] + w[2]) / w.sum(), 0.0]
    np.testing.assert_allclose(head.predict_proba(q)[0], expected, rtol=1e-4)
    np.testing.assert_array_equal(head.predict(q), [[1, 0, 0]])


def test_knn_query_without_neighbours_gets_training_rates() -> None:
    X, Y, q = _tiny()
    head = KNNHead(k=2).fit(X, Y)

    class Empty:  # an IVF search that found nothing
        def search(self, queries, k):
            return np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1)

    head.index_ = Empty()
    np.testing.assert_allclose(head.predict_proba(q), [[0.5, 0.5, 0.25]])


# -- centroid ---------------------------------------------------------------------------
def test_centroid_is_cosine_to_label_means_by_hand() -> None:
    X = np.array([[2, 0], [4, 0.2], [0, 1], [1, 1]], dtype=np.float32)
    Y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])  # label 2: no rows
    head = CentroidHead(temperature=3.0).fit(X, Y)
    q = np.array([[1.0, 0.5], [0.0, 0.0]], dtype=np.float32)
    Z = l2n(X)
    cents = l2n(np.stack([Z[[0, 1, 3]].mean(0), Z[[2, 3]].mean(0)]))
    cos = l2n(q) @ cents.T
    expected = np.column_stack([expit(3.0 * (cos - 0.5)), np.zeros(2)])
    proba = head.predict_proba(q)
    assert not np.isnan(proba).any()
    np.testing.assert_allclose(proba, expected, rtol=1e-5)
    np.testing.assert_array_equal(head.centroids_[2], 0.0)
    np.testing.assert_array_equal(head.predict(q)[:, 2], 0)


def test_centroid_center_uses_the_training_mean(data) -> None:
    X, Y, _, _ = data
    head = CentroidHead(center=True).fit(X, Y)
    np.testing.assert_allclose(head.mean_, X.mean(axis=0), rtol=1e-5)
    Z = l2n(X - head.mean_)
    expected = l2n(np.stack([Z[Y[:, j] == 1].mean(0) for j in range(N_LABELS)]))
    np.testing.assert_allclose(head.centroids_, expected, rtol=1e-5, atol=1e-6)


# -- saving as arrays -------------------------------------------------------------------
@pytest.mark.parametrize("make", ALL_HEADS)
def test_state_round_trip_through_safetensors(make, data) -> None:
    X, Y, Xq, _ = data
    Y = Y.copy()
    Y[:, 3] = 0  # a label no row has survives the trip too
    head = make().fit(X, Y)
    config, arrays = head.get_state()
    assert config["multi_label"] is True
    assert config["classes"] == list(range(N_LABELS))
    config2 = json.loads(json.dumps(config))
    restored = HEADS[config2["type"]].from_state(config2, load(save(arrays)))
    assert type(restored) is type(head) and restored.multi_label_ is True
    assert restored.get_params() == head.get_params()
    np.testing.assert_array_equal(restored.classes_, head.classes_)
    np.testing.assert_array_equal(restored.predict_proba(Xq), head.predict_proba(Xq))
    np.testing.assert_array_equal(restored.predict(Xq), head.predict(Xq))
    again = restored.get_state()
    assert again[0] == config
    assert again[1].keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(again[1][key], value)
        assert again[1][key].dtype == value.dtype


@pytest.mark.parametrize("make", ALL_HEADS)
def test_tampered_state_is_a_value_error(make, data) -> None:
    X, Y, _, _ = data
    config, arrays = make().fit(X, Y).get_state()
    cls = HEADS[config["type"]]
    with pytest.raises(ValueError, match="its multi_label 'yes' is not true or false"):
        cls.from_state({**config, "multi_label": "yes"}, arrays)
    with pytest.raises(ValueError, match="classes are its column indices"):
        cls.from_state({**config, "classes": [1, 2, 3, 4]}, arrays)
    with pytest.raises(ValueError):  # arrays for 4 labels, config for 3
        cls.from_state({**config, "classes": [0, 1, 2]}, arrays)


def test_tampered_arrays_are_value_errors(data) -> None:
    X, Y, _, _ = data
    config, arrays = LogisticRegressionHead().fit(X, Y).get_state()
    with pytest.raises(ValueError, match="do not fit 4 labels of 16 features"):
        LogisticRegressionHead.from_state(config, {**arrays, "intercept": arrays["intercept"][:1]})
    config, arrays = KNNHead().fit(X, Y).get_state()
    labels = arrays["support_labels"].copy()
    labels[0, 0] = 2
    with pytest.raises(ValueError, match="are not a 0/1 matrix of 160 rows and 4 labels"):
        KNNHead.from_state(config, {**arrays, "support_labels": labels})
