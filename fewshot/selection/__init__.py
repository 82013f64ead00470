"""Selection: which labelled examples to show an LLM, and which items to label next."""

from fewshot.selection.annotation import (
    ANNOTATION_STRATEGIES,
    Suggestion,
    decision_thresholds,
    informative_model,
    labelled_model,
    labelled_model_margins,
    suggest,
)
from fewshot.selection.demonstrations import STRATEGIES, Demonstration, ExampleSelector
from fewshot.selection.prompts import PromptTemplate

__all__ = [
    "ANNOTATION_STRATEGIES",
    "STRATEGIES",
    "Demonstration",
    "ExampleSelector",
    "PromptTemplate",
    "Suggestion",
    "decision_thresholds",
    "informative_model",
    "labelled_model",
    "labelled_model_margins",
    "suggest",
]
