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
