"""How many CPUs this process may use, and the thread and batching defaults derived from them.

The CPUs are the fewer of the ones the scheduler lets this process run on (its affinity) and
the ones its container's CPU quota pays for (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``): a container limited to 2 CPUs on a 64-core host must size its pools for
2, or 64 native threads fight over 2 CPUs' worth of time slices.

Set once per worker process at start-up (:func:`configure`); BLAS and OpenMP pools are limited
at once, and the ONNX and torch runtimes read :func:`model_threads` when they load. The
defaults of ``MODELSERVE_THREADS``, ``MODELSERVE_MAX_BATCH_SIZE`` and
``MODELSERVE_MAX_LATENCY_MS`` come from :func:`default_server_threads`,
:func:`default_max_batch_size` and :func:`default_max_latency_ms` (measured in BENCHMARKS.md,
"Defaults from the machine").
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

_model_threads = 1

#: Where cgroup file systems are mounted, and where the kernel says which cgroup we are in.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_limit(folder: Path) -> float | None:
    """CPUs allowed by ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) in one folder."""
    text = _read(folder / "cpu.max")
    if not text:
        return None
    parts = text.split()
    if parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> float | None:
    """CPUs allowed by ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none)."""
    quota_text = _read(folder / "cpu.cfs_quota_us")
    period_text = _read(folder / "cpu.cfs_period_us")
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroups(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path in the v2 hierarchy and in v1's ``cpu`` controller."""
    v2: str | None = None
    v1: str | None = None
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _folders(mount: Path, path: str | None) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and each of its parents up to the mount.

    A limit set on a parent binds its children, so the smallest of them counts. Inside a
    container the path is often the host's and absent under the container's mount: then the
    mount's own folder is the container's cgroup.
    """
    folders = [mount]
    if path:
        parts = [p for p in path.split("/") if p]
        folders += [mount.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)]
    return [f for f in folders if f.is_dir()]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs the container's quota pays for (``1.5`` = 150 ms per 100 ms), or ``None``
    when no quota is set (or the files cannot be read: not Linux, no cgroup file system).

    :param root: where the cgroup file systems are mounted (tests pass a fake tree).
    :param proc_cgroup: the ``/proc/self/cgroup`` to read.
    """
    v2_path, v1_path = _own_cgroups(proc_cgroup)
    limits: list[float] = []
    if (root / "cgroup.controllers").exists():  # the v2 (unified) hierarchy is mounted here
        limits += [x for f in _folders(root, v2_path) if (x := _v2_limit(f)) is not None]
    else:
        for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            mount = root / name
            if mount.is_dir():
                found = [x for f in _folders(mount, v1_path) if (x := _v1_limit(f)) is not None]
                limits += found
                break
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """The CPUs the scheduler lets this process run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1  # pragma: no cover - macOS, Windows


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Whole CPUs this process can keep busy: the fewer of its affinity and its quota.

    A fractional quota rounds down (1.5 CPUs: 1), since a pool sized to the rounded-up count
    is throttled for part of every period; never below 1.
    """
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def default_model_threads(workers: int, cpus: int | None = None) -> int:
    """An even share of this process' CPUs per worker, at least one."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, cpus // max(1, workers))


#: Request threads per CPU of a worker's share, and the bounds. Measured on one CPU in
#: BENCHMARKS.md ("Defaults from the machine"), server CPU time per single-row request at 64
#: connections: a batched (uncompiled) forest costs 1.13 ms with 16 threads and 0.80 ms with
#: 32 or 64 (each waiting request holds a thread, so fewer threads mean smaller batches); a
#: compiled forest, never batched, costs more the more threads compete for the GIL (0.28 ms
#: with 8, 0.33 with 16, 0.39 with 32, 0.40 with 64). The smallest count that keeps batches
#: full is the best compromise: 32 on one CPU. A worker with more CPUs calls its model with
#: more intra-op threads and so answers batches sooner; 64 lets them fill (not measured here:
#: this machine has 2 cores, one of them for the load generator).
THREADS_PER_CPU = 32
MIN_THREADS = 32
MAX_THREADS = 64
#: Rows of one batched call: never fewer than this (several multi-row requests may share it).
MIN_BATCH_SIZE = 64


def default_server_threads(workers: int = 1, cpus: int | None = None) -> int:
    """Request threads per worker: :data:`THREADS_PER_CPU` per CPU of the worker's share,
    within :data:`MIN_THREADS` .. :data:`MAX_THREADS`."""
    share = default_model_threads(workers, cpus)
    return min(MAX_THREADS, max(MIN_THREADS, THREADS_PER_CPU * share))


#: Request threads per CPU for a worker none of whose models is batched: nothing waits for
#: company there, so every thread past the ones computing only competes for the GIL.
#: Measured on one CPU (BENCHMARKS.md, "#21 round four"): the compiled forest behind a key, a
#: Redis limit, metrics and the request line, 64 connections, answered 8,666 req/s with 8
#: threads, 8,302 with 16 and 7,481 with 32.
UNBATCHED_THREADS_PER_CPU = 8


def unbatched_server_threads(workers: int = 1, cpus: int | None = None) -> int:
    """Request threads per worker when no model is batched: :data:`UNBATCHED_THREADS_PER_CPU`
    per CPU of the worker's share, within 8 .. :data:`MAX_THREADS`."""
    share = default_model_threads(workers, cpus)
    return min(MAX_THREADS, max(UNBATCHED_THREADS_PER_CPU, UNBATCHED_THREADS_PER_CPU * share))


def default_max_batch_size(workers: int = 1, cpus: int | None = None) -> int:
    """Rows merged into one model call: the worker's request threads (each waiting request
    holds one, so single-row requests can fill no more), at least :data:`MIN_BATCH_SIZE`."""
    return max(MIN_BATCH_SIZE, default_server_threads(workers, cpus))


def default_max_latency_ms(workers: int = 1, cpus: int | None = None) -> float:
    """How long a batch waits for company. It waits only while more requests are on their way
    in, so only slow models feel it. Measured on one CPU for the uncompiled forest (a ~6 ms
    call), 2, 5 and 10 ms cost within 10% of each other per request; 5 ms keeps the tail
    latency a lone burst sees low. More CPUs take requests in faster and fill a batch sooner,
    so the bound does not grow with them."""
    return 5.0


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
