"""Training: a fitted model from embeddings, with label descriptions or self-training.

- :mod:`~fewshot.training.fitting`: the one fitting path (head, class counts,
  out-of-fold calibration) that ``FewShotClassifier.fit``, self-training,
  distillation and the benchmark methods share;
- :mod:`~fewshot.training.descriptions`: label descriptions as extra examples;
- :mod:`~fewshot.training.self_training`: class-balanced pseudo-labels from an
  unlabelled pool, in rounds.
"""

from fewshot.training.descriptions import read_label_descriptions
from fewshot.training.fitting import fit_embeddings
from fewshot.training.self_training import fit_self_trained, self_train

__all__ = ["fit_embeddings", "fit_self_trained", "read_label_descriptions", "self_train"]
