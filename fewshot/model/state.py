"""The fitted state of a model: encoder, head and the parts fitted beside them.

A :class:`FittedModel` is what ``fit`` makes, ``load`` reads back and
distillation builds; :class:`~fewshot.FewShotClassifier` holds one. Optional
parts (:class:`Calibration`, :class:`LabelShift`) each say how they are saved:
a manifest key, an optional safetensors file, ``to_saved`` and ``from_saved``,
so a new part is one class here and never an edit of the folder code.
Records (tuning, self-training, distillation) are plain JSON reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["RECORDS", "Calibration", "FittedModel", "LabelShift", "Thresholds",
           "UnknownPartError"]

class UnknownPartError(Exception):
    """A saved part names a kind (a calibration method, say) this fewshot does not know."""


#: JSON reports kept in the manifest under their own names.
RECORDS = ("tuning", "self_training", "distillation")


@dataclass
class Calibration:
    """A calibrator fitted on out-of-fold predictions, and those predictions.

    ``info`` says what was asked for and what ran: ``method``, ``requested``,
    ``fallback`` (why another method was used, or None), ``folds``,
    ``n_held_out`` and ``body_tuned_on_all_folds`` when the encoder was tuned on
    every labelled row. ``oof_proba`` / ``oof_labels`` (class indices) feed
    review thresholds, conformal sets and label-shift estimates.
    """

    key: ClassVar[str] = "calibration"
    file: ClassVar[str | None] = "calibration.safetensors"

    calibrator: Any
    info: dict[str, Any]
    oof_proba: np.ndarray
    oof_labels: np.ndarray

    def to_saved(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config, arrays = self.calibrator.get_state()
        arrays = {**arrays, "oof_proba": self.oof_proba.astype(np.float32),
                  "oof_labels": self.oof_labels.astype(np.int64)}
        return {**self.info, **config}, arrays

    @classmethod
    def from_saved(
        cls, config: dict[str, Any], arrays: dict[str, np.ndarray], n_classes: int
    ) -> Calibration:
        from fewshot.confidence.calibration import CALIBRATORS

        method = config.get("method")
        calibrator_cls = CALIBRATORS.get(method) if isinstance(method, str) else None
        if calibrator_cls is None:
            raise UnknownPartError(f"calibration '{method}'")
        oof_proba = arrays["oof_proba"].astype(np.float32)
        if oof_proba.ndim != 2 or oof_proba.shape[1] != n_classes:
            raise ValueError(f"out-of-fold probabilities of shape {oof_proba.shape} "
                             f"for {n_classes} classes")
        info: dict[str, Any] = {k: config[k] for k in ("method", "requested", "fallback", "folds",
                                       "n_held_out", "body_tuned_on_all_folds") if k in config}
        return cls(calibrator_cls.from_state(config, arrays), info, oof_proba,
                   arrays["oof_labels"].astype(np.int64))


@dataclass
class LabelShift:
    """A label-shift estimate (``report``) and the class prior in use, if it was used."""

    key: ClassVar[str] = "label_shift"
    file: ClassVar[str | None] = None

    report: dict[str, Any]
    prior: np.ndarray | None

    def to_saved(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.report, {}

    @classmethod
    def from_saved(
        cls, config: dict[str, Any], arrays: dict[str, np.ndarray], n_classes: int
    ) -> LabelShift:
        if not isinstance(config, dict):
            raise ValueError(f"label_shift is a {type(config).__name__}, not an object")
        prior = None
        if config.get("used"):
            prior = np.asarray(config["prior"], dtype=np.float64)
            if prior.shape != (n_classes,) or not np.all(np.isfinite(prior)) or prior.min() < 0:
                raise ValueError(f"label_shift prior {config['prior']!r} does not fit "
                                 f"{n_classes} classes")
        return cls(config, prior)


@dataclass
class Thresholds:
    """Multi-label decisions: a label is predicted when its probability reaches its threshold.

    ``values`` holds one threshold per label (columns of ``classes``), chosen on
    out-of-fold probabilities; ``info`` says how (see
    :func:`fewshot.training.fitting.label_thresholds`).
    """

    key: ClassVar[str] = "thresholds"
    file: ClassVar[str | None] = None

    values: np.ndarray
    info: dict[str, Any]

    def to_saved(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {**self.info, "values": [float(v) for v in self.values]}, {}

    @classmethod
    def from_saved(
        cls, config: dict[str, Any], arrays: dict[str, np.ndarray], n_classes: int
    ) -> Thresholds:
        values = np.asarray(config["values"], dtype=np.float64)
        if values.shape != (n_classes,) or not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"thresholds {config['values']!r} do not fit {n_classes} labels")
        return cls(values, {k: v for k, v in config.items() if k != "values"})


#: The optional parts, by attribute name of :class:`FittedModel`.
PARTS: dict[str, Any] = {"calibration": Calibration, "label_shift": LabelShift,
                         "thresholds": Thresholds}


@dataclass
class FittedModel:
    """Everything a fitted classifier knows; predicts from embeddings.

    ``class_counts`` is the class mix the head learned from (labelled rows,
    label descriptions and pseudo-labels), the training prior that a
    label-shift correction moves from. ``n_train`` counts the labelled items.
    """

    encoder: Any
    head: Any
    class_counts: np.ndarray
    n_train: int
    calibration: Calibration | None = None
    label_shift: LabelShift | None = None
    thresholds: Thresholds | None = None
    #: Multi-label models: the label names of the head's columns (None: single-label).
    label_names: np.ndarray | None = None
    label_descriptions: dict[Any, str] | None = None
    tuning: dict[str, Any] | None = None
    self_training: dict[str, Any] | None = None
    distillation: dict[str, Any] | None = None

    @property
    def multi_label(self) -> bool:
        return self.label_names is not None

    @property
    def classes(self) -> np.ndarray:
        return self.label_names if self.label_names is not None else np.asarray(
            self.head.classes_)

    def decide(
        self, proba: np.ndarray, *, threshold: float | None = None, min_labels: int = 0
    ) -> np.ndarray:
        """Multi-label decisions (an indicator matrix) from per-label probabilities.

        ``threshold`` overrides the fitted per-label thresholds; with ``min_labels``
        the most probable labels are added to a row that has fewer.
        """
        cut = (np.full(proba.shape[1], threshold) if threshold is not None
               else self.thresholds.values if self.thresholds is not None else 0.5)
        chosen = proba >= cut
        if min_labels > 0:
            top = np.argsort(-proba, axis=1, kind="stable")[:, :min_labels]
            short = chosen.sum(axis=1) < min_labels
            chosen[np.flatnonzero(short)[:, None], top[short]] = True
        return chosen.astype(np.int64)

    def prediction_rows(
        self, proba: np.ndarray, *, threshold: float | None = None, min_labels: int = 0
    ) -> list[dict[str, Any]]:
        """One answer per row, the shape ``fewshot predict`` and ``fewshot serve`` write.

        Single-label: ``{"label", "score", "probabilities"}``; multi-label:
        ``{"labels", "probabilities"}`` with every label's own probability.
        """
        classes = [str(c) for c in self.classes]
        if self.multi_label:
            chosen = self.decide(proba, threshold=threshold, min_labels=min_labels)
            decided: list[dict[str, Any]] = [
                {"labels": [c for c, on in zip(classes, row, strict=True) if on]}
                for row in chosen]
        else:
            decided = [{"label": classes[int(p.argmax())], "score": round(float(p.max()), 6)}
                       for p in proba]
        return [{**d, "probabilities": {c: round(float(v), 6)
                                        for c, v in zip(classes, p, strict=True)}}
                for d, p in zip(decided, proba, strict=True)]

    @property
    def training_prior(self) -> np.ndarray:
        return self.class_counts.astype(np.float64) / float(self.class_counts.sum())

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """The calibrator applied to head probabilities (unchanged without one)."""
        if self.calibration is None:
            return proba
        return np.asarray(self.calibration.calibrator.transform(proba))

    def apply_prior(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities moved to the class prior in use (unchanged without)."""
        if self.label_shift is None or self.label_shift.prior is None:
            return proba
        from fewshot.confidence.label_shift import apply_class_prior

        return apply_class_prior(proba, self.training_prior,
                                 self.label_shift.prior).astype(np.float32)

    def adjust(self, proba: np.ndarray) -> np.ndarray:
        """Head probabilities calibrated, then moved to the class prior in use."""
        return self.apply_prior(self.calibrate(proba))

    def predict_proba(self, Z: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """Probabilities of embeddings ``Z``, columns in the order of ``classes``."""
        proba = self.head.predict_proba(Z)
        return self.adjust(proba) if calibrated else proba

    def parts(self) -> dict[str, Any]:
        """The optional parts this model has, by attribute name."""
        return {name: getattr(self, name) for name in PARTS if getattr(self, name) is not None}
