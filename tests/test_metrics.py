"""fewshot.metrics: the classification report, ECE and Brier score, against values by hand."""

from __future__ import annotations

import numpy as np
import pytest

import fewshot.confidence
from fewshot.errors import UsageError
from fewshot.metrics import brier_score, classification_report, expected_calibration_error


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
