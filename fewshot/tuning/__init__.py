"""Tuning: contrastive fine-tuning of encoder bodies (SetFit-style)."""

from fewshot.tuning.tuner import ContrastiveTuner, TuningReport, as_tuner

__all__ = ["ContrastiveTuner", "TuningReport", "as_tuner"]
