"""Heads: light scikit-learn classifiers fitted on embeddings in seconds."""

from __future__ import annotations

import json
import numbers
from typing import Any

from fewshot._estimator import clone
from fewshot.errors import UsageError
from fewshot.heads.auto import AutoHead
from fewshot.heads.base import Head
from fewshot.heads.centroid import CentroidHead
from fewshot.heads.knn import KNNHead
from fewshot.heads.logreg import LogisticRegressionHead

__all__ = ["HEADS", "AutoHead", "CentroidHead", "Head", "KNNHead", "LogisticRegressionHead",
           "make_head"]

#: Head name (as used by the CLI and saved models) -> class.
HEADS: dict[str, type[Head]] = {
    KNNHead.name: KNNHead,
    CentroidHead.name: CentroidHead,
    LogisticRegressionHead.name: LogisticRegressionHead,
    AutoHead.name: AutoHead,
}


def make_head(head: str | Head, **params: Any) -> Head:
    """A head from its name (``knn``, ``centroid``, ``logreg``, ``auto``) or an instance."""
    if isinstance(head, Head):
        if not params:
            return head
        try:
            defaults = type(head)().get_params()
        except TypeError:  # a custom head whose constructor needs arguments
            defaults = head.get_params()
        _check_settings(head.name, defaults, params)
        # A copy with the settings changed: the caller's instance stays as it was.
        return _checked(clone(head).set_params(**params))
    try:
        cls = HEADS[head]
    except KeyError:
        raise UsageError(
            f"unknown head '{head}'; choose one of {', '.join(sorted(HEADS))}"
        ) from None
    _check_settings(head, cls().get_params(), params)
    return _checked(cls(**params))


def _checked(head: Head) -> Head:
    """A setting out of range (``k=0``, a negative temperature): a UsageError before any fit."""
    try:
        head._check_params()
    except ValueError as e:
        raise UsageError(f"head '{head.name}': {e}; pick another value") from None
    return head


def _check_settings(head: str, defaults: dict[str, Any], params: dict[str, Any]) -> None:
    """Unknown settings, or values of the wrong kind, are one-line usage errors."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise UsageError(
            f"head '{head}' has no setting {', '.join(unknown)}; its settings are "
            f"{', '.join(sorted(defaults))}"
        )
    for key, value in params.items():
        kind = _kind(defaults[key])
        if kind and _kind(value) not in _ACCEPTS[kind]:
            raise UsageError(
                f"head '{head}' setting {key} takes {_WORDS[kind]}, got {value!r}; "
                f"e.g. {key}={json.dumps(defaults[key])}"
            )


#: Settings whose default is a bool, an int or a float take a value of that kind.
_ACCEPTS = {"bool": {"bool"}, "int": {"int"}, "float": {"int", "float"}}
_WORDS = {"bool": "true or false", "int": "a whole number", "float": "a number"}


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    return None
