"""Jobs survive what kills processes: a server or a worker killed with SIGKILL mid-job, then
restarted, still yields every row once with the in-process predictions (real server and
``modelserve worker`` processes)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from modelserve.cli import main

from ..conftest import LiveServer
from .conftest import Backend
from .conftest import check_result
from .conftest import csv_bytes
from .conftest import iris_frame
from .conftest import read_result

pytestmark = pytest.mark.e2e

ROWS = 200_000
CHUNK = 10_000
CHUNKS = ROWS // CHUNK


@pytest.fixture(scope="module")
def big_input() -> tuple[pd.DataFrame, bytes]:
    frame = iris_frame(ROWS, seed=7)
    return frame, csv_bytes(frame)


def start(
    repo: Path, backend: Backend, live_server: Callable[..., LiveServer], *args: str
) -> LiveServer:
    env = {**backend.env, "MODELSERVE_JOBS_CHUNK_ROWS": str(CHUNK)}
    return live_server([str(repo), *args], env)


def submit(server: LiveServer, body: bytes) -> str:
    resp = requests.post(
        server.url + "/jobs",
        files={"file": ("big.csv", body)},
        data={"id_column": "key"},
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["id"]
    return job_id


def job_of(server: LiveServer, job_id: str) -> dict[str, Any]:
    resp = requests.get(f"{server.url}/jobs/{job_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    job: dict[str, Any] = resp.json()
    return job


def wait_for_chunks(
    server: LiveServer, job_id: str, chunks: int, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = job_of(server, job_id)
        if job["chunks_done"] >= chunks or job["state"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def wait_finished(server: LiveServer, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = job_of(server, job_id)
        if job["state"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def kill(server: LiveServer) -> None:
    """SIGKILL the server and every worker it forked: nothing gets to clean up."""
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)


def check_complete(server: LiveServer, job_id: str, frame: pd.DataFrame) -> dict[str, Any]:
    job = wait_finished(server, job_id)
    assert job["state"] == "succeeded", job
    assert (job["rows_done"], job["rows_failed"], job["chunks_done"]) == (ROWS, 0, CHUNKS)
    result = requests.get(f"{server.url}/jobs/{job_id}/result", timeout=60)
    assert result.status_code == 200
    check_result(read_result(result.content), frame)
    return job


def test_embedded_a_server_killed_mid_job_finishes_it_after_a_restart(
    jobs_repo: Path,
    embedded_backend: Backend,
    live_server: Callable[..., LiveServer],
    big_input: tuple[pd.DataFrame, bytes],
    tmp_path: Path,
) -> None:
    frame, body = big_input
    first = start(jobs_repo, embedded_backend, live_server)
    job_id = submit(first, body)
    at_kill = wait_for_chunks(first, job_id, 3)
    kill(first)
    assert at_kill["state"] == "running" and at_kill["chunks_done"] < CHUNKS, at_kill
    # Two processes now: both look for the job, exactly one takes it over (after the lease).
    second = start(jobs_repo, embedded_backend, live_server, "--workers", "2")
    job = check_complete(second, job_id, frame)
    assert job["attempts"] == 2, job
    check_the_cli(second, job_id, frame, tmp_path)


def check_the_cli(server: LiveServer, job_id: str, frame: pd.DataFrame, tmp_path: Path) -> None:
    """``modelserve jobs submit|status|fetch|cancel`` against the running server."""
    runner = CliRunner()
    url = ["--url", server.url]
    status = runner.invoke(main, ["jobs", "status", job_id, *url])
    assert status.exit_code == 0 and "succeeded" in status.output, status.output
    out = tmp_path / "out.parquet"
    fetched = runner.invoke(
        main, ["jobs", "fetch", job_id, "-o", str(out), "--format", "parquet", *url]
    )
    assert fetched.exit_code == 0, fetched.output
    check_result(pd.read_parquet(out), frame)
    small = tmp_path / "small.csv"
    head = frame.head(100).copy()
    head.loc[42, "petal_width"] = -1.0
    small.write_bytes(csv_bytes(head))
    submitted = runner.invoke(
        main, ["jobs", "submit", str(small), "--id-column", "key", "--wait", *url]
    )
    assert submitted.exit_code == 0 and "succeeded" in submitted.output, submitted.output
    assert "rejected 1" in submitted.output
    new_id = submitted.output.split()[0]
    rejected = tmp_path / "errors.jsonl"
    fetched = runner.invoke(main, ["jobs", "fetch", new_id, "-o", str(rejected), "--errors", *url])
    assert fetched.exit_code == 0, fetched.output
    lines = [orjson.loads(line) for line in rejected.read_bytes().splitlines()]
    assert [(e["row"], e["id"]) for e in lines] == [(42, "k42")]
    cancel = runner.invoke(main, ["jobs", "cancel", new_id, *url])
    assert cancel.exit_code == 1 and "409" in cancel.output, cancel.output
    listed = runner.invoke(main, ["jobs", "status", *url])
    assert new_id in listed.output and job_id in listed.output
    missing = runner.invoke(main, ["jobs", "status", "nope", *url])
    assert missing.exit_code == 1 and "404" in missing.output


def test_celery_a_worker_killed_mid_job_and_a_restarted_server_lose_no_row(
    jobs_repo: Path,
    celery_backend: Backend,
    live_server: Callable[..., LiveServer],
    big_input: tuple[pd.DataFrame, bytes],
) -> None:
    assert celery_backend.start_worker is not None
    frame, body = big_input
    server = start(jobs_repo, celery_backend, live_server)
    doomed = celery_backend.start_worker()
    job_id = submit(server, body)
    at_kill = wait_for_chunks(server, job_id, 3)
    doomed.kill(signal.SIGKILL)
    assert at_kill["state"] == "running" and at_kill["chunks_done"] < CHUNKS, at_kill
    kill(server)  # the server too: the job's state is in the store, not in the server
    server = start(jobs_repo, celery_backend, live_server)
    celery_backend.start_worker()
    job = check_complete(server, job_id, frame)
    assert job["attempts"] == 2, job
    # A job on a healthy worker, end to end, for the rate a job reaches here.
    again = submit(server, body)
    job = check_complete(server, again, frame)
    assert job["attempts"] == 1 and job["rows_per_second"] > 0


def test_celery_with_the_rabbitmq_broker(jobs_repo: Path, celery_backend: Backend) -> None:
    """The same worker and server on RabbitMQ (the local one, a queue of this run's own)."""
    from modelserve.api.jobs import EXTENSION_KEY
    from modelserve.app import create_app
    from modelserve.settings import ServerSettings

    from .conftest import Worker

    amqp = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    settings = {
        **celery_backend.settings,
        "jobs_broker_url": amqp,
        "jobs_queue": celery_backend.settings["jobs_queue"] + "-amqp",
        "jobs_chunk_rows": 500,
    }
    env = {f"MODELSERVE_{k.upper()}": str(v) for k, v in settings.items()}
    worker = Worker(jobs_repo, {**env, "MODELSERVE_PROFILE": "testing"})
    app = create_app(ServerSettings(profile="testing", model_path=jobs_repo, **settings))
    try:
        worker.wait_ready()
        client = app.test_client()
        frame = iris_frame(2000, seed=11)
        resp = client.post("/jobs?id_column=key", data=csv_bytes(frame), content_type="text/csv")
        assert resp.status_code == 202, resp.json
        deadline = time.monotonic() + 30
        while (job := client.get(f"/jobs/{resp.json['id']}").json)["state"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["state"] == "succeeded" and job["chunks_done"] == 4, job
        check_result(read_result(client.get(f"/jobs/{job['id']}/result").data), frame)
    finally:
        app.extensions[EXTENSION_KEY].close()
        worker.kill(signal.SIGTERM)
        assert worker.proc.returncode is not None
