"""Run every method x shots x seed on datasets by the protocol; append rows as it goes."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._version import __version__
from fewshot.bench.methods import Task, get_method, method_settings, settings_fingerprint
from fewshot.data import few_shot_indices, load_dataset
from fewshot.errors import UsageError
from fewshot.metrics import classification_report, multilabel_report

__all__ = ["MULTI_LABEL_METRICS", "RESULTS", "load_results", "parse_int_list",
           "primary_metric", "run_bench"]

RESULTS = "results.jsonl"
#: Datasets scored by MCC rather than accuracy (as in the SetFit paper).
MCC_DATASETS = frozenset({"amazon_counterfactual_en"})
#: The scores of a multi-label run (the protocol's; macro-F1 over labels is the headline).
MULTI_LABEL_METRICS = ("macro_f1", "micro_f1", "samples_f1", "subset_accuracy",
                       "hamming_loss")
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1", "mcc")


def primary_metric(dataset: str, multi_label: bool = False) -> str:
    """The headline score: macro-F1 for multi-label sets, MCC for
    amazon_counterfactual_en (as in the SetFit paper), accuracy elsewhere."""
    if multi_label:
        return "macro_f1"
    return "mcc" if dataset in MCC_DATASETS else "accuracy"


def parse_int_list(spec: str) -> list[int]:
    """``"8,64"`` -> [8, 64]; ``"0-4"`` -> [0, 1, 2, 3, 4]; mixed: ``"0-2,7"``."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            if sep and lo:
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UsageError(f"cannot read '{spec}' as numbers; write e.g. 8,64 or 0-4") from None
    if not out:
        raise UsageError(f"'{spec}' lists no numbers; write e.g. 8,64 or 0-4")
    return out


def _key(row: dict[str, Any]) -> tuple:
    """What a row stands for; a row without ``encoder_id`` or ``method_config`` matches
    no run: it may have been fitted with other settings."""
    return (row["dataset"], row["n_shot"], row["seed"], row["method"], row["encoder"],
            row.get("encoder_id"), row.get("method_config"))


def load_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a last line cut short by a killed run is dropped."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UsageError(
                f"{path}:{i + 1} is not JSON; fix or delete that line to resume"
            ) from None
    return rows


