"""fewshot: classify text and images from a handful of labelled examples.

Frozen pretrained encoders turn items into embeddings; light heads (logistic
regression, nearest centroid, FAISS kNN) fit on them in seconds. Heavy libraries
(torch, faiss, transformers) load only when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from fewshot._version import __version__

if TYPE_CHECKING:
    from fewshot.cache import EmbeddingCache, embed
    from fewshot.classifier import FewShotClassifier
    from fewshot.data import Dataset, few_shot_indices, load_dataset
    from fewshot.encoders import Encoder, ImageEncoder, TextEncoder, get_encoder
    from fewshot.heads import CentroidHead, KNNHead, LogisticRegressionHead, make_head
    from fewshot.index import VectorIndex
    from fewshot.metrics import classification_report
    from fewshot.selection import ExampleSelector, PromptTemplate, suggest

__all__ = [
    "CentroidHead",
    "Dataset",
    "EmbeddingCache",
    "Encoder",
    "ExampleSelector",
    "FewShotClassifier",
    "ImageEncoder",
    "KNNHead",
    "LogisticRegressionHead",
    "PromptTemplate",
    "TextEncoder",
    "VectorIndex",
    "__version__",
    "classification_report",
    "embed",
    "few_shot_indices",
    "get_encoder",
    "load_dataset",
    "make_head",
    "suggest",
]

_LOCATIONS = {
    "EmbeddingCache": "fewshot.cache",
    "embed": "fewshot.cache",
    "FewShotClassifier": "fewshot.classifier",
    "Dataset": "fewshot.data",
    "few_shot_indices": "fewshot.data",
    "load_dataset": "fewshot.data",
    "Encoder": "fewshot.encoders",
    "ImageEncoder": "fewshot.encoders",
    "TextEncoder": "fewshot.encoders",
    "get_encoder": "fewshot.encoders",
    "CentroidHead": "fewshot.heads",
    "KNNHead": "fewshot.heads",
    "LogisticRegressionHead": "fewshot.heads",
    "make_head": "fewshot.heads",
    "VectorIndex": "fewshot.index",
    "classification_report": "fewshot.metrics",
    "ExampleSelector": "fewshot.selection",
    "PromptTemplate": "fewshot.selection",
    "suggest": "fewshot.selection",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'fewshot' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
