"""Distillation: train a smaller, faster student to match a fitted teacher.

As in the SetFit paper (Tunstall et al., 2022, section on distillation): on
unlabelled items, the student body is tuned so that the cosine similarity of
its embeddings of a pair matches the teacher's similarity of the same pair;
then the student's head is fitted on the teacher's predicted labels. No
labelled data is needed, only the teacher and a pool of unlabelled items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError
from fewshot.tuning.tuner import ContrastiveTuner

__all__ = ["distill"]


class _SimilarityTuner(ContrastiveTuner):
    """``pairs`` objective with the teacher's cosine similarities as targets."""

    teacher_embeddings: np.ndarray

    def _plan(self, y: np.ndarray, rng: np.random.Generator) -> list[Any]:
        n = len(y)
        left = np.repeat(np.arange(n), 2 * self.pairs_per_item)
        right = rng.integers(0, n, len(left))
        order = rng.permutation(len(left))
        left, right = left[order], right[order]
        half = max(1, self.batch_size // 2)
        # Targets are computed per batch in _loss: most planned pairs are never
        # reached under max_steps, and all of them at once cost 2 x pairs x dim floats.
        return [(left[i : i + half], right[i : i + half], None)
                for i in range(0, len(left), half)]

    def _loss(self, encoder: Any, prepared: list[Any], labels: Any, batch: Any) -> Any:
        left, right, _ = batch
        t = self.teacher_embeddings
        target = np.einsum("ij,ij->i", t[left], t[right]).astype(np.float32)
        return super()._loss(encoder, prepared, labels, (left, right, target))


def distill(
    teacher: Any,
    items: Sequence[Any],
    student: Any,
    *,
    head: Any = "logreg",
    tune: bool | dict[str, Any] = True,
    max_items: int | None = 20000,
    seed: int = 0,
    cache: Any = True,
    show_progress: bool | None = None,
) -> Any:
    """A :class:`~fewshot.FewShotClassifier` with encoder ``student`` that mimics ``teacher``.

    ``teacher`` is a fitted classifier; ``items`` are unlabelled items of the
    teacher's modality; ``student`` is an encoder name, folder or
    :class:`~fewshot.encoders.Encoder` (copied, never changed). ``tune``: tune
    the student body on the teacher's pair similarities first (a dict sets
    :class:`ContrastiveTuner` options). ``max_items`` caps the pool (a seeded
    sample) so cost stays bounded. ``distillation_`` on the result reports the
    student's agreement with the teacher on the pool.
    """
    import os

    from fewshot.classifier import FewShotClassifier, guess_modality
    from fewshot.encoders import get_encoder

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
    student_clf = FewShotClassifier(student, head, cache=cache, show_progress=show_progress)
    if isinstance(student, (str, os.PathLike)):
        enc = get_encoder(student, modality, show_progress=show_progress)
    else:  # an Encoder or a model object: tuning must not change the caller's
        enc = get_encoder(student, modality).loaded_copy()
    student_clf.tuning_ = None
    if tune is not False and tune is not None:
        settings = dict(tune) if isinstance(tune, dict) else {}
        if settings.get("validation_fraction") or "objective" in settings:
            raise UsageError(
                "distillation tunes on the teacher's pair similarities over the whole pool; "
                "drop validation_fraction and objective from tune"
            )
        from fewshot.tuning.tuner import as_tuner

        as_tuner(settings)  # unknown settings are a usage error here too
        tuner = _SimilarityTuner(
            objective="pairs",
            **({"seed": seed, "show_progress": show_progress, "epochs": 1,
                "pairs_per_item": 4, "max_steps": 500, "learning_rate": 5e-5} | settings),
        )
        t = np.asarray(teacher.embed(items), dtype=np.float32)
        # Cosine targets, whether or not the teacher normalises its embeddings.
        tuner.teacher_embeddings = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True),
                                                  1e-12)
        report = tuner.tune(enc, items, labels)
        student_clf.tuning_ = {"settings": tuner.settings_record()[1],
                               "report": report.to_dict(),
                               "distilled_from": teacher.encoder_.reference()}
    student_clf.encoder_ = enc
    Z = student_clf._embed_rows(items)
    student_clf.self_training_ = None
    student_clf._fit_embeddings(Z, labels.tolist(), extra=None)
    student_clf.n_train_ = len(items)
    agreement = float(np.mean(student_clf.head_.predict(Z) == labels))
    missing = sorted(map(str, set(teacher.classes_.tolist()) - set(predicted.tolist())))
    student_clf.distillation_ = {
        "pool": len(items), "agreement_on_pool": round(agreement, 6),
        "teacher_classes_never_predicted": missing,
    }
    return student_clf
