"""The resume record of a chunked job: ``OUT.progress.json`` beside the output.

It is rewritten atomically after each chunk's rows are flushed and fsynced, so it
never claims rows the output does not hold; the output may hold more (a run killed
between the two writes), and a resumed run cuts those off (see
:class:`fewshot.data.writers.RowStream`). ``identity`` is what must not change
between a run and its resumption: the input, the model, and the options that shape
the rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fewshot._io import atomic_file
from fewshot.errors import DataError, UsageError

__all__ = ["JobState", "folder_fingerprint", "open_state", "state_path"]

FORMAT = "fewshot-job"
FORMAT_VERSION = 1


def state_path(output: str | Path) -> Path:
    return Path(f"{output}.progress.json")


def folder_fingerprint(folder: str | Path) -> str:
    """sha256 over a model folder's files (names and bytes)."""
    h = hashlib.sha256()
    root = Path(folder)
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@dataclass
class JobState:
    """Where a chunked job stands: input rows consumed, rows written, and the output
    stream's own state (bytes or parts)."""

    identity: dict[str, Any]
    rows_read: int = 0
    rows_written: int = 0
    skipped: int = 0
    stream: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        with atomic_file(path, "w") as f:
            json.dump({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}, f)


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "input":
        return (f"was started on another input ({old.get('path')}) or that input has changed "
                "since")
    if key == "model":
        return "was started with another model (or the model folder has changed since)"
    return f"was started with other options ({old} -> {new})"


def open_state(
    output: str | Path, identity: dict[str, Any], *, resume: bool, force: bool
) -> JobState | None:
    """The state to resume from (``resume`` and a matching record), or None to start
    afresh. A record left by a killed run is never silently replaced: without
    ``resume`` or ``force`` it is a UsageError, and a record of another input, model or
    options is a DataError that leaves it (and the rows it counts) as they are."""
    path = state_path(output)
    if not path.exists():
        return None
    if force and not resume:
        return None
    if not resume:
        raise UsageError(
            f"an unfinished run of {output} was left ({path.name}); pass --resume to continue "
            "it or --force to start over")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format") != FORMAT or saved.get("format_version") != FORMAT_VERSION:
            raise ValueError("not a fewshot job record")
        state = JobState(saved["identity"], int(saved["rows_read"]), int(saved["rows_written"]),
                         int(saved["skipped"]), dict(saved["stream"]))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a readable job record ({e}); pass --force to start "
                        "over") from e
    for key in ("command", "input", "model", "options"):
        old, new = state.identity.get(key), identity.get(key)
        if old != new:
            raise DataError(
                f"cannot resume {output}: it {_describe(key, old or {}, new)}; resume with the "
                "same DATA, MODEL_DIR and options, or pass --force to start over")
    return state


def clear_state(output: str | Path) -> None:
    state_path(output).unlink(missing_ok=True)
