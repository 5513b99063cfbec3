"""Bounded inference for the web app: a fixed pool of threads, a cap on what may wait, and a gate on the model.

Why a cap: an admitted request holds its upload (up to --max_upload_mb) and then a decoded film (up to
films.MAX_PIXELS bytes, more while PIL decodes) in memory. A request is therefore admitted, before its body
is read, only while fewer than `workers + queue` are in flight; the next one gets 503 with Retry-After and
costs nothing. A slot is given back when the work it handed to the pool has finished, not when the client
stops waiting, so a client that disconnects cannot leave unbounded work behind.

Why a gate: scoring only reads the shared model, so any number of threads may score at once. A heatmap
(`cam.heatmaps`) puts hooks on one of the model's layers and flips requires_grad on its weights while it
runs: another thread's forward pass in that time would be recorded by the hooks and spoil the map, and two
overlapping heatmaps would put each other's flags back wrongly. So heatmaps hold the gate alone and scoring
shares it (a readers-writer lock; a waiting heatmap goes before new scoring, so it is never starved).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from cxr14.using.serve.refusals import Refused

T = TypeVar("T")
#: Seconds a client told "busy" (503) is asked to wait before trying again.
RETRY_AFTER = 2


class ModelGate:
    """A readers-writer lock: `shared()` for scoring, `exclusive()` for heatmaps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class InferencePool:
    """`workers` threads for decoding and inference, and at most `workers + queue` requests admitted at once."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.queue = queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cxr14-serve")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def limit(self) -> int:
        return self.workers + self.queue

    @property
    def admitted(self) -> int:
        """Requests holding a slot now: reading their upload, waiting for a worker, or being scored."""
        return self._admitted

    def admit(self) -> Slot:
        """A slot for one request, or Refused(503) when `limit` requests already hold one."""
        with self._lock:
            if self._admitted >= self.limit:
                raise Refused(
                    503,
                    f"busy: {self.limit} request(s) already in progress or waiting (--workers {self.workers}, "
                    f"--queue {self.queue}); try again in a moment",
                    retry_after=RETRY_AFTER,
                )
            self._admitted += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Stop taking work; queued jobs are cancelled, running ones finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class Slot:
    """One admitted request. Use as a context manager; `run` hands work to the pool (at most once)."""

    def __init__(self, pool: InferencePool) -> None:
        self._pool = pool
        self._handed = False

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._handed:  # never reached the pool (a bad upload): give the slot back now
            self._pool._release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on a worker thread; the slot is given back when that job ends (or is cancelled unrun)."""
        future: Future = self._pool._executor.submit(fn, *args)
        self._handed = True
        future.add_done_callback(lambda _: self._pool._release())
        return await asyncio.wrap_future(future)
