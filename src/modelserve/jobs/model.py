"""A batch job's record and its states; values only, no I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from typing import Literal

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]

#: States a job never leaves.
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "cancelled")

#: Most jobs (and most rejected rows) one listing page holds.
MAX_PAGE = 1000

#: The formats a job reads and writes, and the media type of each.
MEDIA_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass(frozen=True)
class Job:
    """One job as the store holds it.

    ``rows_done`` counts every input row of the committed chunks, valid or not;
    ``rows_failed`` those of them that were rejected (listed by ``/errors``).
    """

    id: str
    owner: str
    model: str
    version: int | None
    state: JobState
    input_format: str
    output_format: str
    id_column: str | None
    chunk_rows: int
    error_budget: float
    rows_total: int | None
    rows_done: int
    rows_failed: int
    chunks_done: int
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    lease_owner: str | None
    lease_expires: float | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def rows_per_second(self, now: float | None = None) -> float | None:
        """Rows scored per second of running time (``None`` before it started)."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        elapsed = end - self.started_at
        return round(self.rows_done / elapsed, 1) if elapsed > 0 else None

    def describe(self) -> dict[str, Any]:
        """The job as ``GET /jobs/<id>`` answers it (no lease internals, no paths)."""
        now = time.time()
        end = self.finished_at if self.finished_at is not None else now
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "state": self.state,
            "rows_total": self.rows_total,
            "rows_done": self.rows_done,
            "rows_failed": self.rows_failed,
            "chunks_done": self.chunks_done,
            "rows_per_second": self.rows_per_second(now),
            "input_format": self.input_format,
            "output_format": self.output_format,
            "id_column": self.id_column,
            "attempts": self.attempts,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "elapsed_seconds": (
                round(end - self.started_at, 3) if self.started_at is not None else None
            ),
            "error": self.error,
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
