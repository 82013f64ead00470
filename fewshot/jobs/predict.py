"""Chunked, resumable prediction: the local engine of ``fewshot predict``.

Each chunk of the input is embedded, classified and appended to the output, then
recorded as done (:mod:`fewshot.jobs.state`), so memory holds one chunk and a killed
run resumes after its last recorded chunk: every input row reaches the output once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError

__all__ = ["DEFAULT_CHUNK", "PredictResult", "predict_file", "prediction_rows"]

#: Rows per chunk: memory and the work a resumed run repeats grow with it.
DEFAULT_CHUNK = 4096


@dataclass
class PredictResult:
    predicted: int = 0
    skipped: int = 0
    #: Rows a resumed run found already written.
    resumed_from: int = 0
    label_shift: dict[str, Any] | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def prediction_rows(clf: Any, chunk: Any, proba: np.ndarray, *, with_errors: bool,
                    source_dir: Path | None) -> list[dict[str, Any]]:
    """The output rows of one chunk: ``id``, the text or path, the model's answer
    (:meth:`FittedModel.prediction_rows`), and with ``with_errors`` an ``error``
    field (None for a prediction; why, for each image left out, whose row has no
    label)."""
    data = chunk.data
    item_key = "text" if data.modality == "text" else "path"
    answers = clf.model_.prediction_rows(proba, threshold=clf.threshold,
                                         min_labels=clf.min_labels)
    rows: list[dict[str, Any]] = [{"id": data.ids[i], item_key: data.display(i), **answer}
                                  for i, answer in enumerate(answers)]
    if with_errors:
        for row in rows:
            row["error"] = None
        rows += [{"id": _skipped_id(source_dir, path), item_key: path, "label": None,
                  "score": None, "probabilities": None, "error": why}
                 for path, why in chunk.skipped.items()]
    return rows


def _skipped_id(folder: Path | None, path: str) -> str | None:
    """A skipped image's id as the folder loader gives one (its path in the folder)."""
    if folder is None or not folder.is_dir():
        return None
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return None


def _proba(clf: Any, items: list[Any], calibrated: bool = True) -> np.ndarray:
    if not items:
        return np.zeros((0, len(clf.model_.classes)), dtype=np.float32)
    return clf.predict_proba(items, calibrated=calibrated)


def predict_file(
    clf: Any, source: Any, output: str | Path, *, model_dir: str | Path,
    fmt: str | None = None, chunk_size: int = DEFAULT_CHUNK, resume: bool = False,
    force: bool = False, adapt_prior: bool = False, show_progress: bool | None = None,
) -> PredictResult:
    """Predict every row of ``source`` (:func:`fewshot.data.streaming.open_source`) with
    the loaded ``clf`` and write the rows to ``output`` chunk by chunk.

    ``resume`` continues the unfinished run recorded beside ``output`` (same input,
    model and options, else a DataError). ``adapt_prior`` first reads the whole input
    once for the head's probabilities (kept: rows x classes floats), estimates the
    class mix from them, then writes; it cannot resume, having no rows to show
    before the estimate. ``--output -`` (stdout) streams but cannot resume.
    """
    from fewshot._progress import progress
    from fewshot.data.writers import STDOUT, RowStream
    from fewshot.jobs.state import JobState, clear_state, folder_fingerprint, open_state, state_path

    to_file = str(output) != STDOUT
    if resume and adapt_prior:
        raise UsageError("--adapt-prior estimates the class mix from all of DATA before the "
                         "first row is written, so its run cannot resume: drop --resume")
    if resume and not to_file:
        raise UsageError("--resume continues a file output; stdout (--output -) cannot be "
                         "resumed: write to a file")
    if resume and not source.rereadable:
        raise UsageError("--resume needs DATA as a file or folder it can read again; stdin "
                         "(-) cannot be reread: save it to a file first")
    identity = {
        "command": "predict",
        "input": source.fingerprint(),
        "model": folder_fingerprint(model_dir),
        "options": {"text_field": source.text_field, "image_field": source.image_field,
                    "threshold": clf.threshold, "min_labels": clf.min_labels,
                    "skip_bad_images": source.skip_bad_images},
    }
    saved = open_state(output, identity, resume=resume, force=force) if to_file else None
    result = PredictResult(resumed_from=saved.rows_written if saved else 0)
    state = saved or JobState(identity)
    stream = RowStream(output, fmt=fmt, resume=saved.stream if saved else None)
    folder = source.path if source.kind == "images" else None
    with_errors = source.skip_bad_images
    shown = clf.show_progress
    clf.show_progress = False  # one bar for the whole job, not one per chunk
    began = time.monotonic()
    try:
        if to_file:
            state.stream = stream.commit()
            state.save(state_path(output))
        chunks: Iterator[tuple[Any, np.ndarray]]
        if adapt_prior:
            chunks = _adapted(clf, source, chunk_size, result, show_progress)
        else:
            chunks = ((c, _proba(clf, c.data.items))
                      for c in source.chunks(chunk_size, skip=state.rows_read))
        total = source.total or 0
        with progress("Predicting rows", total, show_progress) as advance:
            if state.rows_read:
                advance(state.rows_read)
            for chunk, proba in chunks:
                stream.write(prediction_rows(clf, chunk, proba, with_errors=with_errors,
                                             source_dir=folder))
                state.rows_read += chunk.consumed
                state.rows_written += len(chunk.data) + len(chunk.skipped)
                state.skipped += len(chunk.skipped)
                if to_file:
                    state.stream = stream.commit()
                    state.save(state_path(output))
                advance(chunk.consumed)
        stream.finish()
    except DataError as e:
        stream.close()
        if to_file and state.rows_written:
            raise DataError(f"{e} ({state.rows_written} rows before it are kept in "
                            f"{stream.work}; rerun with --resume once fixed)") from e
        raise
    except BaseException:
        stream.close()
        raise
    finally:
        clf.show_progress = shown
    if to_file:
        clear_state(output)
    result.predicted = state.rows_written - state.skipped
    result.skipped = state.skipped
    result.seconds = time.monotonic() - began
    return result


def _adapted(clf: Any, source: Any, chunk_size: int, result: PredictResult,
             show_progress: bool | None) -> Iterator[tuple[Any, np.ndarray]]:
    """Two passes: the head's probabilities of every row, the class prior estimated from
    them (as ``predict_proba(adapt_prior=True)`` does), then the chunks again with
    their probabilities moved to it. Stdin, read once, keeps its chunks in memory."""
    from fewshot._progress import progress

    raw: list[np.ndarray] = []
    kept: list[Any] = []
    with progress("Estimating the class mix", source.total or 0, show_progress) as advance:
        for chunk in source.chunks(chunk_size):
            raw.append(_proba(clf, chunk.data.items, calibrated=False))
            if not source.rereadable:
                kept.append(chunk)
            advance(chunk.consumed)
    every = np.concatenate(raw) if raw else None
    clf._estimate_prior(every if every is not None and len(every) else None)
    result.label_shift = clf.label_shift_
    chunks = kept if kept else source.chunks(chunk_size)
    for chunk, head in zip(chunks, raw, strict=True):
        yield chunk, clf.model_.adjust(head)
