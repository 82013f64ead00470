"""scikit-learn's estimator contract, without importing scikit-learn to predict.

``import sklearn`` takes about 2 s (it imports scipy.stats, and pandas when installed),
four fifths of the cold start of ``fewshot predict`` on an exported model. The classes
here give fewshot's estimators what ``sklearn.base.BaseEstimator`` and its mixins
give (``get_params``/``set_params`` read from the ``__init__`` signature, tags,
``score``, ``fit_transform``), so ``clone``, pipelines, grid search and scikit-learn's
estimator checks work as with scikit-learn's own bases; scikit-learn is imported only
by what needs it (fitting, metrics, repr, tags, and the errors it defines), never to
load a model and predict.
"""

from __future__ import annotations

import copy
import inspect
from collections import defaultdict
from typing import Any

import numpy as np

__all__ = ["BaseEstimator", "ClassifierMixin", "TransformerMixin", "as_float_matrix",
           "check_is_fitted", "clone"]


class BaseEstimator:
    """``get_params``/``set_params`` as in ``sklearn.base.BaseEstimator``: the parameters
    are the ``__init__`` arguments, stored under their own names."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        parameters = [p for p in inspect.signature(init).parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in parameters):
            raise RuntimeError(f"{cls.__name__}.__init__ takes *args; estimators name "
                               "every parameter")
        return sorted(p.name for p in parameters)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> Any:
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            key, delim, sub_key = key.partition("__")
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator {self}. "
                                 f"Valid parameters are: {self._get_param_names()!r}.")
            if delim:
                nested[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        """``Name(param=value, ...)`` with the parameters that differ from their
        defaults, as scikit-learn prints estimators."""
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items()
                   if not _same(v, defaults.get(k, inspect.Parameter.empty))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:  # sklearn.utils.Tags (sklearn ships no types)
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=None, regressor_tags=None, classifier_tags=None)


class ClassifierMixin:
    """The classifier tags and ``score`` (accuracy), as ``sklearn.base.ClassifierMixin``."""

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X),  # type: ignore[attr-defined]
                                    sample_weight=sample_weight))


class TransformerMixin:
    """The transformer tags and ``fit_transform``, as ``sklearn.base.TransformerMixin``."""

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.transformer_tags = TransformerTags()
        return tags

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        return self.fit(X, y, **fit_params).transform(X)  # type: ignore[attr-defined]


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if type(value) is not type(default) or isinstance(value, np.ndarray):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def clone(estimator: Any) -> Any:
    """An unfitted copy with the same parameters, as ``sklearn.base.clone`` makes
    (estimator-valued parameters are cloned, the others deep-copied)."""
    params = {
        k: clone(v) if hasattr(v, "get_params") and not isinstance(v, type)
        else copy.deepcopy(v)
        for k, v in estimator.get_params(deep=False).items()
    }
    return type(estimator)(**params)


def check_is_fitted(estimator: Any, attributes: str | None = None) -> None:
    """Raise scikit-learn's ``NotFittedError`` unless ``estimator`` is fitted: it has
    ``attributes``, or without it, some attribute ending in ``_`` (as
    ``sklearn.utils.validation.check_is_fitted``)."""
    if attributes is not None:
        fitted = hasattr(estimator, attributes)
    else:
        fitted = any(v.endswith("_") and not v.startswith("__") for v in vars(estimator))
    if not fitted:
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator.")


def as_float_matrix(X: Any) -> np.ndarray:
    """``X`` as a finite 2-D float32 array; anything else goes through scikit-learn's
    ``check_array``, for its conversions and its error messages."""
    if (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind == "f"
            and X.shape[0] > 0 and X.shape[1] > 0):
        out = X.astype(np.float32, copy=False)
        if np.isfinite(out).all():
            return out
    from sklearn.utils.validation import check_array

    return np.asarray(check_array(X, dtype=np.float32))
