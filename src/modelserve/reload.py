"""Hot reload: rescan the model repository by polling and on SIGHUP, in a background thread.

Each server process (each gunicorn worker) runs one :class:`Reloader`. The scan itself lives in
:meth:`ModelRepository.refresh`: it loads new or changed versions beside the serving ones and
swaps the model table in one assignment, so requests never wait for a load.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from .errors import ModelServeError

if TYPE_CHECKING:  # pragma: no cover
    from .peers import WorkerGroup

logger = logging.getLogger(__name__)


#: How often a reloader in a group of workers looks at the group's change counter.
GROUP_TICK = 0.05


class Reloader:
    """Call ``reload`` every ``interval`` seconds, whenever :meth:`request` is called, and
    (in a group of workers) as soon as another worker changed the repository.

    :param reload: the rescan (``InferenceService.reload``); its errors are logged, never
        raised, so a bad repository state never stops the thread or the server.
    :param interval: seconds between scans; ``0`` scans only on request (SIGHUP, the API).
    :param group: this worker's :class:`~modelserve.peers.WorkerGroup`: its change counter
        is checked every :data:`GROUP_TICK` seconds, and each scan is acknowledged to it.
    :param applied: the group generation the loaded models already reflect (read before
        they loaded); default: the generation when the thread starts.
    """

    def __init__(
        self,
        reload: Callable[[], Any],
        interval: float,
        group: WorkerGroup | None = None,
        applied: int | None = None,
    ) -> None:
        self._reload = reload
        self.interval = interval
        self.group = group
        self._applied = applied
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Completed scans; tests wait on it.
        self.scans = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelserve-reloader", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a scan as soon as possible (safe to call from a signal handler)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def install_sighup(self) -> None:
        """Scan on SIGHUP. Only the main thread may install signal handlers."""
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only set a flag here: loading a model inside a signal handler would run it on top
        # of whatever the main thread was doing.
        self._wake.set()

    def _run(self) -> None:
        group = self.group
        applied = self._applied if self._applied is not None else 0
        if group is not None and self._applied is None:
            applied = group.generation()
        next_poll = time.monotonic() + self.interval if self.interval else float("inf")
        while not self._stop.is_set():
            if group is None:
                self._wake.wait(self.interval or None)
            else:
                self._wake.wait(GROUP_TICK)
            woken = self._wake.is_set()
            self._wake.clear()
            if self._stop.is_set():
                break
            # Read before the scan: acknowledging it then promises every change up to here.
            seen = group.generation() if group is not None else 0
            if not (woken or seen != applied or time.monotonic() >= next_poll):
                continue
            self._scan()
            if group is not None:
                group.acknowledge(seen)
                applied = seen
            if self.interval:
                next_poll = time.monotonic() + self.interval

    def _scan(self) -> None:
        try:
            self._reload()
        except ModelServeError as exc:
            logger.error("repository rescan failed, still serving what was loaded: %s", exc)
        except Exception:
            logger.exception("repository rescan failed, still serving what was loaded")
        self.scans += 1
