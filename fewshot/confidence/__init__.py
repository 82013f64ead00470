"""Confidence you can act on: calibration, review queues, label audits, label shift.

One module per idea:

- :mod:`~fewshot.confidence.calibration`: out-of-fold probabilities, temperature
  scaling and isotonic calibration (ECE and Brier score live in :mod:`fewshot.metrics`);
- :mod:`~fewshot.confidence.thresholds`: the acceptance threshold for a precision
  target, conformal prediction sets;
- :mod:`~fewshot.confidence.audit`: labelled examples ranked by how likely their
  label is wrong, near-duplicates, outliers;
- :mod:`~fewshot.confidence.label_shift`: the class mix of unlabelled data (EM),
  used when the model's out-of-fold confusions can identify it.
"""

from fewshot.confidence.audit import audit_labels
from fewshot.confidence.label_shift import estimate_label_shift
from fewshot.confidence.thresholds import (
    conformal_quantile,
    precision_threshold,
    prediction_sets,
    review,
)
from fewshot.metrics import brier_score, expected_calibration_error

__all__ = [
    "audit_labels",
    "brier_score",
    "conformal_quantile",
    "estimate_label_shift",
    "expected_calibration_error",
    "precision_threshold",
    "prediction_sets",
    "review",
]
