"""Benchmark methods: named ways to fit on a few-shot split and predict the test set.

A method gets a :class:`Task` (the split's items, labels and, for methods that
use them, frozen embeddings) and returns predictions with its fit and predict
wall times. On a multi-label dataset labels and predictions are label lists;
fewshot's methods then decide by per-label thresholds, as ``FewShotClassifier``
does. New methods (contrastive tuning, other libraries) register a
factory under a name with :func:`register_method`; the runner needs no change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fewshot.errors import UsageError

__all__ = [
    "METHODS",
    "Method",
    "MethodResult",
    "Task",
    "get_method",
    "method_settings",
    "register_method",
    "settings_fingerprint",
]


@dataclass
class Task:
    """One fit: a dataset's few-shot split (``n_shot``, ``seed``) and its test set.

    ``train_labels``/``test_labels``: one label per item, or (``multi_label``) a list
    of labels per item.
    """

    dataset: str
    modality: str
    n_shot: int
    seed: int
    train_items: list[Any]
    train_labels: list[Any]
    test_items: list[Any]
    test_labels: list[Any]
    encoder: Any
    train_embeddings: np.ndarray | None = None
    test_embeddings: np.ndarray | None = None
    multi_label: bool = False


@dataclass
class MethodResult:
    #: One label per test item, or (multi-label) a list of labels per test item.
    predictions: list[Any]
    fit_seconds: float
    predict_seconds: float
    #: CPU seconds of the fit (every thread of this process): on a shared machine less
    #: swayed than wall time by what else runs. None where a method does not measure it.
    fit_cpu_seconds: float | None = None


class Method(Protocol):
    name: str
    #: True if the method works on the frozen embeddings the runner computes once.
    uses_embeddings: bool

    def run(self, task: Task) -> MethodResult: ...


def method_settings(method: Any) -> dict[str, Any]:
    """Every setting a method's result depends on, defaults included (JSON).

    A method without ``settings()`` (a third-party one registered by name) records
    none; the runner then resumes its rows by name alone.
    """
    import json

    get = getattr(method, "settings", None)
    settings = dict(get()) if callable(get) else {}
    # As JSON holds them (numpy scalars, paths -> plain values), so the row can be written
    # and the hash of a resumed run matches.
    return dict(json.loads(json.dumps(settings, default=_plain)))


def _plain(value: Any) -> Any:
    """JSON for numpy values, paths and the like; refuses what has no stable text."""
    from fewshot._io import json_default

    try:
        return json_default(value)
    except TypeError:
        if type(value).__repr__ is object.__repr__:  # "<X object at 0x...>": differs every run
            raise UsageError(
                f"method setting {value!r} has no stable text form, so results could never "
                "resume; give settings as numbers, strings or lists"
            ) from None
        return str(value)


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Short stable hash of :func:`method_settings`, part of the resume key."""
    import hashlib
    import json

    blob = json.dumps(settings, sort_keys=True, default=_plain).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


class HeadMethod:
    """A fewshot head on frozen embeddings; fit time is the head's alone."""

    uses_embeddings = True

    def __init__(self, name: str, head: str, **params: Any) -> None:
        self.name = name
        self.head = head
        self.params = params

    def settings(self) -> dict[str, Any]:
        from fewshot.heads import make_head

        return {"head": self.head, **make_head(self.head, **self.params).get_params()}

    def run(self, task: Task) -> MethodResult:
        from fewshot.heads import make_head

        assert task.train_embeddings is not None and task.test_embeddings is not None
        head = make_head(self.head, **self.params)
        if task.multi_label:
            from fewshot.training.fitting import fit_embeddings

            start = time.perf_counter()
            model = fit_embeddings(task.encoder, task.train_embeddings, task.train_labels,
                                   head=head, calibration=None)
            fitted = time.perf_counter()
            rows = _predict(model, task.test_embeddings)
            return MethodResult(rows, fitted - start, time.perf_counter() - fitted)
        start = time.perf_counter()
        head.fit(task.train_embeddings, np.asarray(task.train_labels))
        fitted = time.perf_counter()
        pred = head.predict(task.test_embeddings)
        done = time.perf_counter()
        return MethodResult([str(p) for p in pred], fitted - start, done - fitted)


