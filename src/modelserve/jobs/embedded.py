"""The embedded backend: threads in each server process run the jobs of a shared store.

Every server process (and every thread in it) polls the store for a claimable job and claims
it atomically, so several workers of one server, or several servers on one data folder,
never run one job twice. A job whose process died (SIGKILL, a crash, a restart) is claimable
again once its lease expires and resumes at its last committed chunk; a process that stops
gracefully hands its jobs back at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from .manager import JobManager
from .runner import JobRunner

logger = logging.getLogger(__name__)

#: Seconds an idle executor thread waits before it looks at the store again (a job submitted
#: to this process wakes it at once; one submitted to another process is seen within this).
POLL_SECONDS = 0.5

#: Seconds between two sweeps of expired results.
SWEEP_SECONDS = 60.0


def worker_name(role: str) -> str:
    """A name for leases, unique per process and start: ``host:pid:role:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{secrets.token_hex(3)}"


class EmbeddedExecutor:
    """``jobs_workers`` threads that run this store's jobs in this process.

    :param manager: the jobs (store, files, settings, service).
    """

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_sweep = 0.0
        self._sweep_lock = threading.Lock()

    def start(self) -> None:
        settings = self.manager.settings
        for i in range(settings.jobs_workers):
            runner = JobRunner(
                self.manager.store,
                self.manager.files,
                self.manager.service,
                worker_name(f"embedded{i}"),
                settings.jobs_lease_seconds,
                settings.jobs_max_attempts,
            )
            thread = threading.Thread(
                target=self._loop, args=(runner,), name=f"modelserve-jobs-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submitted(self, job_id: str) -> None:
        self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the threads; a job that is running is handed back after its current chunk."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _loop(self, runner: JobRunner) -> None:
        while not self._stopping.is_set():
            ran = False
            try:
                self._sweep()
                for job_id in self.manager.store.claimable():
                    if self._stopping.is_set():
                        break
                    outcome = runner.run(job_id, self._stopping)
                    if outcome.state != "skipped":
                        ran = True
                        break  # look again from the oldest: it may be claimable now
            except Exception:  # the store is unreachable for a moment: try again later
                logger.warning("the job executor could not reach the store", exc_info=True)
            if not ran:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._sweep_lock:
            if now - self._last_sweep < SWEEP_SECONDS:
                return
            self._last_sweep = now
        self.manager.remove_expired()
