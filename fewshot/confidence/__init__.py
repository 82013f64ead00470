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

from __future__ import annotations

from importlib import import_module
from typing import Any

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

_LOCATIONS = {
    "brier_score": "fewshot.metrics",
    "expected_calibration_error": "fewshot.metrics",
    "conformal_quantile": "fewshot.confidence.thresholds",
    "precision_threshold": "fewshot.confidence.thresholds",
    "prediction_sets": "fewshot.confidence.thresholds",
    "review": "fewshot.confidence.thresholds",
    "audit_labels": "fewshot.confidence.audit",
    "estimate_label_shift": "fewshot.confidence.label_shift",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'fewshot.confidence' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