class TunedMethod:
    """Contrastive tuning of a copy of the encoder, then a head on the tuned embeddings.

    Fit time covers copying the encoder, tuning, embedding the training items
    and fitting the head; predict time covers embedding the test set with the
    tuned body (which no cache can hold in advance).
    """

    uses_embeddings = False

    def __init__(self, name: str, head: str, **tuner_params: Any) -> None:
        self.name = name
        self.head = head
        self.tuner_params = tuner_params

    def settings(self) -> dict[str, Any]:
        """Head and tuner settings, with the defaults the tuner fills in when run.

        The seed is the split's, and progress bars change nothing, so neither is here.
        """
        from fewshot.heads import make_head
        from fewshot.tuning import ContrastiveTuner

        tuner = ContrastiveTuner(**self.tuner_params)
        params = {k: v for k, v in tuner.get_params().items()
                  if k not in ("seed", "show_progress")}
        return {
            "head": self.head, **make_head(self.head).get_params(), "tuner": params,
            "tuner_defaults": {k: list(v) for k, v in tuner.DEFAULTS.items()},
            "tuner_many_classes_text": list(tuner.MANY_CLASSES_TEXT),
        }

    def run(self, task: Task) -> MethodResult:
        from fewshot.training.fitting import fit_embeddings
        from fewshot.tuning import ContrastiveTuner

        encoder = task.encoder
        encoder.fit()  # loaded once per dataset; the copy below stands in for a load
        start, cpu = time.perf_counter(), time.process_time()
        tuned = encoder.loaded_copy()
        tuner = ContrastiveTuner(seed=task.seed, show_progress=False, **self.tuner_params)
        tuner.tune(tuned, task.train_items, task.train_labels)
        model = fit_embeddings(tuned, tuned.encode(task.train_items, show_progress=False),
                               task.train_labels, head=self.head, calibration=None)
        fitted, cpu = time.perf_counter(), time.process_time() - cpu
        pred = _predict(model, tuned.encode(task.test_items, show_progress=False))
        done = time.perf_counter()
        return MethodResult(pred, fitted - start, done - fitted, cpu)


def _predict(model: Any, Z: np.ndarray) -> list[Any]:
    """Labels of embeddings ``Z``: label lists by the per-label thresholds for a
    multi-label model, else the head's labels (as strings)."""
    if model.multi_label:
        chosen = model.decide(model.head.predict_proba(Z))
        return [[str(model.classes[j]) for j in np.flatnonzero(row)] for row in chosen]
    return [str(p) for p in model.head.predict(Z)]


