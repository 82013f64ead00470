"""``fewshot predict --engine ray``: the same job as a Ray Data pipeline.

``read_parquet``/``read_json``/``read_csv`` -> ``map_batches`` with :class:`Predictor`
(a callable class: each actor loads the model once, then predicts batch after batch;
``compute=ActorPoolStrategy(size=N)``: N actors, a GPU each when the cluster has GPUs;
Ray 2.51+ deprecates ``concurrency`` for it) -> ``write_parquet`` or
``write_json`` into the output folder (one file per block). Ray schedules, retries
and moves the data; nothing here does. The model folder and DATA are read by path, so
on a cluster they must sit on storage every node sees at the same path.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot.errors import DataError, FewShotError, UsageError

__all__ = ["Predictor", "RayResult", "predict_ray"]

#: Rows per Ray batch by default.
RAY_BATCH = 1024


@dataclass
class RayResult:
    predicted: int
    files: int
    workers: int
    seconds: float


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("--engine ray needs Ray: pip install 'fewshot[ray]'") from e
    return ray


class Predictor:
    """The ``map_batches`` callable: loads the model once per actor, then turns each
    batch (a pyarrow Table of input rows) into prediction rows exactly as the local
    engine does."""

    def __init__(self, model_dir: str, options: dict[str, Any]) -> None:
        threads = options.get("threads")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        from fewshot.classifier import FewShotClassifier

        self.options = options
        self.clf = FewShotClassifier.load(
            model_dir, encoder=options.get("encoder"), cache=False,
            device=options.get("device") or "auto", batch_size=options.get("batch_size", 32),
            show_progress=False)
        self.clf.set_params(threshold=options.get("threshold"),
                            min_labels=options.get("min_labels", 0))

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from fewshot.data.loaders import _from_records
        from fewshot.data.streaming import Chunk
        from fewshot.jobs.predict import _proba, prediction_rows

        o = self.options
        # Rows are named by id in messages: a distributed reader knows no line numbers.
        records: list[Any] = [(f"id {r.get('id')}", r) for r in batch.to_pylist()]
        data = _from_records(records, Path(o["source"]), o["text_field"], "label", None, "id",
                             o.get("image_field"), False, False)
        chunk = Chunk(data, len(records))
        rows = prediction_rows(self.clf, chunk, _proba(self.clf, data.items),
                               with_errors=False, source_dir=None)
        return pa.Table.from_pylist(rows)


_WORKER_ERROR = re.compile(r"^fewshot\.errors\.(\w+): (.+)$", re.MULTILINE)


def _fewshot_error(e: BaseException) -> FewShotError | None:
    """The fewshot error a Ray failure wraps (a DataError raised in a worker), if any:
    found in the exception chain, else in the worker's traceback Ray passes on as text."""
    from fewshot import errors

    matches = list(_WORKER_ERROR.finditer(str(e)))
    if not matches:
        return _in_chain(e)
    match = matches[-1]  # the innermost error
    cls = getattr(errors, match.group(1), None)
    if isinstance(cls, type) and issubclass(cls, FewShotError):
        try:
            return cls(match.group(2).strip())
        except TypeError:  # a subclass with another signature
            return DataError(match.group(2).strip())
    return None


def _in_chain(e: BaseException) -> FewShotError | None:
    seen: set[int] = set()
    stack: list[Any] = [e]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, FewShotError):
            return err
        stack += [getattr(err, "cause", None), err.__cause__, err.__context__]
        if hasattr(err, "as_instanceof_cause"):
            with contextlib.suppress(Exception):  # best effort unwrapping
                stack.append(err.as_instanceof_cause())
    return None


def _check_ids(source: Any) -> None:
    first = next(iter(source._records()), None)
    if first is None or source.id_field not in first[1]:
        raise DataError(
            f"--engine ray needs an '{source.id_field}' field in every row of {source.name} "
            "(distributed readers do not know line numbers); add ids or use --engine local")


