"""Data: loading files and folders, the protocol's few-shot splits, and writing rows."""

from fewshot.data.dataset import Dataset, Modality, unlabelled_pool
from fewshot.data.loaders import IMAGE_SUFFIXES, dataset_splits, load_dataset
from fewshot.data.splits import few_shot_indices, multi_label_few_shot_indices
from fewshot.data.writers import ROW_FORMATS, row_format, write_rows

__all__ = [
    "IMAGE_SUFFIXES",
    "ROW_FORMATS",
    "Dataset",
    "Modality",
    "dataset_splits",
    "few_shot_indices",
    "load_dataset",
    "multi_label_few_shot_indices",
    "row_format",
    "unlabelled_pool",
    "write_rows",
]
