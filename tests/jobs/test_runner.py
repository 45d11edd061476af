"""The chunk loop in one process: a stopping worker hands its job back, a worker that lost its
lease stops at its next commit, and a job whose workers keep dying fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from modelserve.jobs.files import JobFiles
from modelserve.jobs.runner import JobRunner
from modelserve.jobs.store import JobStore
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings

from .conftest import check_result
from .conftest import csv_bytes
from .conftest import iris_frame
from .test_store import queued


@pytest.fixture
def parts(tmp_path: Path, jobs_repo: Path) -> tuple[JobStore, JobFiles, InferenceService]:
    service = InferenceService(ServerSettings(profile="testing", model_path=jobs_repo))
    service.load()
    return JobStore(str(tmp_path / "jobs.db")), JobFiles(tmp_path / "data"), service


def add_job(store: JobStore, files: JobFiles, frame: pd.DataFrame) -> str:
    job = queued()
    job = type(job)(**{**job.__dict__, "id_column": "key", "chunk_rows": 100})
    files.folder(job.id).mkdir(parents=True)
    files.input(job.id, "csv").write_bytes(csv_bytes(frame))
    store.add(job)
    return job.id


def result(files: JobFiles, store: JobStore, job_id: str) -> pd.DataFrame:
    job = store.get(job_id)
    paths = files.chunks(job_id, job.chunks_done, "csv")
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def test_a_stopping_worker_hands_its_job_back_and_another_resumes_it(
    parts: tuple[JobStore, JobFiles, InferenceService],
) -> None:
    store, files, service = parts
    frame = iris_frame(1000)
    job_id = add_job(store, files, frame)
    stopping = threading.Event()

    class SignalledStore(JobStore):
        """SIGTERM arrives while chunk 1 commits."""

        def commit_chunk(self, job_id: str, worker: str, chunk: int, *rest: float) -> bool:
            done = super().commit_chunk(job_id, worker, chunk, *rest)  # type: ignore[arg-type]
            if chunk == 1:
                stopping.set()
            return done

    signalled = SignalledStore(str(files.root.parent / "jobs.db"))
    first = JobRunner(signalled, files, service, "a", 30, 5)
    assert first.run(job_id, stopping).state == "stopped"
    handed = store.get(job_id)
    assert (handed.state, handed.chunks_done, handed.attempts) == ("queued", 2, 0)
    second = JobRunner(JobStore(str(files.root.parent / "jobs.db")), files, service, "b", 30, 5)
    assert second.run(job_id).state == "succeeded"
    done = store.get(job_id)
    assert (done.rows_done, done.chunks_done, done.attempts) == (1000, 10, 1)
    check_result(result(files, store, job_id), frame)


def test_a_worker_whose_lease_was_taken_over_stops_without_counting_its_chunk(
    parts: tuple[JobStore, JobFiles, InferenceService],
) -> None:
    store, files, service = parts
    frame = iris_frame(300)
    job_id = add_job(store, files, frame)
    # The first worker claimed it and "froze" past its lease; the second took over.
    assert store.claim(job_id, "frozen", 0.05) is not None
    time.sleep(0.1)
    taker = JobRunner(store, files, service, "b", 30, 5)
    assert taker.run(job_id).state == "succeeded"
    assert not store.commit_chunk(job_id, "frozen", 3, 100, 0, 30)
    job = store.get(job_id)
    assert (job.rows_done, job.attempts) == (300, 2)
    check_result(result(files, store, job_id), frame)


def test_a_job_whose_workers_keep_dying_fails(
    parts: tuple[JobStore, JobFiles, InferenceService],
) -> None:
    store, files, service = parts
    job_id = add_job(store, files, iris_frame(10))
    for _ in range(2):  # two workers claimed it and died
        store.claim(job_id, "dead", 0.01)
        time.sleep(0.02)
    outcome = JobRunner(store, files, service, "c", 30, 2).run(job_id)
    assert outcome.state == "failed" and "MAX_ATTEMPTS=2" in (outcome.error or "")
    assert store.get(job_id).state == "failed"
    assert JobRunner(store, files, service, "d", 30, 2).run(job_id).state == "skipped"


def test_a_job_that_raises_fails_with_a_reason_instead_of_running_forever(
    parts: tuple[JobStore, JobFiles, InferenceService], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, files, service = parts
    job_id = add_job(store, files, iris_frame(300))

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("modelserve.jobs.runner.write_chunk", full_disk)
    outcome = JobRunner(store, files, service, "a", 30, 5).run(job_id)
    job = store.get(job_id)
    assert outcome.state == job.state == "failed"
    assert job.error == "internal error while scoring (OSError); see the server log"
    assert job.lease_owner is None and job.finished_at is not None
