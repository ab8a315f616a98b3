"""The micro-batcher: concurrent requests merged into few calls of one batch function.

:class:`MicroBatcher` queues the float32 batches of concurrent requests and hands them, merged, to
one function (the model's onnxruntime call) that runs in a dedicated worker thread, so the event
loop keeps accepting requests while the model runs. It knows nothing about HTTP.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
from kcnn.export.checks import check_positive

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT_MS = 5.0


class BatcherStopped(RuntimeError):
    """Raised for requests still queued when the micro-batcher shuts down."""


@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future


@dataclass
class BatcherStats:
    """Counters of a :class:`MicroBatcher`; ``batch_sizes`` maps images-per-call to a call count."""

    requests: int = 0
    images: int = 0
    calls: int = 0
    errors: int = 0
    batch_sizes: dict = field(default_factory=lambda: collections.Counter())

    def as_dict(self) -> dict:
        """The counters, JSON-ready (what ``GET /v1/stats`` answers)."""
        return {
            "requests": self.requests,
            "images": self.images,
            "calls": self.calls,
            "errors": self.errors,
            "mean_batch_size": self.images / self.calls if self.calls else 0.0,
            "max_batch_size": max(self.batch_sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }


class MicroBatcher:
    """Merge concurrent ``submit`` calls into few calls of a batch function.

    ``run(batch) -> outputs`` takes a float32 array ``(n, ...)`` and returns an array whose first
    dimension is ``n``. It runs in one dedicated worker thread, so calls never overlap and the event
    loop stays free. While a call runs, new requests queue up and form the next batch. A batch is
    closed when it holds ``max_batch`` images, or when no more requests are on their way, or
    ``max_wait_ms`` after its first request arrived, whichever comes first. "On their way" are the
    requests announced with :meth:`expecting` (the server wraps body reading and decoding in it), so
    a lone request never waits for company that is not coming. A single request larger than
    ``max_batch`` is run alone, in slices of ``max_batch``.

    Use inside a running event loop: ``await start()``, ``await submit(x)``..., ``await stop()``
    (or ``async with MicroBatcher(...)``).
    """

    def __init__(self, run, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        check_positive("max_batch", max_batch, integer=True)
        if (isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float))
                or not math.isfinite(max_wait_ms) or max_wait_ms < 0):
            raise ValueError("max_wait_ms must be a finite number >= 0, "
                             f"received: max_wait_ms={max_wait_ms!r}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatcherStats()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._waiter: asyncio.Future | None = None  # the batching task's wake-up call
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping = False
        self._incoming = 0

    @property
    def running(self) -> bool:
        """Whether the batching task runs and accepts requests (started, not stopping)."""
        return self._task is not None and not self._stopping

    @property
    def queue_depth(self) -> int:
        """Images queued for the next calls plus requests announced with :meth:`expecting`."""
        return sum(len(p.images) for p in self._queue) + self._incoming

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        if self._task is not None:
            raise RuntimeError("MicroBatcher already started")
        self._stopping = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kcnn-batcher")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kcnn-batcher")

    async def stop(self) -> None:
        """Stop batching; requests still queued fail with :class:`BatcherStopped`."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BatcherStopped("the server is shutting down"))
        if self._executor is not None:  # wait for a call in flight without blocking the loop
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)

    @contextlib.contextmanager
    def expecting(self):
        """Announce a request being prepared: open batches wait (up to max_wait_ms) for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _sleep(self, timeout: float | None = None) -> None:
        """Until :meth:`_wake` (a request queued or read) or ``timeout`` seconds; a bare future
        and timer, cheaper than ``asyncio.wait_for`` on an event (which starts a task)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Queue ``images`` (a batch, first dimension >= 1) and return their rows of the output."""
        if self._task is None or self._stopping:
            raise BatcherStopped("the micro-batcher is not running")
        images = np.asarray(images)
        if images.ndim < 1 or images.shape[0] < 1:
            raise ValueError(f"images must be a non-empty batch, received shape {images.shape}")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(images, future))
        self.stats.requests += 1
        self._wake()
        return await future

    async def _next_batch(self) -> list[_Pending]:
        """Wait for a first request, then gather more until full or the wait is over."""
        loop = asyncio.get_running_loop()
        while not self._queue:
            await self._sleep()
        batch = [self._queue.popleft()]
        size = len(batch[0].images)
        deadline = loop.time() + self.max_wait
        yielded = False
        while size < self.max_batch:
            if not self._queue:
                if not yielded:  # let handlers that are ready to submit do so
                    yielded = True
                    await asyncio.sleep(0)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or self._incoming <= 0:
                    break
                await self._sleep(remaining)
                continue
            if size + len(self._queue[0].images) > self.max_batch:
                break  # the next request opens the next batch
            batch.append(self._queue.popleft())
            size += len(batch[-1].images)
        return batch

    def _run_sliced(self, images: np.ndarray) -> tuple[np.ndarray, list[int]]:
        outputs, sizes = [], []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            out = np.asarray(self._run(chunk))
            if out.ndim < 1 or out.shape[0] != len(chunk):
                raise RuntimeError(f"the batch function returned shape {out.shape} "
                                   f"for a batch of {len(chunk)}")
            outputs.append(out)
            sizes.append(len(chunk))
        return (outputs[0] if len(outputs) == 1 else np.concatenate(outputs)), sizes

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._next_batch() if not p.future.done()]
            if not batch:
                continue  # every client of this batch went away
            try:
                images = (batch[0].images if len(batch) == 1
                          else np.concatenate([p.images for p in batch]))
                outputs, sizes = await loop.run_in_executor(self._executor, self._run_sliced, images)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(BatcherStopped("the server is shutting down"))
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                self.stats.errors += 1
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.stats.calls += len(sizes)
            self.stats.images += len(images)
            self.stats.batch_sizes.update(sizes)
            start = 0
            for p in batch:
                stop = start + len(p.images)
                if not p.future.done():
                    p.future.set_result(outputs[start:stop])
                start = stop
