"""ContrastiveTuner: fine-tune an encoder's body on a few labelled examples.

One training loop for every encoder: it asks the encoder for its torch module,
for model inputs of a batch (``training_batch``) and for embeddings with
gradients (``training_forward``), so text (sentence-transformers) and image
(timm) encoders share it. After tuning, fit any head on the tuned embeddings;
:class:`~fewshot.FewShotClassifier` does both with ``tune=``.
"""

from __future__ import annotations

import copy
import numbers
import random
import time
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import normalize

from fewshot.errors import DataError, UsageError
from fewshot.tuning.objectives import (
    IN_BATCH,
    OBJECTIVES,
    OVERLAPS,
    inbatch_cosine_loss,
    pair_cosine_loss,
    resolve_objective,
    supcon_loss,
)
from fewshot.tuning.sampling import (
    class_balanced_batches,
    label_groups,
    random_pairs,
    sample_label_list_pairs,
    sample_pairs,
)

__all__ = ["ContrastiveTuner", "TuningReport", "as_tuner"]


@dataclass
class TuningReport:
    """What a tuning run did; saved in the model's ``fewshot.json``."""

    objective: str
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    stopped: str = "epochs"
    trainable_parameters: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    #: With ``refit``: epochs of the second run on every labelled item (0: the
    #: untuned body scored best on the held-out items and was kept).
    refit_epochs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ContrastiveTuner(BaseEstimator):
    """Contrastive fine-tuning of an encoder body, SetFit-style but cheaper.

    Parameters
    ----------
    objective:
        ``"auto"`` (default: ``"cosine"`` with fewer than 20 classes,
        ``"supcon"`` from 20 on, and for text then also learning rate 2e-5 and
        2 items per class in a batch unless set), ``"cosine"`` (SetFit's cosine-similarity
        loss over every pair of a class-aware batch, one forward pass per
        item), ``"supcon"`` (supervised contrastive loss on the same batches)
        or ``"pairs"`` (SetFit's loss on sampled pairs, two forward passes per
        pair). See docs/benchmarks.md for the measurement behind the default.
        ``"distill"`` matches a teacher's similarities on random pairs (see
        :func:`fewshot.distillation.distill`).
    epochs:
        Passes over the labelled items (``pairs``: over the sampled pairs).
        ``None``: 20 for text encoders, 10 for image encoders.
    max_steps:
        Cap on optimizer steps, so cost stays bounded with many examples or
        classes. ``None`` for no cap.
    time_budget:
        Stop after this many seconds of training (checked after each step).
    batch_size, per_class:
        Items per batch, and items of one class grouped together in it
        (``cosine``, ``supcon``; every item then has positives in its batch).
        ``per_class=None``: 4, or 2 (16 classes in a batch of 32) when ``auto``
        chose ``supcon`` for a text encoder.
    learning_rate, weight_decay, warmup_ratio:
        AdamW with linear warm-up and decay. ``learning_rate=None``: 1e-4 for
        text encoders, 2e-5 for image encoders (pretrained ImageNet features
        are easily disturbed by a few images; measured in docs/benchmarks.md)
        and for text when ``auto`` chose ``supcon`` (20 classes or more: with
        77 banking intents, 1e-4 undid more of the pretrained geometry than the
        examples rebuilt; measured in docs/benchmarks.md).
    temperature:
        Softmax temperature of the ``supcon`` loss. ``None``: 0.1 for text
        encoders, 0.07 for image encoders.
    pairs_per_item:
        ``pairs``: positive pairs and negative pairs sampled per item, so
        ``2 * pairs_per_item * n`` pairs in all (linear in n).
    freeze_embeddings:
        Keep token-embedding tables (``nn.Embedding``) fixed: they hold half of
        MiniLM's parameters, and the words of a few examples cannot retrain them.
    trainable_fraction:
        Update only the top layers: the last parameter tensors, in the module's
        order (input to output), that hold this fraction of the trainable
        weights. Backpropagation then stops below them, which is cheaper.
    train_layers:
        Text encoders with a transformer body: train only its top this many layers
        (and the modules after them). The layers below run once over the training
        items before the first step and their output is reused, so each step costs
        only the top layers' forward and backward pass. ``None``: every layer.
        The cached layers run in eval mode (no dropout), and the embedding layer is
        never trained this way, even with ``freeze_embeddings=False`` and
        ``train_layers`` set to the body's layer count.
    augment:
        Image encoders: random crops of each image every epoch (off by
        default: it lowered accuracy on both image benchmarks).
    validation_fraction, patience:
        Hold out this fraction of the labelled items (per class, at least one
        item kept for training), score nearest-centroid accuracy on them after
        each epoch, stop after ``patience`` epochs without improvement and keep
        the best weights. ``tune(..., validation=(items, labels))`` gives an
        explicit validation set instead.
    refit:
        With ``validation_fraction``: once the held-out items have picked the best
        epoch, start again from the untuned weights and train on every labelled item
        for that many epochs; when no epoch beat the untuned body there, keep it
        untuned. Without it the weights of the best epoch, trained on the items not
        held out, are kept.
    label_overlap:
        Label lists (multi-label rows): ``"jaccard"`` (default) makes a pair's
        target its Jaccard overlap (shared labels over the labels of either row),
        ``"shared"`` makes it 1 whenever the two rows share a label (as the setfit
        library does); see :mod:`fewshot.tuning.objectives`. The default was set
        before measuring; docs/benchmarks.md ("Tuned vs the setfit library") has
        the comparison's status. Batches group each row with others
        of its rarest label, so rare labels always have positives in a batch. No
        effect on one-label-per-item data.
    mixed_precision:
        ``"auto"`` (bfloat16 autocast on a GPU that supports it, off on CPU),
        ``"bf16"``, ``"fp16"`` or ``"no"``.
    seed:
        Seeds batch order, dropout and augmentation; on CPU the same seed gives
        the same weights.
    """

    def __init__(
        self,
        objective: str = "auto",
        *,
        epochs: int | None = None,
        max_steps: int | None = 200,
        time_budget: float | None = None,
        batch_size: int = 32,
        per_class: int | None = None,
        learning_rate: float | None = None,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        temperature: float | None = None,
        pairs_per_item: int = 4,
        freeze_embeddings: bool = True,
        trainable_fraction: float = 1.0,
        train_layers: int | None = None,
        augment: bool = False,
        validation_fraction: float = 0.0,
        patience: int = 2,
        refit: bool = False,
        label_overlap: str = "jaccard",
        mixed_precision: str = "auto",
        seed: int = 0,
        show_progress: bool | None = None,
    ) -> None:
        self.objective = objective
        self.epochs = epochs
        self.max_steps = max_steps
        self.time_budget = time_budget
        self.batch_size = batch_size
        self.per_class = per_class
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.temperature = temperature
        self.pairs_per_item = pairs_per_item
        self.freeze_embeddings = freeze_embeddings
        self.trainable_fraction = trainable_fraction
        self.train_layers = train_layers
        self.augment = augment
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.refit = refit
        self.label_overlap = label_overlap
        self.mixed_precision = mixed_precision
        self.seed = seed
        self.show_progress = show_progress

    def _check(self) -> None:
        hints = typing.get_type_hints(ContrastiveTuner.__init__)
        for name, value in self.get_params().items():
            if not _fits(value, typing.get_args(hints[name]) or (hints[name],)):
                raise UsageError(f"tuning setting {name} takes {_kind(hints[name])}, got "
                                 f"{value!r}")
        if self.objective not in OBJECTIVES:
            raise UsageError(
                f"unknown tuning objective '{self.objective}'; choose {', '.join(OBJECTIVES)}"
            )
        for name in ("epochs", "batch_size", "per_class", "pairs_per_item", "train_layers"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise UsageError(f"tuning {name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "temperature", "time_budget"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"tuning {name} must be positive, got {value}")
        if not 0.0 < self.trainable_fraction <= 1.0:
            raise UsageError(
                f"trainable_fraction must be in (0, 1], got {self.trainable_fraction}"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UsageError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.patience < 1:
            raise UsageError(f"patience must be at least 1, got {self.patience}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"tuning max_steps must be at least 1 or None, got {self.max_steps}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise UsageError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.label_overlap not in OVERLAPS:
            raise UsageError(f"unknown label_overlap '{self.label_overlap}'; choose "
                             f"{' or '.join(OVERLAPS)}")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise UsageError(
                f"unknown mixed_precision '{self.mixed_precision}'; choose auto, bf16, fp16 or no"
            )

    def settings_record(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(requested, ran)`` for a saved model: the settings as given (to refit with)
        and, after :meth:`tune`, with "auto" epochs, learning rate, temperature and items
        per class resolved.
        """
        requested = {k: v for k, v in self.get_params().items() if k != "show_progress"}
        ran = {**requested, "epochs": self.epochs_, "learning_rate": self.learning_rate_,
               "temperature": self.temperature_, "per_class": self.per_class_}
        return requested, ran

    # -- the loop -------------------------------------------------------------------
    def tune(
        self,
        encoder: Any,
        items: Sequence[Any],
        labels: Sequence[Any],
        *,
        validation: tuple[Sequence[Any], Sequence[Any]] | None = None,
        teacher: np.ndarray | None = None,
    ) -> TuningReport:
        """Fine-tune ``encoder`` in place on ``items``/``labels``; returns a report.

        ``labels``: one label per item, or a list of labels per item (multi-label;
        an empty list is an item with no label, a negative for every labelled one).
        ``teacher`` (the ``distill`` objective): a teacher's embeddings of
        ``items``, whose cosine similarities the encoder learns to match.

        Afterwards the encoder is in eval mode, ``encoder.is_tuned`` is true and
        its ``id`` is recomputed from the new weights.
        """
        import torch

        self._check()
        if (teacher is None) == (self.objective == "distill"):
            raise UsageError("the distill objective, and it alone, tunes on a teacher's "
                             "embeddings; use fewshot.distillation.distill (fewshot distill)")
        self.teacher_ = None if teacher is None else normalize(np.asarray(teacher, np.float32))
        items, labels = list(items), list(labels)
        if len(items) != len(labels):
            raise DataError(f"got {len(items)} items but {len(labels)} labels; give one per item")
        self._indicator: np.ndarray | None = None
        if any(isinstance(v, list | tuple | set | frozenset) for v in labels):
            classes, y = self._label_lists(labels, validation)
        else:
            classes, y = np.unique(np.asarray(labels), return_inverse=True)
        if len(classes) < 2:
            raise DataError(
                "contrastive tuning needs at least two classes; add examples of another class "
                "or train without tuning"
            )
        counts = (self._indicator.sum(axis=0) if self._indicator is not None
                  else np.bincount(y))
        if counts.max() < 2:
            raise DataError(
                "contrastive tuning needs a class with at least two examples; add examples "
                "or train without tuning"
            )
        self.objective_ = resolve_objective(self.objective, len(classes))
        (self.epochs_, self.learning_rate_, self.temperature_,
         self.per_class_) = self._resolved(encoder, self.objective_)
        train_idx, val_items, val_y = self._validation_split(items, y, classes, validation)
        module = encoder.training_module()
        if self.train_layers is not None and not hasattr(encoder, "training_layers"):
            raise UsageError(f"train_layers applies to text encoders with a transformer body, "
                             f"not {type(encoder).__name__}; use trainable_fraction")
        # A second tuning run builds on the first: the base stays the pretrained files.
        previous = dict(encoder.tuned_) if encoder.is_tuned else {}
        base_id = previous.get("base_id") or encoder.id
        prepared = self._prepare(encoder, [items[i] for i in train_idx])
        y_train = y[train_idx]
        if self._indicator is not None:
            self._indicator = self._indicator[train_idx]
        val_prepared = self._prepare(encoder, val_items) if val_items else []
        # Below the top train_layers nothing is in the graph, so the used parameters are
        # exactly the top layers' (and whatever comes after them).
        used = (self._used_parameters(encoder, module, prepared)
                if self.trainable_fraction < 1.0 or self.train_layers is not None else None)
        named = self._trainable(module, named=True, used=used)
        names = [n for n, _ in named]
        if previous.get("parameters"):
            names = sorted(set(names) | set(previous["parameters"]))
        info = {"base_id": base_id, "objective": self.objective_, "parameters": names}
        # Marked before the first step: weights changed by a run that then fails or is
        # interrupted must never be identified (or cached) as the frozen encoder.
        encoder.mark_tuned({**info, "complete": False})
        report = TuningReport(objective=self.objective_)
        devices = [torch.device(encoder.device_).index or 0] if str(
            encoder.device_).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            random_state = random.getstate()
            torch.manual_seed(self.seed)
            random.seed(self.seed)
            # Parameters outside the trained set get no gradients at all, so
            # backpropagation stops below the lowest trained layer.
            trained = {id(p) for _, p in named}
            flags = {id(p): p.requires_grad for p in module.parameters()}
            for p in module.parameters():
                p.requires_grad_(id(p) in trained)
            try:
                initial = ({n: p.detach().to("cpu", copy=True) for n, p in named}
                           if self.refit and val_prepared and validation is None else None)
                self._train(encoder, module, named, prepared, y_train, val_prepared, val_y,
                            report)
                if initial is not None:
                    self._refit(encoder, module, named, initial, items, y, report)
            finally:
                self._indicator = None
                random.setstate(random_state)
                for p in module.parameters():
                    p.grad = None  # the last step's gradients would hold memory
                    p.requires_grad_(flags[id(p)])
                module.eval()
        encoder.mark_tuned(info)
        return report

    def _refit(self, encoder: Any, module: Any, named: list[Any], initial: dict[str, Any],
               items: list[Any], y: np.ndarray, report: TuningReport) -> None:
        """Train again from ``initial`` on every item for the best epoch count; the
        untuned weights stay when epoch 0 was best."""
        import torch

        best = int(report.best_epoch or 0)
        report.refit_epochs = best
        if best == 0:
            return  # _train restored the untuned weights
        with torch.no_grad():
            for n, p in named:
                p.copy_(initial[n].to(p.device))
        # Seeded as tune() seeds a run: the result is the run tune(epochs=best) makes.
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        chosen, self.epochs_ = self.epochs_, best
        again = TuningReport(objective=report.objective)
        try:
            self._train(encoder, module, named, self._prepare(encoder, items), y, [],
                        np.zeros(0, int), again)
        finally:
            self.epochs_ = chosen
        report.steps += again.steps
        report.seconds = round(report.seconds + again.seconds, 3)

    def _prepare(self, encoder: Any, items: list[Any]) -> list[Any]:
        if self.train_layers is None:
            return list(encoder.training_items(items))
        return list(encoder.training_items(items, train_layers=self.train_layers))

    def _label_lists(
        self, labels: list[Any], validation: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Label lists -> ``(label names, batch group per row)``; the indicator matrix
        is kept for the losses while tuning runs."""
        from sklearn.preprocessing import MultiLabelBinarizer

        odd = next((i for i, v in enumerate(labels)
                    if not isinstance(v, list | tuple | set | frozenset)), None)
        if odd is not None:
            raise DataError(f"label {odd} is {labels[odd]!r} but other items have label lists; "
                            "give every item a list of labels (multi-label) or one label each")
        if validation is not None or self.validation_fraction > 0:
            raise UsageError("validation and early stopping score one label per item; set "
                             "validation_fraction=0 and validation=None for multi-label data")
        binarizer = MultiLabelBinarizer()
        self._indicator = binarizer.fit_transform([list(v) for v in labels]).astype(np.int8)
        return np.asarray(binarizer.classes_), label_groups(self._indicator)

    #: ``(epochs, learning_rate, temperature, per_class)`` used when left as None, per
    #: modality (chosen in pilot runs; see docs/benchmarks.md, "Contrastive tuning").
    DEFAULTS = {"text": (20, 1e-4, 0.1, 4), "image": (10, 2e-5, 0.07, 4)}
    #: ``(learning_rate, per_class)`` for text when ``auto`` chose ``supcon`` (many
    #: classes): more classes per batch, and a gentler step (banking77, 64 shots).
    MANY_CLASSES_TEXT = (2e-5, 2)
    def _resolved(self, encoder: Any, objective: str) -> tuple[int, float, float, int]:
        """Settings left as None, given the modality and the objective ``auto`` chose."""
        modality = getattr(encoder, "modality", "")
        epochs, lr, temp, per_class = self.DEFAULTS.get(modality, self.DEFAULTS["text"])
        if self.objective == "auto" and objective == "supcon" and modality != "image":
            lr, per_class = self.MANY_CLASSES_TEXT
        return (
            int(self.epochs) if self.epochs is not None else epochs,
            float(self.learning_rate) if self.learning_rate is not None else lr,
            float(self.temperature) if self.temperature is not None else temp,
            int(self.per_class) if self.per_class is not None else per_class,
        )

    def _validation_split(
        self,
        items: list[Any],
        y: np.ndarray,
        classes: np.ndarray,
        validation: tuple[Sequence[Any], Sequence[Any]] | None,
    ) -> tuple[np.ndarray, list[Any], np.ndarray]:
        all_idx = np.arange(len(items))
        if validation is not None:
            v_items, v_labels = list(validation[0]), np.asarray(list(validation[1]))
            if not v_items or len(v_items) != len(v_labels):
                raise DataError(
                    f"validation needs items and labels of the same nonzero length, got "
                    f"{len(v_items)} and {len(v_labels)}; pass validation=None to tune "
                    "without one"
                )
            index = {c: i for i, c in enumerate(classes.tolist())}
            unknown = sorted({str(v) for v in v_labels.tolist() if v not in index})
            if unknown:
                raise DataError(
                    f"validation labels {', '.join(unknown[:5])} are not training labels; "
                    "drop those rows or add training examples of them"
                )
            return all_idx, v_items, np.asarray([index[v] for v in v_labels.tolist()])
        if self.validation_fraction <= 0:
            return all_idx, [], np.zeros(0, int)
        rng = np.random.default_rng(self.seed + 7919)
        held: list[int] = []
        for c in range(len(classes)):
            idx = rng.permutation(np.flatnonzero(y == c))
            k = min(len(idx) - 2, int(round(self.validation_fraction * len(idx))))  # keep 2
            held.extend(idx[: max(k, 0)].tolist())
        if not held:
            raise DataError(
                "too few examples per class to hold out a validation set; set "
                "validation_fraction=0 or give more examples"
            )
        keep = np.setdiff1d(all_idx, held)
        return keep, [items[i] for i in sorted(held)], y[sorted(held)]

    def _plan(self, y: np.ndarray, rng: np.random.Generator) -> list[Any]:
        """One epoch of batches (index arrays; ``pairs``: (left, right, target))."""
        if self.objective_ in IN_BATCH:
            return class_balanced_batches(y, self.batch_size, self.per_class_, rng)
        if self.objective_ == "distill":
            # Targets are looked up per batch in _loss: under max_steps most planned
            # pairs are never reached, and all at once cost 2 x pairs x dim floats.
            left, right = random_pairs(len(y), self.pairs_per_item, rng)
            target = np.full(len(left), np.nan, np.float32)
        elif self._indicator is not None:
            left, right, target = sample_label_list_pairs(
                self._indicator, self.pairs_per_item, rng, self.label_overlap)
        else:
            left, right, target = sample_pairs(y, self.pairs_per_item, rng)
        half = max(1, self.batch_size // 2)  # two forward passes per pair
        return [
            (left[i : i + half], right[i : i + half], target[i : i + half])
            for i in range(0, len(left), half)
        ]

    def _train(
        self,
        encoder: Any,
        module: Any,
        named: list[Any],
        prepared: list[Any],
        y: np.ndarray,
        val_prepared: list[Any],
        val_y: np.ndarray,
        report: TuningReport,
    ) -> None:
        import torch
        from transformers import get_linear_schedule_with_warmup

        from fewshot._progress import progress

        rng = np.random.default_rng(self.seed)
        params = [p for _, p in named]
        report.trainable_parameters = int(sum(p.numel() for p in params))
        # Every epoch planned up front: batch counts can differ between epochs when
        # class sizes do not divide evenly, and the schedule needs the true total.
        epochs = [self._plan(y, rng) for _ in range(self.epochs_)]
        planned = sum(len(b) for b in epochs)
        total = planned if self.max_steps is None else min(planned, self.max_steps)
        optimizer = torch.optim.AdamW(
            params, lr=self.learning_rate_, weight_decay=self.weight_decay
        )
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(self.warmup_ratio * total), total
        )
        autocast, scaler = self._precision(encoder.device_)
        # Label lists: the indicator matrix, from which the losses take pair targets.
        labels_t = torch.as_tensor(y if self._indicator is None else self._indicator,
                                   device=encoder.device_)

        def snapshot() -> dict[str, Any]:
            return {n: p.detach().to("cpu", copy=True) for n, p in named}

        best_score: tuple[float, float] | None = None
        best_state, bad_epochs = None, 0
        if val_prepared:  # the untuned weights are a candidate too
            best_score = self._validate(encoder, module, prepared, y, val_prepared, val_y)
            best_state, report.best_epoch = snapshot(), 0
        start = time.perf_counter()
        step, running = 0, None
        stopped = None
        self._set_train_mode(module)
        with progress("Tuning encoder", total, self.show_progress) as advance:
            for epoch, batches in enumerate(epochs, start=1):
                losses = []
                for batch in batches:
                    with autocast():
                        loss = self._loss(encoder, prepared, labels_t, batch)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    scheduler.step()
                    value = float(loss.detach())
                    losses.append(value)
                    running = value if running is None else 0.9 * running + 0.1 * value
                    step += 1
                    advance(1, info=f"loss {running:.4f}")
                    if step >= total:
                        stopped = "epochs" if step == planned else "max_steps"
                        break
                    if self.time_budget is not None and (
                        time.perf_counter() - start >= self.time_budget
                    ):
                        stopped = "time_budget"
                        break
                report.epoch_losses.append(float(np.mean(losses)) if losses else 0.0)
                if val_prepared:
                    score = self._validate(encoder, module, prepared, y, val_prepared, val_y)
                    report.validation_scores.append(round(score[0], 6))
                    if best_score is None or score > best_score:
                        best_score, bad_epochs = score, 0
                        report.best_epoch = epoch
                        best_state = snapshot()
                    else:
                        bad_epochs += 1
                        if bad_epochs >= self.patience and stopped is None:
                            stopped = "early_stopping"
                if stopped is not None:
                    break
        report.stopped = stopped or "epochs"
        if best_state is not None:
            with torch.no_grad():
                for n, p in named:
                    p.copy_(best_state[n].to(p.device))
        report.steps = step
        per_epoch = planned / max(1, len(epochs))
        report.epochs = round(step / max(1.0, per_epoch), 3)
        report.seconds = round(time.perf_counter() - start, 3)

    def _loss(self, encoder: Any, prepared: list[Any], labels: Any, batch: Any) -> Any:
        import torch

        if self.objective_ in IN_BATCH:
            idx = batch
            inputs = encoder.training_batch([prepared[i] for i in idx], augment=self.augment)
            emb = encoder.training_forward(inputs)
            batch_labels = labels[torch.as_tensor(idx, device=labels.device)]
            with _no_autocast(emb):  # similarities / temperature need float32
                if self.objective_ == "cosine":
                    return inbatch_cosine_loss(emb, batch_labels, self.label_overlap)
                return supcon_loss(emb, batch_labels, self.temperature_, self.label_overlap)
        left, right, target = batch
        if self.teacher_ is not None:
            target = np.einsum("ij,ij->i", self.teacher_[left], self.teacher_[right])
        idx = np.concatenate([left, right])
        inputs = encoder.training_batch([prepared[i] for i in idx], augment=self.augment)
        emb = encoder.training_forward(inputs)
        a, b = emb[: len(left)], emb[len(left):]
        with _no_autocast(emb):
            return pair_cosine_loss(a, b, torch.as_tensor(target, device=emb.device))

    def _validate(
        self, encoder: Any, module: Any, prepared: list[Any], y: np.ndarray,
        val_prepared: list[Any], val_y: np.ndarray,
    ) -> tuple[float, float]:
        """Nearest-centroid accuracy of the validation items, and their mean margin."""
        from fewshot.encoders.base import normalize_rows

        module.eval()
        try:
            zt, zv = (normalize_rows(self._embed(encoder, xs)) for xs in (prepared, val_prepared))
        finally:
            self._set_train_mode(module)
        centroids = np.stack([zt[y == c].mean(0) for c in range(int(y.max()) + 1)])
        sims = zv @ centroids.T
        true = sims[np.arange(len(val_y)), val_y]
        sims[np.arange(len(val_y)), val_y] = -np.inf
        accuracy = float(np.mean(true > sims.max(axis=1)))
        return accuracy, float(np.mean(true - sims.max(axis=1)))

    def _embed(self, encoder: Any, prepared: list[Any]) -> np.ndarray:
        """Embeddings of prepared items (eval mode): ``encode`` for plain items, the
        training forward pass for items that carry cached lower layers."""
        import torch

        if self.train_layers is None:
            return np.asarray(encoder.encode(prepared, show_progress=False))
        with torch.no_grad():
            return np.concatenate([
                encoder.training_forward(encoder.training_batch(prepared[i : i + 64]))
                .float().cpu().numpy() for i in range(0, len(prepared), 64)])

    # -- torch details -------------------------------------------------------------
    @staticmethod
    def _used_parameters(encoder: Any, module: Any, prepared: list[Any]) -> set[int]:
        """Ids of the parameters the embedding depends on, from one small backward pass.

        Models carry weights their embedding never uses (BERT's pooler under mean
        pooling, say); counted in ``trainable_fraction`` they would take its budget.
        """
        import torch

        flags = {id(p): p.requires_grad for p in module.parameters()}
        module.eval()  # no dropout: leaves the random streams alone
        try:
            for p in module.parameters():
                p.grad = None
                p.requires_grad_(True)
            with torch.enable_grad():
                emb = encoder.training_forward(encoder.training_batch(prepared[:2]))
                emb.float().sum().backward()
            return {id(p) for p in module.parameters() if p.grad is not None}
        finally:
            for p in module.parameters():
                p.grad = None
                p.requires_grad_(flags[id(p)])

    def _trainable(
        self, module: Any, *, named: bool = False, used: set[int] | None = None,
    ) -> list[Any]:
        """Parameters tuning updates (``(name, parameter)`` pairs with ``named``).

        ``used``: ids of the parameters the embedding depends on; the others are
        left out before ``trainable_fraction`` picks the top of the network.
        """
        import torch

        frozen: set[int] = set()
        if self.freeze_embeddings:
            for m in module.modules():
                if isinstance(m, torch.nn.Embedding):
                    frozen.update(id(p) for p in m.parameters())
        pairs = [(n, p) for n, p in module.named_parameters()
                 if id(p) not in frozen and p.requires_grad
                 and (used is None or id(p) in used)]
        if pairs and self.trainable_fraction < 1.0:
            sizes = np.array([p.numel() for _, p in pairs], dtype=np.float64)
            from_top = np.cumsum(sizes[::-1])[::-1]  # weights at or above each tensor
            pairs = [pair for pair, above in zip(pairs, from_top, strict=True)
                     if above <= self.trainable_fraction * sizes.sum() + 0.5]
        if not pairs:
            raise UsageError(
                "the encoder has no trainable parameters besides its embedding tables; "
                "tune with freeze_embeddings=False"
            )
        return pairs if named else [p for _, p in pairs]

    @staticmethod
    def _set_train_mode(module: Any) -> None:
        """Train mode (dropout on), but normalisation layers keep their running statistics."""
        import torch

        module.train()
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                m.eval()

    def _precision(self, device: str) -> tuple[Any, Any]:
        import contextlib

        import torch

        mode = self.mixed_precision
        on_gpu = str(device).startswith("cuda")
        if mode == "auto":
            mode = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
        if mode == "no":
            return contextlib.nullcontext, None
        if not on_gpu:
            raise UsageError(f"mixed_precision='{mode}' needs a CUDA device; use 'no' on {device}")
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        scaler = None
        if mode == "fp16":  # torch.amp.GradScaler is torch >= 2.3
            scaler = (torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler")
                      else torch.cuda.amp.GradScaler())
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _no_autocast(tensor: Any) -> Any:
    """Float32 inside; autocast is only ever turned on for CUDA, and torch < 2.5
    refuses ``torch.autocast("mps", ...)`` even when disabled."""
    import contextlib

    import torch

    if tensor.device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", enabled=False)


def _fits(value: Any, types: tuple[Any, ...]) -> bool:
    """``value`` is one of ``types`` (int: a whole number; float: any real number; bools only
    where bool is asked for)."""
    if isinstance(value, bool | np.bool_):
        return bool in types
    if value is None:
        return type(None) in types
    if float in types and isinstance(value, numbers.Real):
        return True
    return (int in types and isinstance(value, numbers.Real) and float(value).is_integer()) or (
        str in types and isinstance(value, str))


def _kind(hint: Any) -> str:
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a name"}
    return " or ".join(names[t] for t in (typing.get_args(hint) or (hint,)) if t in names)


def as_tuner(tune: Any, **defaults: Any) -> ContrastiveTuner | None:
    """``tune=`` argument -> a checked tuner: False/None, True, an objective name, a dict
    or a tuner. A bad setting is a UsageError here, before any data is read."""
    if tune is None or tune is False:
        return None
    if isinstance(tune, ContrastiveTuner):
        tuner = copy.deepcopy(tune)
    elif tune is True:
        tuner = ContrastiveTuner(**defaults)
    elif isinstance(tune, str):
        tuner = ContrastiveTuner(objective=tune, **defaults)
    elif isinstance(tune, dict):
        known = set(ContrastiveTuner().get_params())
        unknown = sorted(set(tune) - known)
        if unknown:
            raise UsageError(
                f"unknown tuning setting(s) {', '.join(unknown)}; choose from "
                f"{', '.join(sorted(known))}"
            )
        tuner = ContrastiveTuner(**{**defaults, **tune})
    else:
        raise UsageError(
            f"tune={tune!r} is not understood; pass True, an objective name "
            f"({', '.join(OBJECTIVES)}), a dict of "
            "ContrastiveTuner settings or a ContrastiveTuner"
        )
    tuner._check()
    if tuner.objective == "distill":
        raise UsageError("the distill objective tunes on a teacher's embeddings; use "
                         "fewshot.distillation.distill (fewshot distill)")
    return tuner
