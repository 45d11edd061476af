"""Adaptive micro-batching: one scheduler thread per model version coalesces concurrent calls.

Policy: the scheduler takes the oldest waiting call, adds every queued call with the same input
layout (up to ``max_batch_size`` rows), and runs them as one model call. It waits for more
(up to ``max_latency_ms`` after the oldest call arrived) only while other requests for this
model have been announced (they are being parsed and validated on other threads), so a lone
request is never held back waiting for company. When the model is busy, calls pile up on their
own, so batches grow exactly when load does.

If a merged call fails, every caller is retried alone, so one bad row fails only its own
request. A full queue answers :class:`ServerBusy` at once.

Each call carries its request's :class:`~modelserve.telemetry.RequestRecord`: the scheduler
writes the queue wait, the batch size and the model-call time into it, and its log lines name
the request ids of the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from time import perf_counter

from .. import telemetry
from ..errors import ServerBusy
from ..types import TensorDict
from . import merge

logger = logging.getLogger(__name__)

Predict = Callable[[TensorDict, Sequence[str] | None], TensorDict]


@dataclass(eq=False)
class _Call:
    inputs: TensorDict
    outputs: Sequence[str] | None
    rows: int
    layout: merge.Layout
    future: Future[TensorDict] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)
    #: The submitting request's record (read on the caller's thread, written on this one).
    record: telemetry.RequestRecord | None = field(default_factory=telemetry.current)


class Batcher:
    """Coalesce concurrent ``predict`` calls of one model version.

    :param predict: the runtime call, ``predict(inputs, outputs) -> outputs``.
    :param max_batch_size: most rows in one model call; calls this large run alone.
    :param max_latency_ms: longest a call waits for company while more calls are announced.
    :param max_queue: most calls waiting; more get :class:`ServerBusy`.
    :param timeout: seconds a caller waits for its answer before giving up.
    """

    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_latency_ms: float,
        max_queue: int,
        timeout: float,
        name: str = "model",
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self.max_queue = max_queue
        self.timeout = timeout
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Call] = deque()
        self._announced = 0
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Counters for observability and tests: model calls made and calls served by them.
        self.batches = 0
        self.batched_calls = 0

    # -- callers ----------------------------------------------------------------------------

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce a request that will soon :meth:`submit` (it is being decoded)."""
        with self._cond:
            self._announced += 1
        self._local.announced = True
        try:
            yield
        finally:
            if getattr(self._local, "announced", False):
                # It never submitted (bad input): stop the scheduler waiting for it.
                self._local.announced = False
                with self._cond:
                    self._announced -= 1
                    self._cond.notify()

    def submit(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        """Run ``inputs`` as part of a batch and return exactly this caller's outputs.

        :raises ServerBusy: when the queue is full or the answer does not come in time.
        """
        call = _Call(inputs, outputs, merge.batch_size(inputs), merge.layout(inputs))
        with self._cond:
            if getattr(self._local, "announced", False):
                self._local.announced = False
                self._announced -= 1
            if call.rows >= self.max_batch_size or self._closed:
                # Too big to share, or this version was just retired: answer on this thread.
                run_alone = True
            else:
                run_alone = False
                if len(self._queue) >= self.max_queue:
                    raise ServerBusy(
                        f"Model {self.name} has {len(self._queue)} requests waiting; retry shortly",
                        retry_after=1.0,
                    )
                self._queue.append(call)
                self._start()
                self._cond.notify()
        if run_alone:
            started = perf_counter()
            result = self._predict(inputs, outputs)
            _report(call, 0.0, call.rows, perf_counter() - started)
            return result
        try:
            return call.future.result(timeout=self.timeout)
        except FutureTimeout:
            raise ServerBusy(
                f"Model {self.name} did not answer within {self.timeout:g} s", retry_after=1.0
            ) from None

    def close(self) -> None:
        """Stop the scheduler after it has answered every queued call."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)

    # -- scheduler --------------------------------------------------------------------------

    def _start(self) -> None:
        # Started on first use, so it runs in the process that serves (after a fork).
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"batcher-{self.name}", daemon=True
            )
            self._thread.start()

    def _next_batch(self) -> list[_Call] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = first.enqueued + self.max_latency
            while rows < self.max_batch_size:
                if self._queue:
                    nxt = self._queue[0]
                    if nxt.layout != first.layout or rows + nxt.rows > self.max_batch_size:
                        break
                    batch.append(self._queue.popleft())
                    rows += nxt.rows
                    continue
                remaining = deadline - time.monotonic()
                if self._announced <= 0 or remaining <= 0:
                    break
                self._cond.wait(remaining)
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: list[_Call]) -> None:
        self.batches += 1
        self.batched_calls += len(batch)
        taken = time.monotonic()
        if len(batch) == 1:
            self._run_alone(batch[0], taken)
            return
        try:
            started = perf_counter()
            merged, sizes = merge.stack([c.inputs for c in batch])
            outputs = self._predict(merged, merge.union_outputs([c.outputs for c in batch]))
            parts = merge.split(outputs, sizes)
            seconds = perf_counter() - started
        except Exception:  # one bad caller must not fail the others: retry each alone
            logger.debug(
                "batch of %d calls on %s failed; retrying each call alone",
                len(batch),
                self.name,
                exc_info=True,
                extra={"fields": {"request_ids": _request_ids(batch)}},
            )
            for call in batch:
                self._run_alone(call, taken)
            return
        rows = sum(sizes)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "ran %d calls (%d rows) on %s in one model call of %.3f ms",
                len(batch),
                rows,
                self.name,
                seconds * 1000,
                extra={"fields": {"request_ids": _request_ids(batch)}},
            )
        for call, part in zip(batch, parts, strict=True):
            # Reported before the answer is handed over: the caller reads it after its result.
            _report(call, taken - call.enqueued, rows, seconds)
            call.future.set_result(merge.select(part, call.outputs))

    def _run_alone(self, call: _Call, taken: float) -> None:
        try:
            started = perf_counter()
            result = self._predict(call.inputs, call.outputs)
            _report(call, taken - call.enqueued, call.rows, perf_counter() - started)
            call.future.set_result(result)
        except BaseException as exc:  # handed to the caller, who maps it to a response
            call.future.set_exception(exc)


def _report(call: _Call, queued: float, rows: int, seconds: float) -> None:
    record = call.record
    if record is not None:
        record.queue_seconds = queued
        record.batch_size = rows
        record.model_seconds = seconds


def _request_ids(batch: Sequence[_Call]) -> list[str | None]:
    return [c.record.request_id if c.record is not None else None for c in batch]
