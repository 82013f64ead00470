"""Atomic writes (a crash never leaves a half-written file or folder behind) and JSON."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReplaceRefusedError", "atomic_dir", "atomic_file", "json_default", "replace_refusal"]


class ReplaceRefusedError(FileExistsError):
    """An existing folder holds something the writer did not put there, so it is kept."""


def replace_refusal(path: str | Path, names: Collection[str]) -> str | None:
    """Why the existing ``path`` may not be replaced by a folder of ``names``, or None.

    Overwriting (``--force``) replaces a whole folder, so it is only allowed for an
    empty folder or one holding nothing but files the same writer makes: never a
    folder of the user's own files given as the output by mistake.
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} is a file, not a folder; choose another output or remove it"
    foreign = sorted(e.name for e in path.iterdir() if e.name not in names or not e.is_file())
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return (
        f"{path} holds files this command did not write ({shown}); --force only replaces "
        "an empty folder or one of its own outputs: choose another output or remove it"
    )


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (threads
    writing files meanwhile would create them with a 0 umask otherwise)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # elsewhere: set and restore, the only portable way
    os.umask(mask)
    return mask


def _publish_mode(path: str | Path, default: int) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries: give the result the
    permissions an ordinary open()/mkdir() would, so others can read saved models."""
    os.chmod(path, default & ~_umask())


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator:
    """Write to a temporary sibling, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text = "b" not in mode  # text: UTF-8, and no newline translation, as csv needs
        with os.fdopen(fd, mode, encoding="utf-8" if text else None,
                       newline="" if text else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the OS cannot.

    Linux ``renameat2(RENAME_EXCHANGE)`` (glibc 2.28+, most local file systems);
    elsewhere, or when the file system refuses, the caller falls back to renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextmanager
def atomic_dir(
    path: str | Path, overwrite: bool = False, replaceable: Collection[str] = ()
) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` in one rename.

    An existing ``path`` is only replaced when ``overwrite`` is true, it is a folder
    holding nothing but files named in ``replaceable`` (see :func:`replace_refusal`),
    and then only after the new folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    refusal = replace_refusal(path, replaceable)
    if refusal:
        raise ReplaceRefusedError(refusal)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for entry in tmp.rglob("*"):  # some writers (safetensors) create files as 0600
            _publish_mode(entry, 0o777 if entry.is_dir() else 0o666)
        _publish_mode(tmp, 0o777)
        if path.exists():
            if _exchange(tmp, path):  # one atomic step: tmp now holds the old folder
                shutil.rmtree(tmp, ignore_errors=True)
                return
            # Two renames where the OS cannot swap: a crash between them leaves the
            # previous version at .NAME.old-PID beside the path.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous version back
                raise
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def json_default(value: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays as Python
    values (``KNNHead(k=np.int64(3))`` from a grid over ``np.arange``), paths as text."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
