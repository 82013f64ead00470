"""Tuning: contrastive fine-tuning of encoder bodies (SetFit-style), and distillation."""

from fewshot.tuning.distill import distill
from fewshot.tuning.tuner import ContrastiveTuner, TuningReport, as_tuner

__all__ = ["ContrastiveTuner", "TuningReport", "as_tuner", "distill"]
