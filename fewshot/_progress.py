"""One progress bar style for every long loop (rich, on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Advance(Protocol):
    def __call__(self, n: int = 1, info: str | None = None) -> None: ...


def _auto() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(description: str, total: int, enabled: bool | None = None) -> Iterator[Advance]:
    """Yield ``advance(n)``; shows a rich bar on stderr when enabled (default: a TTY)."""
    if enabled is None:
        enabled = _auto()
    if not enabled:
        yield lambda n=1, info=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is None:
                bar.advance(task, n)
            else:  # e.g. the running loss of a training loop
                bar.update(task, advance=n, info=info)

        yield advance


@contextmanager
def quiet_library_bars(enabled: bool | None = None) -> Iterator[None]:
    """transformers' own tqdm bars ("Loading weights") off unless progress is shown.

    Piped or logged output (and ``show_progress=False``) then holds fewshot's lines
    only; the library's setting is restored afterwards.
    """
    if enabled is None:
        enabled = _auto()
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers needs transformers
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()

