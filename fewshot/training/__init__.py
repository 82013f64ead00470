"""Training: a fitted model from embeddings, with label descriptions, self-training or distillation.

- :mod:`~fewshot.training.fitting`: the one fitting path (head, class counts,
  out-of-fold calibration) that ``FewShotClassifier.fit``, self-training,
  distillation and the benchmark methods share;
- :mod:`~fewshot.training.descriptions`: label descriptions as extra examples;
- :mod:`~fewshot.training.self_training`: class-balanced pseudo-labels from an
  unlabelled pool, in rounds;
- :mod:`~fewshot.training.distillation`: a smaller student that mimics a fitted teacher.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["distill", "fit_embeddings", "read_label_descriptions", "self_train"]

_LOCATIONS = {
    "distill": "distillation",
    "fit_embeddings": "fitting",
    "read_label_descriptions": "descriptions",
    "self_train": "self_training",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'fewshot.training' has no attribute {name!r}")
    return getattr(import_module(f"fewshot.training.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
