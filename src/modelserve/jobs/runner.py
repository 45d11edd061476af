"""One job's chunk loop: read a chunk, score it, write its files, commit it; repeat.

A run starts after the job's last committed chunk (``chunks_done``), so a job taken over from
a worker that died redoes at most the chunk that worker was scoring. Its files are written
whole before the commit, and the commit counts a chunk once (:meth:`JobStore.commit_chunk`),
so whichever run writes a chunk last, the result holds every row once. The commit also tells
the runner to stop: a cancelled job, or a lease another worker took over.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import cast

from ..errors import ModelServeError
from ..errors import ServerBusy
from ..service import InferenceService
from .files import JobFiles
from .formats import InputFormat
from .formats import OutputFormat
from .formats import count_rows
from .formats import write_chunk
from .model import Job
from .scoring import ChunkScorer
from .scoring import error_lines
from .store import JobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``succeeded``, ``failed``, ``stopped`` (cancelled, lease lost, or
    released because the worker stops), or ``skipped`` (another worker had the job)."""

    state: str
    error: str | None = None


class JobRunner:
    """Run claimed jobs of one store and data folder with one service's models.

    :param store: the job state.
    :param files: the data folder.
    :param service: the loaded models (the same runtime and validation as online requests).
    :param worker: this worker's name in leases (unique per thread and process).
    :param lease_seconds: how long a claim lasts without a heartbeat.
    :param max_attempts: starts after which a job whose workers keep dying fails.
    """

    def __init__(
        self,
        store: JobStore,
        files: JobFiles,
        service: InferenceService,
        worker: str,
        lease_seconds: float,
        max_attempts: int,
    ) -> None:
        self.store = store
        self.files = files
        self.service = service
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    def run(self, job_id: str, stopping: threading.Event | None = None) -> RunOutcome:
        """Claim ``job_id`` and run it to the end, or until ``stopping`` is set (the job is
        then handed back to the queue at its last committed chunk)."""
        job = self.store.claim(job_id, self.worker, self.lease_seconds)
        if job is None:
            return RunOutcome("skipped")
        if job.attempts > self.max_attempts:
            error = (
                f"the job was started {job.attempts - 1} times and its worker stopped each time "
                f"(MODELSERVE_JOBS_MAX_ATTEMPTS={self.max_attempts})"
            )
            self.store.finish(job.id, self.worker, error)
            return RunOutcome("failed", error)
        beat = _Heartbeat(self.store, job.id, self.worker, self.lease_seconds)
        beat.start()
        try:
            return self._run_claimed(job, stopping or threading.Event())
        except ServerBusy:
            # The store is away for a moment: not the job's fault. Its lease runs out and the
            # job is taken over (here or elsewhere) from its last committed chunk.
            raise
        except ModelServeError as exc:
            # A malformed file, a model that is gone: the job's answer, said to its owner.
            self.store.finish(job.id, self.worker, exc.message)
            return RunOutcome("failed", exc.message)
        except Exception as exc:
            logger.exception("job %s failed", job.id)
            error = f"internal error while scoring ({type(exc).__name__}); see the server log"
            self.store.finish(job.id, self.worker, error)
            return RunOutcome("failed", error)
        finally:
            beat.stop()

    def _run_claimed(self, job: Job, stopping: threading.Event) -> RunOutcome:
        source = self.files.input(job.id, job.input_format)
        fmt = cast(InputFormat, job.input_format)
        out = cast(OutputFormat, job.output_format)
        scorer = ChunkScorer(self.service, job.model, job.version, job.id_column)
        if job.rows_total is None:
            total = count_rows(source, fmt)
            if total is not None:
                self.store.set_total(job.id, total)
        n = job.chunks_done
        first_row = job.rows_done
        seen, rejected = job.rows_done, job.rows_failed
        for frame in scorer.read(source, fmt, job.chunk_rows, start_chunk=n):
            if stopping.is_set():
                self.store.release(job.id, self.worker)
                return RunOutcome("stopped")
            scored = scorer.score(frame, first_row)
            write_chunk(
                self.files.chunk(job.id, n, job.output_format),
                out,
                scored.predictions,
            )
            self.files.write_errors(job.id, n, error_lines(scored.errors))
            rows, failed = len(frame), len(scored.errors)
            if not self.store.commit_chunk(
                job.id, self.worker, n, rows, failed, self.lease_seconds
            ):
                return RunOutcome("stopped")  # cancelled, or another worker has it now
            n += 1
            first_row += rows
            seen += rows
            rejected += failed
            if rejected > job.error_budget * seen:
                error = (
                    f"{rejected} of the first {seen} rows were rejected, more than the error "
                    f"budget allows ({job.error_budget:.0%}, MODELSERVE_JOBS_ERROR_BUDGET); "
                    "the rejected rows and their reasons are listed under the job's errors"
                )
                self.store.finish(job.id, self.worker, error)
                return RunOutcome("failed", error)
        if seen == 0:
            error = "the input has no rows"
            self.store.finish(job.id, self.worker, error)
            return RunOutcome("failed", error)
        self.store.finish(job.id, self.worker)
        return RunOutcome("succeeded")


class _Heartbeat:
    """Renews a running job's lease between commits (a chunk can take longer than a lease
    when the model is slow)."""

    def __init__(self, store: JobStore, job_id: str, worker: str, lease_seconds: float) -> None:
        self._store = store
        self._job_id = job_id
        self._worker = worker
        self._lease = lease_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"modelserve-job-heartbeat-{job_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._done.wait(self._lease / 3):
            try:
                if not self._store.heartbeat(self._job_id, self._worker, self._lease):
                    return  # finished, cancelled or taken over: the runner sees it at commit
            except Exception:  # a store hiccup: the next beat tries again
                logger.warning("heartbeat of job %s failed", self._job_id, exc_info=True)
