"""Heads: light scikit-learn classifiers fitted on embeddings in seconds."""

from __future__ import annotations

from typing import Any

from fewshot.errors import UsageError
from fewshot.heads.base import Head
from fewshot.heads.centroid import CentroidHead
from fewshot.heads.knn import KNNHead
from fewshot.heads.logreg import LogisticRegressionHead

__all__ = ["HEADS", "CentroidHead", "Head", "KNNHead", "LogisticRegressionHead", "make_head"]

#: Head name (as used by the CLI and saved models) -> class.
HEADS: dict[str, type[Head]] = {
    KNNHead.name: KNNHead,
    CentroidHead.name: CentroidHead,
    LogisticRegressionHead.name: LogisticRegressionHead,
}


def make_head(head: str | Head, **params: Any) -> Head:
    """A head from its name (``knn``, ``centroid``, ``logreg``) or an instance."""
    if isinstance(head, Head):
        return head.set_params(**params) if params else head
    try:
        cls = HEADS[head]
    except KeyError:
        raise UsageError(
            f"unknown head '{head}'; choose one of {', '.join(sorted(HEADS))}"
        ) from None
    unknown = sorted(set(params) - set(cls().get_params()))
    if unknown:
        raise UsageError(
            f"head '{head}' has no setting {', '.join(unknown)}; its settings are "
            f"{', '.join(sorted(cls().get_params()))}"
        )
    return cls(**params)
