"""Batch job fixtures: an iris repository, CSV inputs, and the two backends' surroundings
(the Celery one: a real broker, the real PostgreSQL, and real ``modelserve worker``
processes)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelserve.jobs.store import JobStore

from .. import models
from ..conftest import SRC

#: A key test servers accept (``MODELSERVE_API_KEY``).
KEY = "ms_jobs-test-key-0123456789"


@pytest.fixture(scope="session")
def jobs_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris model whose features must not be negative (so rows can be invalid)."""
    root = tmp_path_factory.mktemp("jobs-models") / "models"
    inputs = [{"name": n, "type": "number", "minimum": 0} for n in models.IRIS_FEATURES]
    models.write_model(root, "iris", models.iris(), manifest={"inputs": inputs})
    return root


def iris_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` iris rows (resampled) with a ``key`` id column."""
    x = models.iris().x
    picked = x[np.random.default_rng(seed).integers(0, len(x), rows)]
    frame = pd.DataFrame(picked, columns=list(models.IRIS_FEATURES))
    frame.insert(0, "key", [f"k{i}" for i in range(rows)])
    return frame


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def check_result(
    result: pd.DataFrame, source: pd.DataFrame, rejected: frozenset[int] = frozenset()
) -> None:
    """Every valid row of ``source`` once, in order, with the in-process predictions."""
    keep = [i for i in range(len(source)) if i not in rejected]
    assert result["row"].tolist() == keep
    assert result["key"].tolist() == source["key"].iloc[keep].tolist()
    labels, proba = models.iris().expected(source[list(models.IRIS_FEATURES)].to_numpy()[keep])
    assert np.array_equal(result["prediction"].to_numpy(), labels)
    assert proba is not None
    got = result[[f"probability_{i}" for i in range(3)]].to_numpy()
    np.testing.assert_allclose(got, proba, rtol=1e-9, atol=1e-12)


def read_result(body: bytes, fmt: str = "csv") -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(body))
    if fmt == "jsonl":
        return pd.read_json(io.BytesIO(body), lines=True)
    return pd.read_parquet(io.BytesIO(body))


@dataclass
class Backend:
    """The settings (and environment, for processes) that select one backend."""

    name: str
    settings: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    start_worker: Callable[[], Worker] | None = None


class Worker:
    """A real ``modelserve worker`` process, with its output read as it comes."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
        full.update(PYTHONPATH=f"{SRC}{os.pathsep}{full.get('PYTHONPATH', '')}", **env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelserve", "worker", str(repo)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if " ready." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("worker did not start:\n" + "".join(self.lines))
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def celery_backend(jobs_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A broker queue, a store table and a data folder of this module's own, and a way to
    start workers on them (all stopped, and the table dropped, at the end).

    The broker is the machine's Redis on 127.0.0.1:6379 (db 5; ``TEST_REDIS_URL`` elsewhere),
    as a deployment's would be; the queue's name is this run's own, so nothing else's jobs
    mix in. ``.ci/run`` starts that Redis when it is down.
    """
    import redis

    from ..test_predlog import POSTGRES_URL

    run = uuid.uuid4().hex[:10]
    broker = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
    try:
        redis.Redis.from_url(broker, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis at {broker} is not reachable ({exc}); the Celery job tests use it as their "
            "broker: start it (redis-server --daemonize yes --port 6379) or set TEST_REDIS_URL",
            pytrace=False,
        )
    table = f"jobs_test_{run}"
    folder = tmp_path_factory.mktemp("celery-jobs")
    settings: dict[str, Any] = {
        "jobs_backend": "celery",
        "jobs_broker_url": broker,
        "jobs_queue": f"modelserve-test-{run}",
        "jobs_store_url": POSTGRES_URL,
        "jobs_table": table,
        "jobs_dir": folder,
        "jobs_lease_seconds": 2.0,
    }
    env = {f"MODELSERVE_{k.upper()}": str(v) for k, v in settings.items()}
    env["MODELSERVE_PROFILE"] = "testing"
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(jobs_repo, env)
        workers.append(worker)
        return worker.wait_ready()

    try:
        store = JobStore(POSTGRES_URL, table)
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}", pytrace=False)
    try:
        yield Backend("celery", settings, env, start)
    finally:
        for worker in workers:
            worker.kill()
        store.drop()
        store.close()
        client = redis.Redis.from_url(broker)
        queue = settings["jobs_queue"]
        keys = client.keys(f"{queue}*") + client.keys(f"_kombu.binding.{queue}*")
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def embedded_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    folder = tmp_path_factory.mktemp("embedded-jobs")
    settings: dict[str, Any] = {"jobs_dir": folder, "jobs_lease_seconds": 2.0}
    env = {f"MODELSERVE_{k.upper()}": str(v) for k, v in settings.items()}
    return Backend("embedded", settings, env)
