"""The evaluation report and the bench score macro-F1 the same way (scikit-learn's)."""

from __future__ import annotations

import pytest

from fewshot.bench.runner import _scores
from fewshot.errors import UsageError
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
