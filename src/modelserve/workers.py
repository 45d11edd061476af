"""The process model of both production servers, and the one registry of per-worker start/stop.

**The main process** (gunicorn's arbiter, granian's main process) reads the settings once,
runs the preflight (:func:`modelserve.server.preflight`: settings, manifests and sha256 pins,
so a bad artifact stops the start with one clear message), preloads the fork-safe models
(``preload``, :mod:`modelserve.preload`: ``runtime: sklearn`` artifacts are unpickled here,
then ``gc.freeze()``), and forks the workers, which share those models copy-on-write. It
never builds the app, never predicts, and never loads a runtime with native thread pools
(onnxruntime, torch, the boosters, OpenMP): they do not survive a fork.

**Each worker**, after the fork, builds its own app (``create_app``: the model libraries, the
models, taking the preloaded ones whose files are unchanged, the warm-up, the batcher threads
of the models that batch), then starts its hot-reload thread, and then runs
:func:`run_worker_start`. When it stops gracefully it runs :func:`run_worker_stop`
(the reloader is stopped there); batcher threads are daemons and end with the process, after
the requests that use them have been answered.

What each server offers, and what modelserve uses:

* **gunicorn** forks workers from the arbiter and has per-worker hooks: ``post_worker_init``
  (the app is loaded) runs :func:`run_worker_start`; ``worker_exit`` (in the worker, after
  its loop ended) runs :func:`run_worker_stop`. The settings object is inherited through the
  fork. A worker that fails to boot exits with status 3 and the arbiter stops the server.
  A worker that dies later (SIGKILL, a crash) is replaced by the arbiter.
* **granian** also forks (``multiprocessing``'s default start method on Linux, ``spawn``
  elsewhere), but its hooks (``on_startup``, ``on_reload``, ``on_shutdown``) run in the main
  process only, and a worker builds its app by calling the factory
  ``modelserve.server:granian_app``: the settings travel as one JSON document in
  ``MODELSERVE_SETTINGS_JSON``. The factory runs :func:`run_worker_start` once the app is
  built. granian has no per-worker exit hook, and ``atexit`` does not run in a forked
  ``multiprocessing`` child (it leaves through ``os._exit``); what does run there after the
  worker's serve loop returned is ``multiprocessing``'s own exit function, so the factory
  registers :func:`run_worker_stop` as a ``multiprocessing.util.Finalize``. granian's worker
  returns from its serve loop only after every open connection finished. With
  ``respawn_failed_workers`` a dead worker is replaced; a worker that fails to *boot* tells
  the main process to stop (granian's own crash-loop guard only sees deaths within 5.5 s
  of a respawn, and a model can take longer than that to fail).

**Graceful stop (SIGTERM).** Readiness (``/health``, ``/v2/health/ready``) answers 503 from
the signal on (:func:`draining`); for :data:`DRAIN_SECONDS` the worker still accepts and
answers everything, so the connections and requests already queued in the kernel when the
signal came are served rather than reset, each answer saying ``Connection: close`` (clients
reconnect, through a load balancer to another replica); then the server's own graceful stop
runs (no new connections, requests in flight finish) and workers still alive after
``graceful_timeout`` are killed. gunicorn's worker gets SIGTERM from the arbiter (or from
anyone) and starts the drain itself. granian's workers install their own SIGTERM handler
that stops accepting at once, so the drain is run by the main process: on SIGTERM it sends
SIGUSR1 to its workers (they begin draining), and calls granian's stop after the drain.
Under granian, send SIGTERM to the main process only (as ``docker stop`` and Kubernetes do;
systemd: ``KillMode=mixed``) to get the drain: a SIGTERM sent to a granian worker stops it
at once. When the whole process group gets the signal (Ctrl-C in a terminal, systemd's
default ``KillMode=control-group``) the workers stop by themselves without a drain, and the
main process, which would otherwise take their exits for crashes and respawn them, turns
respawning off as soon as it is signalled: the server is down within a couple of seconds.

**Recycling.** A worker past ``max_requests`` (plus a random 0..``max_requests_jitter``) or
above ``max_worker_rss_mb`` is replaced, gracefully. gunicorn counts requests itself; the RSS
check is modelserve's ``post_request`` hook (:class:`RssGuard`); the worker stops accepting,
answers what it has with ``Connection: close``, and the arbiter forks a fresh worker (the
shared listening socket queues new connections meanwhile). granian samples RSS in its main
process itself; the request count is modelserve's (:class:`RequestBudget`), and a worker past
it leaves its pid for the main process, which respawns it granian's way: the fresh worker
starts, the old one (answering ``Connection: close`` from then on) is stopped 3.5 s later.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

#: Seconds a stopping worker keeps accepting and answering (while readiness already says
#: 503) before the server stops accepting: long enough to take in what the kernel had queued
#: when the signal came, short enough that a stop stays quick.
DRAIN_SECONDS = 1.0

_Hook = TypeVar("_Hook", bound=Callable[[], object])


class WorkerHooks:
    """Callbacks run once when a worker starts serving and once when it stops."""

    def __init__(self) -> None:
        self._start: list[Callable[[], object]] = []
        self._stop: list[Callable[[], object]] = []
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()
        self._draining = threading.Event()

    def on_start(self, fn: _Hook) -> _Hook:
        """Register ``fn`` to run when the worker starts serving; usable as a decorator."""
        self._start.append(fn)
        return fn

    def on_stop(self, fn: _Hook) -> _Hook:
        """Register ``fn`` to run when the worker stops; stop callbacks run newest first."""
        self._stop.append(fn)
        return fn

    def run_start(self) -> None:
        """Run the start callbacks, in registration order, the first time only."""
        with self._lock:
            if self._started:
                return
            self._started = True
            callbacks = list(self._start)
        _run_each(callbacks, "start")

    def run_stop(self) -> None:
        """Run the stop callbacks, newest first, the first time only."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            callbacks = list(reversed(self._stop))
        _run_each(callbacks, "stop")

    def begin_draining(self) -> None:
        """Mark this worker as stopping: readiness answers 503 from now on."""
        self._draining.set()

    def draining(self) -> bool:
        return self._draining.is_set()