class SetFitLibMethod:
    """The ``setfit`` library with the SetFit paper's settings, on the same body.

    Batch 16, 20 pair-generation iterations, 1 epoch, body learning rate 2e-5,
    logistic-regression head. On a multi-label dataset, setfit's own multi-label
    mode: ``multi_target_strategy="one-vs-rest"`` (pairs positive when the rows
    share a label, one logistic regression per label, its 0.5 threshold), on
    label-indicator rows over the training split's labels. Needs
    ``pip install 'fewshot[compare]'``.
    """

    name = "setfit-lib"
    uses_embeddings = False

    def settings(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            setfit_version = version("setfit")
        except PackageNotFoundError:
            setfit_version = None
        return {"setfit": setfit_version, "batch_size": 16, "num_iterations": 20,
                "num_epochs": 1, "body_learning_rate": 2e-5, "head": "logreg"}

    def run(self, task: Task) -> MethodResult:
        if task.modality != "text":
            raise UsageError("setfit-lib compares text classifiers only")
        try:
            from datasets import Dataset
            from setfit import SetFitModel, Trainer, TrainingArguments
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                "setfit-lib needs the setfit library: pip install 'fewshot[compare]'"
            ) from e
        encoder = task.encoder
        encoder.fit()
        resolved = getattr(encoder, "resolved_", None)
        body = resolved.location if resolved is not None else encoder.name
        import tempfile

        names = sorted({c for row in task.train_labels for c in row}) if task.multi_label else []
        labels: list[Any] = ([[int(c in row) for c in names] for row in task.train_labels]
                             if task.multi_label else task.train_labels)
        extra = {"multi_target_strategy": "one-vs-rest"} if task.multi_label else {}
        start, cpu = time.perf_counter(), time.process_time()
        model = SetFitModel.from_pretrained(body, device=encoder.device_, **extra)
        with tempfile.TemporaryDirectory(prefix="fewshot-setfit-") as tmp:
            # setfit writes checkpoints to ./checkpoints by default: keep them out of cwd.
            args = TrainingArguments(
                output_dir=tmp, batch_size=16, num_iterations=20, num_epochs=1,
                body_learning_rate=2e-5, seed=task.seed, report_to="none",
                show_progress_bar=False, save_strategy="no",
            )
            train = Dataset.from_dict({"text": task.train_items, "label": labels})
            Trainer(model=model, args=args, train_dataset=train).train()
        fitted, cpu = time.perf_counter(), time.process_time() - cpu
        pred = model.predict(task.test_items, batch_size=64, as_numpy=True)
        done = time.perf_counter()
        if task.multi_label:
            rows = [[names[j] for j in np.flatnonzero(row)] for row in np.asarray(pred)]
            return MethodResult(rows, fitted - start, done - fitted, cpu)
        return MethodResult([str(p) for p in pred], fitted - start, done - fitted, cpu)


METHODS: dict[str, Callable[[], Method]] = {
    "logreg": lambda: HeadMethod("logreg", "logreg"),
    "knn": lambda: HeadMethod("knn", "knn"),
    "centroid": lambda: HeadMethod("centroid", "centroid"),
    "centroid-cl2n": lambda: HeadMethod("centroid-cl2n", "centroid", center=True),
    "setfit-lib": SetFitLibMethod,
    "tuned-logreg": lambda: TunedMethod("tuned-logreg", "logreg"),
    "tuned-centroid": lambda: TunedMethod("tuned-centroid", "centroid"),
    "tuned-cosine-logreg": lambda: TunedMethod("tuned-cosine-logreg", "logreg",
                                               objective="cosine"),
    "tuned-supcon-logreg": lambda: TunedMethod("tuned-supcon-logreg", "logreg",
                                               objective="supcon"),
    "tuned-pairs-logreg": lambda: TunedMethod("tuned-pairs-logreg", "logreg", objective="pairs"),
    # Half of the labelled rows held out to pick the epoch count (the untuned body a
    # candidate), then tuned again on all of them for that many epochs.
    "tuned-refit-logreg": lambda: TunedMethod("tuned-refit-logreg", "logreg",
                                              validation_fraction=0.5, refit=True),
    # Multi-label data: pairs positive when the rows share a label (the default grades
    # them by Jaccard overlap); the same on one-label data.
    "tuned-shared-logreg": lambda: TunedMethod("tuned-shared-logreg", "logreg",
                                               label_overlap="shared"),
    # Only the top one or two transformer layers trained, on cached lower-layer outputs.
    "tuned-top1-logreg": lambda: TunedMethod("tuned-top1-logreg", "logreg", train_layers=1),
    "tuned-top2-logreg": lambda: TunedMethod("tuned-top2-logreg", "logreg", train_layers=2),
}


def register_method(name: str, factory: Callable[[], Method]) -> None:
    """Make ``name`` usable in ``fewshot bench --methods``."""
    METHODS[name] = factory


def get_method(name: str) -> Method:
    try:
        return METHODS[name]()
    except KeyError:
        raise UsageError(
            f"unknown method '{name}'; choose from {', '.join(sorted(METHODS))}"
        ) from None
