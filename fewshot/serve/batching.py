"""Micro-batching: items of concurrent requests grouped into one model call.

Each request puts its items on an asyncio queue and awaits its rows. One worker
task takes the first waiting request, waits up to ``max_wait`` seconds for more
(less when ``max_batch`` items are already waiting), joins whole requests up to
``max_batch`` items and runs the model on them in a thread of its own, so the
event loop keeps reading and answering requests meanwhile. While a batch runs
the next one fills, so under load batches grow to ``max_batch`` without waiting.

A failing batch is run again request by request, so an item the model refuses
fails its own request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchStats", "MicroBatcher", "ShuttingDown"]

log = logging.getLogger("fewshot.serve")


class ShuttingDown(RuntimeError):
    """The batcher stopped before this request's batch ran."""


@dataclass
class _Job:
    items: Sequence[Any]
    future: asyncio.Future[np.ndarray]


@dataclass
class BatchStats:
    """Counts since start: model calls, the items they held, the requests they served."""

    batches: int = 0
    items: int = 0
    requests: int = 0
    largest: int = 0

    def add(self, n_items: int, n_requests: int) -> None:
        self.batches += 1
        self.items += n_items
        self.requests += n_requests
        self.largest = max(self.largest, n_items)

    def to_dict(self) -> dict[str, int]:
        return {"batches": self.batches, "items": self.items, "requests": self.requests,
                "largest_batch": self.largest}


class MicroBatcher:
    """Group the items of concurrent :meth:`predict` calls into calls of ``predict_fn``.

    ``predict_fn(items) -> array`` returns one row per item, in order; it runs in one
    worker thread, one batch at a time (so the model is never called concurrently).
    ``max_batch`` caps the items of a batch (a single larger request runs alone);
    ``max_wait`` is how long (seconds) the first request of a batch waits for others.
    """

    def __init__(
        self, predict_fn: Callable[[list[Any]], np.ndarray], *, max_batch: int = 256,
        max_wait: float = 0.005,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait}")
        self.predict_fn = predict_fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0  # items queued and not yet taken into a batch
        self._running: list[_Job] = []  # the batch in the model now
        self._carry: _Job | None = None  # taken from the queue for the next batch
        self._full: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._full = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fewshot-model")
        self._task = asyncio.create_task(self._run(), name="fewshot-micro-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting fail with :class:`ShuttingDown`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        waiting = [*self._running, *([self._carry] if self._carry else [])]
        if self._queue is not None:
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(ShuttingDown("the server is shutting down; send "
                                                      "the request again"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- requests -------------------------------------------------------------------
    async def predict(self, items: Sequence[Any]) -> np.ndarray:
        """Rows of ``predict_fn`` for ``items``, computed in a batch with other requests."""
        if self._queue is None or self._full is None or self._task is None:
            raise RuntimeError("the micro-batcher is not running; call start() first")
        if self._task.done():  # never expected: the worker catches every error
            raise RuntimeError("the micro-batcher worker stopped")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(items, future))
        self._pending += len(items)
        if self._pending >= self.max_batch:
            self._full.set()
        return await future

    # -- the worker -----------------------------------------------------------------
    async def _run(self) -> None:
        assert self._queue is not None and self._full is not None
        while True:
            job = self._carry if self._carry is not None else await self._queue.get()
            self._carry = None
            self._running = jobs = [job]  # failed by stop() if cancelled from here on
            if self._pending < self.max_batch and self.max_wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.max_wait)
            self._full.clear()
            n = len(job.items)
            while n < self.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if n + len(nxt.items) > self.max_batch:
                    self._carry = nxt  # opens the next batch
                    break
                jobs.append(nxt)
                n += len(nxt.items)
            self._pending -= sum(len(j.items) for j in jobs)
            if self._pending >= self.max_batch:
                self._full.set()
            live = [j for j in jobs if not j.future.done()]  # a cancelled request drops out
            if live:
                try:
                    await self._serve(live)
                except Exception as e:  # never let the worker die
                    log.error(json.dumps({"event": "error", "message": "a micro-batch failed: "
                                          f"{type(e).__name__}: {e}"}))
                    for j in live:
                        if not j.future.done():
                            j.future.set_exception(e)

    async def _serve(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        items = [x for j in jobs for x in j.items]
        try:
            rows = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as e:
            if len(jobs) == 1:
                jobs[0].future.set_exception(e)
                return
            for j in jobs:  # find the request at fault; the others still get answers
                await self._serve([j])
            return
        self.stats.add(len(items), len(jobs))
        start = 0
        for j in jobs:
            if not j.future.done():
                j.future.set_result(rows[start : start + len(j.items)])
            start += len(j.items)

    def _call(self, items: list[Any]) -> np.ndarray:
        rows = np.asarray(self.predict_fn(items))
        if len(rows) != len(items):
            raise RuntimeError(f"the model returned {len(rows)} rows for {len(items)} items")
        return rows
