"""Data: loading files and folders, and the protocol's few-shot splits."""

from fewshot.data.dataset import Dataset, Modality
from fewshot.data.loaders import IMAGE_SUFFIXES, dataset_splits, load_dataset
from fewshot.data.splits import few_shot_indices

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "Modality",
    "dataset_splits",
    "few_shot_indices",
    "load_dataset",
]
