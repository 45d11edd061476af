"""The worker processes of one server agreeing on admin changes (load/unload through the API).

Promise: when ``/v2/repository/models/<name>/load`` or ``/unload`` answers, the change is in
effect in *every* worker of the server, not just the one that took the request.

How: the workers share a folder (the one holding ``settings.state_file``). It holds a
``generation`` counter, memory-mapped by every worker so reading it costs a memory read, and
one ``workers/<pid>`` file per worker holding the last generation that worker applied. The
worker that made a change bumps the counter and waits until every live worker's file shows
the new generation; each worker's reloader thread checks the counter every few tens of
milliseconds, rescans the repository (which reads the shared state file) and writes its
acknowledgement. Signals are not used: granian's main process treats SIGHUP as "restart the
workers", and the same mechanism then works under both servers.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_COUNTER = struct.Struct("<Q")
#: How often a waiting worker looks at its peers' acknowledgements.
_WAIT_STEP = 0.02


class WorkerGroup:
    """This worker's membership of its server's group of workers.

    :param folder: the folder the server's workers share (created if missing).
    :param pid: this worker's process id.
    """

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        self.folder = folder
        self.pid = os.getpid() if pid is None else pid
        self._members = folder / "workers"
        self._members.mkdir(parents=True, exist_ok=True)
        counter = folder / "generation"
        fd = os.open(counter, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with _locked(fd):
                if os.fstat(fd).st_size < _COUNTER.size:
                    os.write(fd, _COUNTER.pack(0))
            self._fd = fd
            self._map = mmap.mmap(fd, _COUNTER.size)
        except BaseException:
            os.close(fd)
            raise

    def generation(self) -> int:
        """The group's change counter (a memory read: cheap enough to poll)."""
        value: int = _COUNTER.unpack_from(self._map)[0]
        return value

    def bump(self) -> int:
        """Count one more change and return the new generation."""
        with _locked(self._fd):
            value = self.generation() + 1
            _COUNTER.pack_into(self._map, 0, value)
        return value

    def acknowledge(self, generation: int) -> None:
        """Record that this worker has applied every change up to ``generation``."""
        path = self._members / str(self.pid)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(generation))
        tmp.replace(path)

    def leave(self) -> None:
        """Stop being waited for (this worker is stopping).

        The counter's map stays open until the process exits: the reloader thread may still
        be finishing a scan (its join is bounded) and reads it once more; a closed map there
        raised "mmap closed or invalid" during shutdown.
        """
        (self._members / str(self.pid)).unlink(missing_ok=True)

    def lagging(self, generation: int) -> list[int]:
        """Live workers that have not yet applied ``generation``; dead ones are dropped."""
        behind = []
        for path in self._members.iterdir():
            if not path.name.isdigit():
                continue
            pid = int(path.name)
            if not _alive(pid):
                path.unlink(missing_ok=True)
                continue
            try:
                applied = int(path.read_text() or 0)
            except (OSError, ValueError):  # being replaced right now: look again next time
                applied = -1
            if applied < generation:
                behind.append(pid)
        return behind

    def announce(self, timeout: float) -> list[int]:
        """Tell every worker that the repository changed and wait until all applied it.

        :returns: the workers still behind after ``timeout`` seconds (logged as a warning).
        """
        generation = self.bump()
        behind = self.wait(generation, timeout)
        if behind:
            logger.warning(
                "workers %s had not applied the repository change after %g s; they will",
                ", ".join(map(str, behind)),
                timeout,
            )
        return behind

    def wait(self, generation: int, timeout: float) -> list[int]:
        """Wait until every live worker applied ``generation``; return those still behind
        when ``timeout`` seconds have passed (empty when all caught up)."""
        deadline = time.monotonic() + timeout
        while True:
            behind = self.lagging(generation)
            if not behind or time.monotonic() >= deadline:
                return behind
            time.sleep(_WAIT_STEP)


class _locked:
    """``fcntl.flock`` held for a ``with`` block (serialises bumps across processes)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed worker its master has not reaped yet is a zombie, and
    ``kill(pid, 0)`` still succeeds on it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process reuses the pid
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux): trust kill()
        return True
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
