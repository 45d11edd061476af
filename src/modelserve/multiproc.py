"""The folder prometheus_client's multiprocess mode writes: prepared by the server's main
process before it starts workers, compacted when workers die.

Each worker writes its own memory-mapped files (``counter_<pid>.db``, ``histogram_<pid>.db``,
``gauge_livesum_<pid>.db`` ...) and a scrape sums them all. prometheus_client leaves the
files of dead workers where they are (client_python #204, #443): their counts must stay (a
counter that drops looks like a reset), but every restart adds files and slows scrapes. So the
files of workers that are gone (their pid no longer exists) are merged into one
``<type>_archive.db`` per type and deleted; their gauges (all of modelserve's are ``live*``:
they describe running workers) are simply deleted. The folder then holds the files of the
running workers plus at most three archives, however often workers restart. Compaction runs
in gunicorn's arbiter when a worker exits and, for every server, at each scrape; an exclusive
lock on the folder keeps scrapes and compactions of different processes apart.

prometheus_client chooses multiprocess mode when it is first imported, from the environment:
the main process must set :data:`ENV` before anything imports it (:func:`prepare` checks).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: The variable prometheus_client reads; every worker inherits it from the main process.
ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Types whose values of dead workers are kept (summed into the archive).
_KEPT_TYPES = ("counter", "histogram", "summary")
_ARCHIVE = "archive"
_LOCK_NAME = "compact.lock"


def prepare() -> tuple[str, bool]:
    """Make sure this server's workers write their metrics to one clean folder.

    Uses ``$PROMETHEUS_MULTIPROC_DIR`` when it is set (its old ``.db`` files are removed: a
    new server starts from zero), else a fresh temporary folder, exported for the workers.

    :returns: the folder, and whether it was made here (the caller removes it at exit).
    :raises RuntimeError: when prometheus_client was already imported in single-process
        mode, so forked workers would not share their metrics.
    """
    values = sys.modules.get("prometheus_client.values")
    given = os.environ.get(ENV)
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            "prometheus_client was imported before the metrics folder was prepared; "
            "import modelserve.metrics only in workers"
        )
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return given, False
    path = tempfile.mkdtemp(prefix="modelserve-metrics-")
    os.environ[ENV] = path
    return path, True


def remove(path: str) -> None:
    """Remove a folder :func:`prepare` made, once the server stopped."""
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(ENV) == path:
        del os.environ[ENV]


def directory() -> str | None:
    """This process's multiprocess folder, when prometheus_client runs in that mode."""
    values = sys.modules.get("prometheus_client.values")
    if values is None or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get(ENV)


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold the folder's exclusive lock: one scrape or compaction at a time, across processes."""
    fd = os.open(os.path.join(path, _LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _pid_of(name: str) -> int | None:
    """The writer's pid in ``<type>[_<mode>]_<pid>.db``; ``None`` for archives and others."""
    if not name.endswith(".db"):
        return None
    tail = name[:-3].rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def dead_files(path: str) -> dict[int, list[str]]:
    """The files of writers that no longer exist, by pid."""
    found: dict[int, list[str]] = {}
    alive: dict[int, bool] = {}
    for name in os.listdir(path):
        pid = _pid_of(name)
        if pid is None:
            continue
        if pid not in alive:
            alive[pid] = _alive(pid)
        if not alive[pid]:
            found.setdefault(pid, []).append(name)
    return found


def compact(path: str) -> list[int]:
    """Fold the files of dead workers into the archives and delete them; the caller holds
    :func:`locked`.

    :returns: the pids whose files were folded away.
    """
    from prometheus_client.mmap_dict import MmapedDict
    from prometheus_client.mmap_dict import mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    dead = dead_files(path)
    if not dead:
        return []
    names = [name for files in dead.values() for name in files]
    for typ in _KEPT_TYPES:
        victims = [os.path.join(path, n) for n in names if n.startswith(typ + "_")]
        if not victims:
            continue
        archive = os.path.join(path, f"{typ}_{_ARCHIVE}.db")
        sources = [*victims, archive] if os.path.exists(archive) else victims
        # accumulate=False: bucket counts stay per bucket, as the files store them.
        merged = MultiProcessCollector.merge(sources, accumulate=False)  # type: ignore[no-untyped-call]
        # Not ``*.db`` until complete: a scrape never reads a half-written archive.
        partial = archive + ".partial"
        if os.path.exists(partial):
            os.remove(partial)
        out = MmapedDict(partial)  # type: ignore[no-untyped-call]
        try:
            for metric in merged:
                for sample in metric.samples:
                    labels = sample.labels
                    key = mmap_key(
                        metric.name,
                        sample.name,
                        list(labels),
                        list(labels.values()),
                        metric.documentation,
                    )
                    out.write_value(key, sample.value, 0.0)  # type: ignore[no-untyped-call]
        finally:
            out.close()  # type: ignore[no-untyped-call]
        os.replace(partial, archive)
    # Counts are in the archives now; gauges of dead workers describe nothing that runs.
    for name in names:
        try:
            os.remove(os.path.join(path, name))
        except FileNotFoundError:
            pass
    return sorted(dead)
