"""Confidence you can act on: calibration, review queues, label audits, self-training, priors.

One module per idea:

- :mod:`~fewshot.confidence.calibration`: out-of-fold probabilities, temperature
  scaling and isotonic calibration, ECE and Brier score;
- :mod:`~fewshot.confidence.review`: the acceptance threshold for a precision
  target, conformal prediction sets;
- :mod:`~fewshot.confidence.audit`: labelled examples ranked by how likely their
  label is wrong, near-duplicates, outliers;
- :mod:`~fewshot.confidence.selftrain`: class-balanced pseudo-labels from an
  unlabelled pool, in rounds;
- :mod:`~fewshot.confidence.priors`: label descriptions as extra prototypes;
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
    "read_label_descriptions",
    "review",
    "self_train",
]

_LOCATIONS = {
    "brier_score": "calibration",
    "expected_calibration_error": "calibration",
    "conformal_quantile": "review",
    "precision_threshold": "review",
    "prediction_sets": "review",
    "review": "review",
    "audit_labels": "audit",
    "self_train": "selftrain",
    "read_label_descriptions": "priors",
    "estimate_label_shift": "label_shift",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'fewshot.confidence' has no attribute {name!r}")
    return getattr(import_module(f"fewshot.confidence.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
