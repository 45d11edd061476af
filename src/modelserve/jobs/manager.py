"""What the transport calls: submit, read, list, cancel jobs and read their results, over
either backend (the embedded executor, or Celery workers)."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Protocol
from typing import cast

from ..errors import InvalidInput
from ..errors import JobConflict
from ..errors import UnsupportedMediaType
from ..service import InferenceService
from ..settings import ServerSettings
from .files import JobFiles
from .files import default_store_url
from .files import jobs_dir
from .formats import InputFormat
from .formats import OutputFormat
from .formats import read_chunks
from .formats import stream_chunks
from .formats import write_chunk
from .model import MAX_PAGE
from .model import MEDIA_TYPES
from .model import STATES
from .model import Job
from .store import JobStore
from .store import new_job_id

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """Who runs the jobs: told of each new job, stopped with the server."""

    def submitted(self, job_id: str) -> None:
        """A job was queued (wake a thread, send a task)."""
        ...  # pragma: no cover

    def close(self) -> None:
        """Stop: running jobs go back to the queue at their last committed chunk."""
        ...  # pragma: no cover


class JobManager:
    """The jobs of one store and data folder.

    :param settings: the ``jobs_*`` settings.
    :param service: the server's models (resolves the model a job names).
    :param store: the job state; built from the settings when omitted.
    """

    def __init__(
        self, settings: ServerSettings, service: InferenceService, store: JobStore | None = None
    ) -> None:
        self.settings = settings
        self.service = service
        self.files = JobFiles(jobs_dir(settings))
        self.files.root.mkdir(parents=True, exist_ok=True)
        self.store = store or JobStore(default_store_url(settings), settings.jobs_table)
        self.backend: Backend | None = None

    def start(self, backend: Backend) -> None:
        self.backend = backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.store.close()

    # -- submit -------------------------------------------------------------------------------

    def submit(
        self,
        owner: str,
        name: str | None,
        version: int | None,
        input_format: str,
        write_input: Callable[[Path], int],
        output_format: str | None = None,
        id_column: str | None = None,
        error_budget: float | None = None,
    ) -> Job:
        """Queue a job whose input ``write_input(path)`` writes (returning the bytes written).

        :raises ModelNotFound: the model (version) is not served here.
        :raises InvalidInput: an empty input, or a bad option.
        """
        sv = self.service.resolve(name, version)
        out = output_format or input_format
        if out not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"Unknown output format {out!r}: use one of {', '.join(MEDIA_TYPES)}"
            )
        budget = self.settings.jobs_error_budget if error_budget is None else error_budget
        if not 0 <= budget <= 1:
            raise InvalidInput("error_budget must be a share of the rows, from 0 to 1")
        job_id = new_job_id()
        folder = self.files.folder(job_id)
        folder.mkdir(parents=True)
        target = self.files.input(job_id, input_format)
        partial = target.with_name(target.name + ".part")
        try:
            size = write_input(partial)
            if size == 0:
                raise InvalidInput("The uploaded file is empty")
            os.replace(partial, target)
        except BaseException:
            self.files.remove(job_id)
            raise
        job = Job(
            id=job_id,
            owner=owner,
            model=sv.name,
            # Pinned: every chunk, on whichever worker, is scored by the version it began with.
            version=sv.version,
            state="queued",
            input_format=input_format,
            output_format=out,
            id_column=id_column or None,
            chunk_rows=self.settings.jobs_chunk_rows,
            error_budget=budget,
            rows_total=None,
            rows_done=0,
            rows_failed=0,
            chunks_done=0,
            attempts=0,
            created_at=time.time(),
            started_at=None,
            finished_at=None,
            error=None,
            lease_owner=None,
            lease_expires=None,
        )
        self.store.add(job)
        if self.backend is not None:
            self.backend.submitted(job_id)
        return job

    # -- read -------------------------------------------------------------------------------

    def get(self, job_id: str, owner: str | None) -> Job:
        """:raises JobNotFound: no such job for ``owner``."""
        return self.store.get(job_id, owner)

    def page(
        self, owner: str | None, limit: int, offset: int, state: str | None
    ) -> tuple[list[Job], int]:
        if state is not None and state not in STATES:
            raise InvalidInput(f"Unknown state {state!r}: use one of {', '.join(STATES)}")
        return self.store.page(owner, max(1, min(limit, MAX_PAGE)), max(0, offset), state)

    def cancel(self, job_id: str, owner: str | None) -> Job:
        """Cancel a queued or running job (a running one stops before its next chunk).

        :raises JobConflict: it already finished.
        """
        job = self.store.get(job_id, owner)
        if not self.store.cancel(job_id):
            job = self.store.get(job_id, owner)
            raise JobConflict(job_id, job.state, "only a queued or running job can be cancelled")
        return self.store.get(job_id, owner)

    def result(
        self, job_id: str, owner: str | None, fmt: str | None
    ) -> tuple[Job, str, Iterator[bytes]]:
        """The predictions of a succeeded job as one file of ``fmt`` (default: the job's
        output format), streamed chunk by chunk: the job, the format, the bytes.

        :raises JobConflict: the job has not succeeded.
        """
        job = self.store.get(job_id, owner)
        if job.state != "succeeded":
            raise JobConflict(
                job_id, job.state, "its result is ready once it has succeeded (GET the job)"
            )
        want = fmt or job.output_format
        if want not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"Unknown result format {want!r}: use one of {', '.join(MEDIA_TYPES)}"
            )
        if want == job.output_format:
            paths = self.files.chunks(job.id, job.chunks_done, want)
        else:
            paths = [self._converted(job, n, want) for n in range(job.chunks_done)]
        return job, want, stream_chunks(paths, cast(OutputFormat, want))

    def _converted(self, job: Job, n: int, fmt: str) -> Path:
        """Chunk ``n`` of ``job``'s result in ``fmt``, converted once and kept."""
        target = self.files.converted(job.id, n, fmt)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            source = self.files.chunk(job.id, n, job.output_format)
            stored = cast(InputFormat, job.output_format)
            frames = list(read_chunks(source, stored, job.chunk_rows))
            import pandas as pd

            frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            write_chunk(target, cast(OutputFormat, fmt), frame)
        return target

    def errors(
        self, job_id: str, owner: str | None, limit: int, offset: int
    ) -> tuple[Job, list[dict[str, Any]]]:
        """A page of the rows the job rejected so far (committed chunks), in row order."""
        job = self.store.get(job_id, owner)
        limit = max(1, min(limit, MAX_PAGE))
        records = self.files.read_errors(job.id, job.chunks_done)
        return job, list(itertools.islice(records, max(0, offset), max(0, offset) + limit))

    # -- maintenance ----------------------------------------------------------------------

    def remove_expired(self) -> int:
        """Delete the jobs (and files) that finished more than ``jobs_result_ttl`` ago."""
        removed = 0
        for job_id in self.store.expired(self.settings.jobs_result_ttl):
            self.files.remove(job_id)
            self.store.delete(job_id)
            removed += 1
        if removed:
            logger.info("removed %d expired job(s)", removed)
        return removed
