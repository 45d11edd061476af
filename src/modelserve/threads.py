"""How many threads one model call may use, so workers x threads never oversubscribe cores.

Set once per worker process at start-up (:func:`configure`); BLAS and OpenMP pools are limited
at once, and the ONNX and torch runtimes read :func:`model_threads` when they load. Also the
default number of request threads per server worker (:func:`default_server_threads`).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

_model_threads = 1

#: The most request threads a worker gets by default (the former fixed default).
MAX_DEFAULT_SERVER_THREADS = 32


def default_server_threads(cpus: int) -> int:
    """Request threads per worker by default: ``2 * cpus + 1``, at most 32.

    Granian warns at start-up ("Configuration allows spawning up to N Python threads, which
    seems quite high") when a WSGI worker's ``blocking_threads`` exceed
    ``multiprocessing.cpu_count() * 2 + 1``, so that is the most a default may be; pass the
    same count, :func:`multiprocessing.cpu_count` (the machine's CPUs, not this process'
    affinity), or granian still warns in a container pinned to fewer cores. A thread holds
    one request while the batcher scores it with others, so the threads bound how many
    requests one worker's batch can gather: at least 3, even on one CPU, and up to 32 on
    large machines, where more waiting threads would only be idle stacks. The defaults will
    be chosen from measurement later (issue "Performance, round two").

    :param cpus: the machine's CPU count; ``0`` or less counts as one.
    """
    return min(MAX_DEFAULT_SERVER_THREADS, 2 * max(1, cpus) + 1)


def default_model_threads(workers: int) -> int:
    """An even share of this process' CPUs per worker, at least one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // max(1, workers))


def configure(threads: int) -> None:
    """Limit every native thread pool of this process to ``threads`` threads."""
    global _model_threads
    _model_threads = threads
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:  # pragma: no cover - scikit-learn always brings threadpoolctl
        logger.warning("threadpoolctl is missing: BLAS/OpenMP threads are not limited")


def model_threads() -> int:
    """Threads a runtime may use inside one model call (set by :func:`configure`)."""
    return _model_threads