def _repair_tail(path: Path) -> None:
    """Cut a partial last line so appended rows start on a line of their own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def run_bench(
    datasets: Iterable[str | Path],
    output: str | Path,
    *,
    shots: Sequence[int] = (8, 64),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    methods: Sequence[str] = ("logreg", "knn", "centroid"),
    encoder: Any = None,
    image_encoder: Any = None,
    cache: Any = True,
    device: str | None = None,
    show_progress: bool | None = None,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Fit and score every method on every (dataset, shots, seed); returns all rows.

    Rows already in ``output/results.jsonl`` without an error, for the same encoder
    (name and id: a changed model or setting is a new id) and the same method
    settings (``method_config``: a changed head or tuner default is a new one), are
    not redone, so an interrupted run resumes where it stopped. A method that raises
    is recorded with its error and the others go on.

    A multi-label dataset (label lists) is split by the protocol's multi-label
    sampling and scored by :data:`MULTI_LABEL_METRICS`; its rows have
    ``"multi_label": true``.
    """
    from fewshot._progress import progress
    from fewshot.cache import as_cache, embed
    from fewshot.encoders import Encoder, get_encoder

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    results_path = output / RESULTS
    _repair_tail(results_path)
    done = {_key(r) for r in load_results(results_path) if not r.get("error")}
    method_objs = [get_method(m) for m in methods]
    settings = {m.name: method_settings(m) for m in method_objs}
    configs = {name: settings_fingerprint(value) for name, value in settings.items()}
    cache_obj = as_cache(cache)
    say = log or (lambda msg: None)
    new_rows: list[dict[str, Any]] = []
    for folder in map(Path, datasets):
        train = load_dataset(folder, "train")
        test = load_dataset(folder, "test")
        # load_dataset's require_labels (on by default) raises on any unlabelled row.
        assert train.labels is not None and test.labels is not None
        train_labels, test_labels = train.labels, test.labels
        multi = train.multi_label or test.multi_label
        if train.multi_label != test.multi_label:
            raise UsageError(f"{folder}: one of train and test has label lists and the other "
                             "one label per row; give both splits the same kind of labels")
        name = folder.name
        chosen = encoder if train.modality == "text" else image_encoder
        enc = chosen if isinstance(chosen, Encoder) else get_encoder(
            chosen, train.modality, device=device, show_progress=show_progress
        )
        splits = {(n, s): few_shot_indices(train_labels, n, s) for n in shots for s in seeds}
        # The cache remembers the id by the model files, so a finished run loads no weights.
        enc_id = cache_obj.identify(enc) if cache_obj is not None else enc.id
        todo = [
            (n, s, m) for (n, s) in splits for m in method_objs
            if (name, n, s, m.name, enc.name, enc_id, configs[m.name]) not in done
        ]
        for m in method_objs:
            stale = {k[1:3] for k in done if k[0] == name and k[3] == m.name
                     and k[4] == enc.name and k[6] != configs[m.name]}
            redo = sum((n, s) in stale for n, s, t in todo if t is m)
            if redo:
                say(f"{name}: {redo} {m.name} run(s) in {results_path} have other (or "
                    "unrecorded) method settings; running them again with the current ones")
        if not todo:
            say(f"{name}: all {len(splits) * len(method_objs)} runs already in {results_path}")
            continue
        train_emb = test_emb = None
        encode_seconds = 0.0
        if any(m.uses_embeddings for _, _, m in todo):
            rows_needed = sorted({i for idx in splits.values() for i in idx})
            start = time.perf_counter()
            vecs = embed(enc, [train.items[i] for i in rows_needed], cache_obj,
                         show_progress=show_progress)
            train_emb = np.zeros((len(train), vecs.shape[1]), dtype=np.float32)
            train_emb[rows_needed] = vecs
            test_emb = embed(enc, test.items, cache_obj, show_progress=show_progress)
            encode_seconds = time.perf_counter() - start
            say(f"{name}: embedded {len(rows_needed)} train + {len(test)} test items "
                f"in {encode_seconds:.1f}s")
        with progress(f"bench {name}", len(todo), show_progress) as advance:
            for n, s, method in todo:
                idx = splits[(n, s)]
                task = Task(
                    dataset=name, modality=train.modality, n_shot=n, seed=s,
                    train_items=[train.items[i] for i in idx],
                    train_labels=[train_labels[i] for i in idx],
                    test_items=test.items, test_labels=test_labels, encoder=enc,
                    train_embeddings=train_emb[idx] if train_emb is not None else None,
                    test_embeddings=test_emb, multi_label=multi,
                )
                row = _run_one(task, method, enc, settings[method.name])
                if method.uses_embeddings:
                    # Shared by every such run of this dataset, so not in fit/predict time.
                    row["encode_seconds"] = round(encode_seconds, 4)
                _append(results_path, row)
                new_rows.append(row)
                metric = primary_metric(name, multi)
                status = f"error: {row['error']}" if row["error"] else (
                    f"{metric}={row[metric]:.4f}"
                )
                say(f"{name} n={n} seed={s} {method.name}: {status}")
                advance()
    return load_results(results_path)


def _run_one(task: Task, method: Any, enc: Any, settings: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": task.dataset, "modality": task.modality, "n_shot": task.n_shot,
        "seed": task.seed, "method": method.name, "encoder": enc.name, "encoder_id": enc.id,
        "method_config": settings_fingerprint(settings), "method_settings": settings,
        "n_train": len(task.train_items), "n_test": len(task.test_items),
        "n_classes": len(_label_set(task.train_labels, task.multi_label)),
    }
    metrics = MULTI_LABEL_METRICS if task.multi_label else SINGLE_LABEL_METRICS
    if task.multi_label:
        row["multi_label"] = True
    try:
        result = method.run(task)
        if task.multi_label:
            # Labels only in the test split count too: a method never predicts them (F1 0).
            labels = sorted(_label_set(task.train_labels, True)
                            | _label_set(task.test_labels, True))
            report = multilabel_report(task.test_labels, result.predictions, labels)
        else:
            report = classification_report(task.test_labels, result.predictions)
        row.update({k: report[k] for k in metrics})
        row.update(fit_seconds=round(result.fit_seconds, 4),
                   predict_seconds=round(result.predict_seconds, 4), error=None)
        if result.fit_cpu_seconds is not None:
            row["fit_cpu_seconds"] = round(result.fit_cpu_seconds, 4)
    except Exception as e:  # one method's failure must not stop the others
        row.update(dict.fromkeys(metrics), fit_seconds=None,
                   predict_seconds=None, error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=5))
    row.update(fewshot_version=__version__, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return row


def _label_set(labels: Sequence[Any], multi_label: bool) -> set[Any]:
    return {c for row in labels for c in row} if multi_label else set(labels)


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
