"""One progress style for every long loop, on stderr.

On a terminal: a rich bar. Piped or logged (stderr not a terminal): a plain
line every :data:`LOG_EVERY` seconds once a loop runs that long, so a log shows
a long run moving. ``enabled=False`` (``show_progress=False``): nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["LOG_EVERY", "Advance", "progress", "quiet_library_bars"]

#: Seconds between two plain progress lines when stderr is not a terminal.
LOG_EVERY = 10.0

#: The clock plain progress lines are timed by (a test replaces it).
_clock: Callable[[], float] = time.monotonic


class Advance(Protocol):
    def __call__(self, n: int = 1, info: str | None = None) -> None: ...


def _auto() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(description: str, total: int, enabled: bool | None = None) -> Iterator[Advance]:
    """Yield ``advance(n)``: a rich bar on a terminal, plain lines every ``LOG_EVERY``
    seconds elsewhere (``enabled=None``, the default), a bar when ``enabled`` is true,
    nothing when it is false."""
    if enabled is False:
        yield lambda n=1, info=None: None
        return
    if enabled is None and not _auto():
        with _log_lines(description, total) as advance:
            yield advance
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


def progress_line(description: str, done: int, total: int, seconds: float,
                  info: str | None = None) -> str:
    """``Embedding texts: 1,200/5,000 (24%), 40 items/s, ETA 95 s``: a log line, no
    control characters."""
    rate = done / seconds if seconds > 0 else 0.0
    line = f"{description}: {done:,}/{total:,}"
    if total > 0:
        line += f" ({done / total:.0%})"
    line += f", {rate:,.0f} items/s" if rate >= 10 else f", {rate:.2g} items/s"
    if rate > 0 and done < total:
        line += f", ETA {(total - done) / rate:,.0f} s"
    if info:
        line += f", {info}"
    return line


@contextmanager
def _log_lines(description: str, total: int) -> Iterator[Advance]:
    """Plain progress lines on stderr, the first after ``LOG_EVERY`` seconds; a last
    line with the time taken when any was printed."""
    start = last = _clock()
    done, said, printed = 0, None, False

    def advance(n: int = 1, info: str | None = None) -> None:
        nonlocal done, said, printed, last
        done += n
        said = info if info is not None else said
        now = _clock()
        if now - last >= LOG_EVERY:
            last, printed = now, True
            _say(progress_line(description, done, total, now - start, said))

    yield advance
    if printed:
        _say(f"{description}: {done:,}/{total:,} done in {_clock() - start:,.0f} s")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def quiet_library_bars(enabled: bool | None = None) -> Iterator[None]:
    """transformers' own tqdm bars ("Loading weights") off while a model loads.

    fewshot shows its own progress, so the library's bars are off on a terminal
    too, and piped or logged output holds fewshot's lines only. ``enabled`` is
    accepted for callers that pass ``show_progress`` and changes nothing. The
    library's setting is restored afterwards.
    """
    del enabled
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers needs transformers
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