def predict_ray(
    model_dir: str | Path, data: str | Path, output: str | Path, *, fmt: str | None = None,
    encoder: str | None = None, split: str | None = "test", text_field: str = "text",
    image_field: str | None = None, batch_size: int = 32, device: str = "auto",
    threshold: float | None = None, min_labels: int = 0, address: str | None = None,
    workers: int | None = None, force: bool = False, ray_batch: int = RAY_BATCH,
) -> RayResult:
    """Predict ``data`` with the model in ``model_dir`` on Ray, into the folder
    ``output`` (Parquet or JSONL files, by its suffix or ``fmt``). Without ``address`` a
    local Ray is started (or the one this process already runs is used)."""
    from fewshot.data.streaming import open_source
    from fewshot.data.writers import row_format

    suffix = row_format(output, name="--output", fmt=fmt)
    if suffix == ".csv":
        raise UsageError("--engine ray writes .parquet or .jsonl files; use one of those "
                         "suffixes for --output")
    source = open_source(data, split, text_field=text_field, image_field=image_field,
                         count=False)
    if source.kind not in ("jsonl", "parquet", "csv") or source.modality != "text":
        raise UsageError(f"--engine ray reads JSONL, CSV or Parquet text data; {source.name} "
                         "is not that: use --engine local")
    _check_ids(source)
    from fewshot.classifier import FewShotClassifier

    clf = FewShotClassifier.load(model_dir, encoder=encoder, cache=False, device="cpu",
                                 show_progress=False)
    if clf.encoder_.modality != "text":
        raise DataError(f"{data} holds text but the model classifies "
                        f"{clf.encoder_.modality}; pass matching data")
    if (threshold is not None or min_labels) and not clf.multi_label_:
        raise UsageError("--threshold and --min-labels decide label sets; this model gives "
                         "one label per item: drop them")
    del clf
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        n = workers or (gpus if gpus else max(1, cpus // 2))
        # One CPU stays free for the read and write tasks (an actor holding every CPU
        # would starve them: the pipeline would wait forever); on CPU-only clusters the
        # actors' torch threads still use every core.
        per_actor = 1.0 if gpus else max(0.25, (cpus - 1) / n) if cpus > 1 else 0.5
        threads = None if gpus else max(1, round(cpus / n))
        options = {"encoder": encoder, "device": device, "batch_size": batch_size,
                   "threshold": threshold, "min_labels": min_labels, "text_field": text_field,
                   "source": str(source.path), "threads": threads}
        path = str(Path(source.name).resolve())
        import ray.data as rd

        out = Path(output)
        if out.exists() and force:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        began = time.monotonic()
        try:
            with _quiet_ray_data():
                ctx = rd.DataContext.get_current()
                ctx.enable_progress_bars = False
                if source.kind == "parquet":
                    ds = rd.read_parquet(path, columns=[text_field, source.id_field])
                elif source.kind == "jsonl":
                    ds = rd.read_json(path, file_extensions=None)  # pyarrow reads JSON lines
                else:
                    ds = rd.read_csv(path, file_extensions=None)
                ds = ds.map_batches(
                    Predictor, fn_constructor_args=(str(Path(model_dir).resolve()), options),
                    batch_size=ray_batch, batch_format="pyarrow",
                    compute=rd.ActorPoolStrategy(size=n),
                    num_gpus=1 if gpus else None, num_cpus=per_actor)
                _write(ds, out, suffix)
        except Exception as e:
            found = _fewshot_error(e)
            if found is not None:
                raise type(found)(str(found)) from None
            raise
        seconds = time.monotonic() - began
    finally:
        if started:
            ray.shutdown()
    files = sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    return RayResult(_count_rows(files, suffix), len(files), n, seconds)


def _write(ds: Any, out: Path, suffix: str) -> None:
    if suffix == ".parquet":
        ds.write_parquet(str(out.resolve()))
    else:
        ds.write_json(str(out.resolve()), force_ascii=False)


@contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's console log lines off while the pipeline runs (they stay in Ray's log
    files): the command prints its own lines, and an error is one line."""
    removed = []
    for name in ("ray.data", "ray"):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
                removed.append((logger, h))
    try:
        yield
    finally:
        for logger, h in removed:
            logger.addHandler(h)


def _count_rows(files: list[Path], suffix: str) -> int:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(p).num_rows for p in files)
    total = 0
    for p in files:
        with open(p, "rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


def read_output(folder: str | Path) -> list[dict[str, Any]]:
    """Every row a Ray run wrote into ``folder`` (its Parquet or JSONL files)."""
    import json

    rows: list[dict[str, Any]] = []
    for p in sorted(Path(folder).iterdir()):
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(p).to_pylist()
        elif p.suffix in (".json", ".jsonl"):
            with open(p, encoding="utf-8") as f:
                rows += [json.loads(line) for line in f if line.strip()]
    return rows

