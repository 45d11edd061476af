"""What the core reports about each request and each model load, for logs and metrics.

The transport opens one :class:`RequestRecord` per request (:func:`begin`); the core fills in
what only it knows (model, version, rows, batch size, cache hit, queue wait, model-call time)
on :func:`current`, and the transport turns the finished record into one log line and the
request metrics. Model loads are reported to the process's :class:`Observer`, which the
metrics module replaces. No Flask and no prometheus_client here: the core stays free of both.
"""

from __future__ import annotations

import random
from contextvars import ContextVar
from time import perf_counter


class RequestRecord:
    """One request's facts, filled in by whoever learns them; ``None`` where not known.

    A batched model call writes ``queue_seconds``, ``model_seconds`` and ``batch_size`` from
    the batcher thread before it hands the answer over, so the request thread reads them
    after its result arrived.
    """

    __slots__ = (
        "request_id",
        "started",
        "model",
        "version",
        "rows",
        "batch_size",
        "cache_hit",
        "queue_seconds",
        "model_seconds",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = perf_counter()
        self.model: str | None = None
        self.version: str | None = None
        self.rows: int | None = None
        #: Rows in the model call that answered this request (its own rows when unbatched).
        self.batch_size: int | None = None
        self.cache_hit: bool | None = None
        self.queue_seconds: float | None = None
        self.model_seconds: float | None = None

    def __repr__(self) -> str:
        return f"RequestRecord({self.request_id!r}, model={self.model!r}, version={self.version!r})"


_current: ContextVar[RequestRecord | None] = ContextVar("modelserve_request", default=None)


def begin(request_id: str) -> RequestRecord:
    """Open the record of the request this thread now serves; :func:`end` closes it."""
    record = RequestRecord(request_id)
    _current.set(record)
    return record


def end() -> None:
    """This thread's request is over: later log lines and model calls belong to no request."""
    _current.set(None)


def current() -> RequestRecord | None:
    """The record of the request this thread is serving, if any (``None`` in the CLI, in
    warm-ups and on the batcher thread)."""
    return _current.get()


def new_request_id() -> str:
    """A fresh request id, a version-4 UUID in hex. From :mod:`random`, not the OS: an id
    must be unique, not secret, and ``os.urandom``/``uuid.uuid4()`` cost a system call."""
    bits = random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
    return f"{bits:032x}"


#: The version (4) and variant (RFC 4122) bits of a UUID4, as masks on 128 random bits.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


class Observer:
    """Receives the core's model lifetime events; this base class ignores them.

    :mod:`modelserve.metrics` installs one that records them (:func:`set_observer`).
    """

    def model_loaded(self, name: str, version: int, seconds: float) -> None:
        """A version loaded and answered its warm-up in ``seconds``."""

    def model_load_failed(self, name: str, version: int) -> None:
        """A version failed to load."""

    def version_serving(self, name: str, version: int, serving: bool) -> None:
        """A loaded version was published (``True``) or released (``False``)."""


_observer = Observer()


def observer() -> Observer:
    return _observer


def set_observer(new: Observer) -> None:
    """Send this process's model events to ``new`` from now on."""
    global _observer
    _observer = new