def _run_each(callbacks: list[Callable[[], object]], phase: str) -> None:
    # One failing callback must neither stop the others nor the worker: log it and go on.
    for fn in callbacks:
        try:
            fn()
        except Exception:
            logger.exception("worker %s callback %r failed", phase, fn)


#: The hooks of this process (each worker has its own after the fork).
hooks = WorkerHooks()


def on_worker_start(fn: _Hook) -> _Hook:
    """Register ``fn`` to run in each worker once its app is built (decorator-friendly)."""
    return hooks.on_start(fn)


def on_worker_stop(fn: _Hook) -> _Hook:
    """Register ``fn`` to run in each worker when it stops gracefully (decorator-friendly)."""
    return hooks.on_stop(fn)


def run_worker_start() -> None:
    """Run this worker's start callbacks (once; the servers call it, not the app)."""
    hooks.run_start()


def run_worker_stop() -> None:
    """Run this worker's stop callbacks newest first (once; exceptions are logged)."""
    hooks.run_stop()


def begin_draining() -> None:
    """Mark this worker as stopping (its SIGTERM path calls this)."""
    hooks.begin_draining()


def draining() -> bool:
    """Whether this worker is stopping: readiness routes answer 503 when it is."""
    return hooks.draining()


def request_limit(max_requests: int, jitter: int, rng: random.Random | None = None) -> int:
    """This worker's request budget: ``max_requests`` plus a random 0..``jitter``, so the
    workers of one server do not all recycle at once; ``0``: no limit."""
    if max_requests <= 0:
        return 0
    return max_requests + (rng or random).randint(0, jitter)


class RequestBudget:
    """Counts a worker's requests; :meth:`spend` is true once, for the request that reaches
    the limit (thread-safe: ``itertools.count`` advances atomically under the GIL)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = itertools.count(1)

    def spend(self) -> bool:
        return self.limit > 0 and next(self._count) == self.limit


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process, from ``/proc/<pid>/statm`` (0 where there is none)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            resident = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident * os.sysconf("SC_PAGE_SIZE")


class RssGuard:
    """Whether this worker's RSS is over ``limit_mb``, read at most once per ``every``
    seconds (a request pays one clock read otherwise); ``0`` never trips."""

    def __init__(self, limit_mb: int, every: float = 1.0) -> None:
        self.limit = limit_mb * 1024 * 1024
        self.every = every
        self._next = 0.0

    def over(self) -> bool:
        if self.limit <= 0:
            return False
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every
        return rss_bytes() > self.limit
