"""fewshot.metrics: the classification and multi-label reports, ECE and Brier score,
against values by hand."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import fewshot.confidence
from fewshot.errors import UsageError
from fewshot.metrics import (
    brier_score,
    classification_report,
    expected_calibration_error,
    multilabel_report,
)


def test_report_values() -> None:
    y_true = ["a", "a", "b", "b"]
    y_pred = ["a", "c", "b", "b"]  # "c" is predicted but absent from y_true
    report = classification_report(y_true, y_pred)
    # F1: a 2/3, b 1, c 0 -> mean over the three labels seen in either list
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert report["accuracy"] == 0.75
    assert report["confusion_matrix"] == {
        "labels": ["a", "b", "c"], "matrix": [[1, 0, 1], [0, 2, 0], [0, 0, 0]],
    }
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                        "support": 0}


@pytest.mark.parametrize(("y_true", "y_pred", "labels"), [
    ([1, "1"], [1, 1], None),  # numpy makes y_true all str; y_pred stays int
    ([1, 2], ["1", "2"], None),  # predictions of another type than the truth
    (["a", "b"], ["a", None], None),
    (["1", "2"], ["1", "2"], [1, 2]),  # labels that would silently match nothing
])
def test_mixed_label_types_are_one_line_usage_error(y_true, y_pred, labels) -> None:
    with pytest.raises(UsageError, match=r"labels mix types \(.+\).*give y_true, y_pred and "
                                         r"labels as one type, e\.g\. all str$"):
        classification_report(y_true, y_pred, labels=labels)


def test_one_label_type_still_works() -> None:
    assert classification_report([1, 2], [1, 2.0])["accuracy"] == 1.0
    assert classification_report(["1", "a"], ["1", "a"], labels=["a", "1"])[
        "confusion_matrix"]["labels"] == ["a", "1"]


def test_ece_and_brier_by_hand() -> None:
    proba = np.array([[0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 1])
    # Confidence 0.9 right, 0.6 wrong, in different bins: (|1 - .9| + |0 - .6|) / 2.
    assert expected_calibration_error(proba, y) == pytest.approx(0.35)
    # (0.1^2 + 0.1^2 + 0.6^2 + 0.6^2) / 2
    assert brier_score(proba, y) == pytest.approx(0.37)
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == 0.0
    assert brier_score(np.eye(3), [0, 1, 2]) == 0.0
    assert np.isnan(brier_score(np.zeros((0, 2)), [])) and np.isnan(
        expected_calibration_error(np.zeros((0, 2)), []))
    # Still importable where they are documented with the rest of fewshot.confidence.
    assert fewshot.confidence.brier_score(proba, y) == pytest.approx(0.37)
    assert fewshot.confidence.expected_calibration_error(proba, y) == pytest.approx(0.35)


# -- multi-label ------------------------------------------------------------------------
ML_TRUE = [["a", "b"], [], ["c"], ["a"]]
ML_PRED = [["a"], ["b"], ["c", "a"], ["a"]]
ML_LABELS = ["c", "a", "b"]  # deliberately not sorted: per_label follows this order


def test_multilabel_report_values_by_hand() -> None:
    report = multilabel_report(ML_TRUE, ML_PRED, ML_LABELS)
    # a: tp 2, fp 1 -> P 2/3, R 1, F1 .8; b: tp 0, fp 1, fn 1 -> 0; c: tp 1 -> 1
    assert list(report["per_label"]) == ["c", "a", "b"]
    assert report["per_label"]["a"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                        "f1": pytest.approx(0.8), "support": 2}
    assert report["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                        "support": 1}
    assert report["per_label"]["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                        "support": 1}
    assert report["n"] == 4
    assert report["macro_f1"] == pytest.approx((0.8 + 0 + 1) / 3)
    assert report["micro_f1"] == pytest.approx(2 / 3)  # tp 3, fp 2, fn 1: 6 / (6 + 3)
    # Rows: F1 2/3, 0 (a row with no label but a prediction), 2/3, 1.
    assert report["samples_f1"] == pytest.approx(7 / 12)
    assert report["subset_accuracy"] == 0.25
    assert report["hamming_loss"] == 0.25  # 3 wrong cells of 12
    json.dumps(report)  # plain JSON


def test_multilabel_report_takes_indicator_matrices() -> None:
    lists = multilabel_report(ML_TRUE, ML_PRED, ML_LABELS)
    # Columns follow labels: c, a, b.
    true = np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0]])
    pred = np.array([[0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 0]])
    assert multilabel_report(true, pred, ML_LABELS) == lists
    assert multilabel_report(ML_TRUE, pred.astype(bool), ML_LABELS) == lists
    assert multilabel_report([set(r) for r in ML_TRUE], pred, ML_LABELS) == lists
    with pytest.raises(UsageError, match=r"y_pred as a matrix is 0/1 with one column per "
                                         r"label \(3\), got shape \(4, 2\)"):
        multilabel_report(true, pred[:, :2], ML_LABELS)


def test_multilabel_report_rows_without_labels() -> None:
    report = multilabel_report([[], ["a"]], [[], ["a"]], ["a", "b"])
    assert report["subset_accuracy"] == 1.0 and report["hamming_loss"] == 0.0
    assert report["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                        "support": 0}
    assert report["macro_f1"] == 0.5  # b, never true nor predicted, scores 0 (zero_division)
    assert report["samples_f1"] == 0.5  # so does the empty row


def test_multilabel_report_unknown_labels_are_named() -> None:
    with pytest.raises(ValueError, match="y_pred has labels not in labels: x, z; add them"):
        multilabel_report([["a"], ["b"]], [["z", "a"], ["x"]], ["a", "b"])
    with pytest.raises(UsageError, match="y_true has labels not in labels: q"):
        multilabel_report([["q"], ["b"]], [["a"], ["b"]], ["a", "b"])


@pytest.mark.parametrize(("y_true", "y_pred", "labels", "message"), [
    ([["a"]], [["a"], ["b"]], ["a", "b"], "y_true has 1 rows but y_pred has 2"),
    (["a", "b"], [["a"], ["b"]], ["a", "b"], "each row of y_true is a list of labels, got 'a'"),
    ([], [], ["a"], "y_true has no rows"),
    ([["a"]], [["a"]], [], "labels is empty"),
    ([["a"]], [["a"]], ["a", "a"], "name a label twice"),
    ([[1]], [["1"]], [1], "labels mix types"),
])
def test_multilabel_report_bad_input(y_true, y_pred, labels, message) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        multilabel_report(y_true, y_pred, labels)
