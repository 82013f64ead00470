"""Distillation: train a smaller, faster student to match a fitted teacher.

As in the SetFit paper (Tunstall et al., 2022, section on distillation): on
unlabelled items, the student body is tuned so that the cosine similarity of
its embeddings of a pair matches the teacher's similarity of the same pair;
then the student's head is fitted on the teacher's predicted labels. No
labelled data is needed, only the teacher and a pool of unlabelled items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fewshot.cache import as_cache, embed
from fewshot.classifier import FewShotClassifier
from fewshot.encoders import get_encoder, guess_modality
from fewshot.errors import DataError, UsageError
from fewshot.training.fitting import fit_embeddings

__all__ = ["distill"]


def distill(
    teacher: Any,
    items: Sequence[Any],
    student: Any,
    *,
    head: Any = "auto",
    tune: bool | dict[str, Any] = True,
    max_items: int | None = 20000,
    seed: int = 0,
    cache: Any = True,
    show_progress: bool | None = None,
) -> FewShotClassifier:
    """A :class:`~fewshot.FewShotClassifier` with encoder ``student`` that mimics ``teacher``.

    ``teacher`` is a fitted classifier; ``items`` are unlabelled items of the
    teacher's modality; ``student`` is an encoder name, folder or
    :class:`~fewshot.encoders.Encoder` (copied, never changed). ``tune``: tune
    the student body on the teacher's pair similarities first (the ``distill``
    objective; a dict sets :class:`~fewshot.tuning.ContrastiveTuner` options).
    ``max_items`` caps the pool (a seeded sample) so cost stays bounded.
    ``distillation_`` on the result reports the student's agreement with the
    teacher on the pool.
    """
    from fewshot.tuning import as_tuner

    items = list(items)
    if len(items) < 2:
        raise DataError("distillation needs unlabelled items (at least 2); pass a larger pool")
    modality = guess_modality(items)
    if modality != teacher.encoder_.modality:
        raise DataError(
            f"the unlabelled items are {modality} but the teacher classifies "
            f"{teacher.encoder_.modality}; pass items of the teacher's kind"
        )
    if max_items is not None and len(items) > max_items:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in sorted(rng.choice(len(items), max_items, replace=False))]
    proba = teacher.predict_proba(items)
    labels = teacher.classes_[np.argmax(proba, axis=1)]
    predicted = np.unique(labels)
    if len(predicted) < 2:
        raise DataError(
            f"the teacher predicts one class ({predicted[0]}) for every pooled item; pass a "
            "more varied unlabelled pool"
        )
    enc = get_encoder(student, modality, show_progress=show_progress)
    if not isinstance(student, (str, os.PathLike)):
        enc = enc.loaded_copy()  # an Encoder or a model object: tuning must not change it
    tuning = None
    if tune is not False and tune is not None:
        settings = dict(tune) if isinstance(tune, dict) else {}
        if settings.get("validation_fraction") or "objective" in settings:
            raise UsageError(
                "distillation tunes on the teacher's pair similarities over the whole pool; "
                "drop validation_fraction and objective from tune"
            )
        tuner = as_tuner({"seed": seed, "show_progress": show_progress, "epochs": 1,
                          "pairs_per_item": 4, "max_steps": 500, "learning_rate": 5e-5,
                          **settings})
        assert tuner is not None
        tuner.set_params(objective="distill")
        report = tuner.tune(enc, items, labels, teacher=teacher.embed(items))
        tuning = {"settings": tuner.settings_record()[1], "report": report.to_dict(),
                  "distilled_from": teacher.encoder_.reference()}
    Z = embed(enc, items, as_cache(cache), show_progress=show_progress)
    model = fit_embeddings(enc, Z, labels.tolist(), head=head, calibration=None, tuning=tuning)
    agreement = float(np.mean(model.head.predict(Z) == labels))
    missing = sorted(map(str, set(teacher.classes_.tolist()) - set(predicted.tolist())))
    model.distillation = {
        "pool": len(items), "agreement_on_pool": round(agreement, 6),
        "teacher_classes_never_predicted": missing,
    }
    return FewShotClassifier.from_model(model, encoder=student, cache=cache,
                                        show_progress=show_progress)
