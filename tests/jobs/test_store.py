"""The job store's conditional updates: one claimant, chunks counted once, leases, owners."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.errors import ConfigError
from modelserve.errors import JobNotFound
from modelserve.jobs.model import Job
from modelserve.jobs.store import JobStore
from modelserve.jobs.store import new_job_id
from modelserve.jobs.store import store_url

from ..test_predlog import postgres_url  # noqa: F401  (a fixture)


def queued(owner: str = "alice", created: float | None = None) -> Job:
    return Job(
        id=new_job_id(),
        owner=owner,
        model="iris",
        version=None,
        state="queued",
        input_format="csv",
        output_format="csv",
        id_column=None,
        chunk_rows=10,
        error_budget=0.1,
        rows_total=None,
        rows_done=0,
        rows_failed=0,
        chunks_done=0,
        attempts=0,
        created_at=created or time.time(),
        started_at=None,
        finished_at=None,
        error=None,
        lease_owner=None,
        lease_expires=None,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        url = str(tmp_path / "jobs.db")
    else:
        url = request.getfixturevalue("postgres_url")
    s = JobStore(url, f"jobs_test_{uuid.uuid4().hex[:12]}")
    yield s
    s.drop()
    s.close()


def test_exactly_one_of_many_threads_claims_a_job(store: JobStore) -> None:
    job = queued()
    store.add(job)
    won: list[str] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        if store.claim(job.id, f"w{i}", 30) is not None:
            won.append(f"w{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    claimed = store.get(job.id)
    assert (claimed.state, claimed.lease_owner, claimed.attempts) == ("running", won[0], 1)
    assert store.claimable() == []


def test_a_chunk_counts_once_and_only_for_the_lease_holder(store: JobStore) -> None:
    job = queued()
    store.add(job)
    assert store.claim(job.id, "a", 30) is not None
    assert not store.commit_chunk(job.id, "b", 0, 10, 0, 30)  # not the holder
    assert store.commit_chunk(job.id, "a", 0, 10, 1, 30)
    assert not store.commit_chunk(job.id, "a", 0, 10, 1, 30)  # chunk 0 again
    assert not store.commit_chunk(job.id, "a", 2, 10, 0, 30)  # skips chunk 1
    assert store.commit_chunk(job.id, "a", 1, 5, 0, 30)
    done = store.get(job.id)
    assert (done.chunks_done, done.rows_done, done.rows_failed) == (2, 15, 1)
    assert store.finish(job.id, "a")
    assert store.get(job.id).state == "succeeded"
    assert not store.cancel(job.id)  # finished jobs stay finished


def test_an_expired_lease_is_taken_over_and_the_old_holder_stopped(store: JobStore) -> None:
    job = queued()
    store.add(job)
    assert store.claim(job.id, "dead", 0.2) is not None
    assert store.claim(job.id, "b", 30) is None  # lease still valid
    time.sleep(0.3)
    assert store.claimable() == [job.id]
    taken = store.claim(job.id, "b", 30)
    assert taken is not None and taken.attempts == 2
    assert not store.commit_chunk(job.id, "dead", 0, 10, 0, 30)
    assert not store.heartbeat(job.id, "dead", 30)
    assert store.heartbeat(job.id, "b", 30)


def test_requeue_expired_hands_each_job_back_once(store: JobStore) -> None:
    job = queued()
    store.add(job)
    store.claim(job.id, "dead", 0.1)
    time.sleep(0.2)
    assert store.requeue_expired() == [job.id]
    assert store.requeue_expired() == []
    assert store.get(job.id).state == "queued"


def test_cancel_stops_the_runner_at_its_next_commit(store: JobStore) -> None:
    job = queued()
    store.add(job)
    store.claim(job.id, "a", 30)
    assert store.cancel(job.id)
    assert not store.commit_chunk(job.id, "a", 0, 10, 0, 30)
    assert not store.finish(job.id, "a")
    assert store.get(job.id).state == "cancelled"


def test_release_requeues_without_spending_an_attempt(store: JobStore) -> None:
    job = queued()
    store.add(job)
    store.claim(job.id, "a", 30)
    assert store.release(job.id, "a")
    again = store.get(job.id)
    assert (again.state, again.attempts, again.lease_owner) == ("queued", 0, None)


def test_jobs_are_read_and_listed_per_owner(store: JobStore) -> None:
    now = time.time()
    mine = [queued("alice", now + i) for i in range(3)]
    for job in [*mine, queued("bob", now)]:
        store.add(job)
    with pytest.raises(JobNotFound):
        store.get(mine[0].id, "bob")
    assert store.get(mine[0].id, "alice").id == mine[0].id
    page, total = store.page("alice", 2, 0)
    assert total == 3 and [j.id for j in page] == [mine[2].id, mine[1].id]
    page, _ = store.page("alice", 2, 2)
    assert [j.id for j in page] == [mine[0].id]
    assert store.page("alice", 10, 0, "running") == ([], 0)


def test_finished_jobs_expire(store: JobStore) -> None:
    job = queued()
    store.add(job)
    store.claim(job.id, "a", 30)
    store.finish(job.id, "a", "boom")
    assert store.get(job.id).error == "boom"
    assert store.expired(3600) == []
    time.sleep(0.05)
    assert store.expired(0.01) == [job.id]


def test_store_urls() -> None:
    assert store_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store_url("/tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(ConfigError, match="MODELSERVE_JOBS_STORE_URL"):
        store_url("mysql://u@h/db")
