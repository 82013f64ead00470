"""The evaluation report and the bench score macro-F1 the same way (scikit-learn's)."""

from __future__ import annotations

import pytest

from fewshot.bench.runner import _scores
from fewshot.metrics import classification_report


def test_report_values_and_agreement_with_bench() -> None:
    y_true = ["a", "a", "b", "b"]
    y_pred = ["a", "c", "b", "b"]  # "c" is predicted but absent from y_true
    report = classification_report(y_true, y_pred)
    # F1: a 2/3, b 1, c 0 -> mean over the three labels seen in either list
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert report["accuracy"] == 0.75
    assert report["macro_f1"] == pytest.approx(_scores("x", y_true, y_pred)["macro_f1"])
    assert report["confusion_matrix"] == {
        "labels": ["a", "b", "c"], "matrix": [[1, 0, 1], [0, 2, 0], [0, 0, 0]],
    }
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                        "support": 0}
