"""The prediction log: what a record holds, SQLite and the real PostgreSQL, sampling, a full
queue that drops instead of blocking, and nothing lost on a graceful stop of a real server."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from modelserve.api._handlers import EXTENSION_KEY
from modelserve.api._handlers import Handlers
from modelserve.app import create_app
from modelserve.errors import ConfigError
from modelserve.predlog import PredictionLog
from modelserve.predlog import PredictionStore
from modelserve.predlog import database_url
from modelserve.settings import ServerSettings
from modelserve.types import Feature
from modelserve.types import Signature

from . import models
from .conftest import LiveServer

#: The PostgreSQL every session machine and CI runs (trust auth); .ci/run starts it if stopped.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

IRIS = models.iris()
ROWS = [models.features_of(IRIS, x) for x in IRIS.x]
SIGNATURE = Signature(tuple(Feature(name) for name in models.IRIS_FEATURES), "classification")


@pytest.fixture
def iris_repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    models.write_model(root, "iris", IRIS)
    return root


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The real PostgreSQL on 127.0.0.1:5432; a failure (not a skip) when it is down."""
    store = PredictionStore(POSTGRES_URL, "modelserve_probe")
    try:
        with store.engine.connect():
            pass
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({type(exc).__name__}); start it: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )
    finally:
        store.close()
    yield POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def table() -> str:
    """A table of this test's own (PostgreSQL is shared by every run on the machine)."""
    return f"predlog_test_{uuid.uuid4().hex[:12]}"


def logged_app(repo: Path, url: str, table: str, **settings: object) -> Flask:
    return create_app(
        ServerSettings(
            profile="testing",
            model_path=repo,
            prediction_log=url,
            prediction_log_table=table,
            **settings,  # type: ignore[arg-type]
        )
    )


def handlers(app: Flask) -> Handlers:
    found: Handlers = app.extensions[EXTENSION_KEY]
    return found


def the_log(app: Flask) -> PredictionLog:
    log = handlers(app).log
    assert log is not None
    return log


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps whose logs are closed and whose tables are dropped after the test."""
    made: list[Flask] = []
    yield made
    for app in made:
        log = the_log(app)
        log.close()
        log.store.drop()
        log.store.close()


def test_database_url_forms(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "p.db")) == f"sqlite:///{tmp_path / 'p.db'}"
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    with pytest.raises(ConfigError, match="mysql:// is not supported"):
        database_url("mysql://u@h/db")
    with pytest.raises(ConfigError, match="MODELSERVE_PREDICTION_LOG_TABLE"):
        PredictionStore(str(tmp_path / "p.db"), "drop table; --")


def test_log_is_off_by_default(iris_repo: Path) -> None:
    app = create_app(ServerSettings(profile="testing", model_path=iris_repo))
    assert handlers(app).log is None
    assert app.test_client().post("/predict", json=ROWS[0]).status_code == 200


def test_records_hold_inputs_outputs_version_latency_and_request_id(
    iris_repo: Path, log_url: str, table: str, apps: list[Flask]
) -> None:
    app = logged_app(iris_repo, log_url, table, prediction_log_flush_seconds=0.05)
    apps.append(app)
    client = app.test_client()
    before = time.time()
    one = client.post("/predict", json=ROWS[0], headers={"X-Request-ID": "req-one"})
    batch = client.post("/predict_batch", json={"instances": ROWS[50:53]})
    x = IRIS.x[100:102]
    v2 = client.post(
        "/v2/models/iris/infer",
        json={
            "inputs": [
                {"name": "input", "shape": list(x.shape), "datatype": "FP64", "data": x.tolist()}
            ]
        },
        headers={"X-Request-ID": "req-v2"},
    )
    bad = client.post("/predict", json={"sepal_length": "x"})
    assert (one.status_code, batch.status_code, v2.status_code, bad.status_code) == (
        200,
        200,
        200,
        400,
    )
    log = the_log(app)
    assert log.flush(timeout=30)
    assert (log.written, log.dropped, log.failed) == (3, 0, 0)  # the 400 is not logged

    records = sorted(log.store.read("iris", None, before - 1), key=lambda r: r.ts)
    assert [r.rows for r in records] == [1, 3, 2]
    assert all(r.model == "iris" and r.version == 1 for r in records)
    assert all(before <= r.ts <= time.time() for r in records)
    assert all(r.latency_ms is not None and 0 < r.latency_ms < 5000 for r in records)
    assert records[0].request_id == "req-one"
    assert records[2].request_id == "req-v2"
    assert records[1].request_id is not None  # none given: a made-up uuid4 hex
    assert uuid.UUID(hex=records[1].request_id).version == 4
    assert len(records[1].request_id) == 32
    assert records[0].inputs == [ROWS[0]]
    assert records[1].inputs == ROWS[50:53]
    assert records[2].inputs == ROWS[100:102]
    labels, proba = IRIS.expected(IRIS.x[50:53])
    assert records[1].outputs["predict"] == labels.tolist()
    assert np.allclose(records[1].outputs["predict_proba"], proba)
    assert records[0].outputs["predict"] == [one.json["prediction"]]  # type: ignore[index]
    assert records[2].outputs["predict"] == IRIS.expected(x)[0].tolist()
    # The model-level filter and the window bound work in the database's query.
    assert log.store.read("iris", 2, before - 1) == []
    assert log.store.read("iris", 1, time.time() + 60) == []


def test_sampling_keeps_the_drawn_share(tmp_path: Path) -> None:
    draws = iter([0.1, 0.9, 0.2, 0.7, 0.3, 0.6])
    store = PredictionStore(str(tmp_path / "s.db"))
    log = PredictionLog(store, sample=0.5, flush_seconds=0.01, rng=lambda: next(draws))
    for i in range(6):
        log.record("iris", 1, SIGNATURE, IRIS.x[i : i + 1], {"predict": np.array([i])}, 0.0)
    log.close()
    kept = sorted(r.outputs["predict"][0] for r in store.read("iris", 1, 0))
    assert kept == [0, 2, 4]  # the draws under 0.5


def test_sample_zero_logs_nothing_and_starts_no_thread(
    iris_repo: Path, tmp_path: Path, table: str, apps: list[Flask]
) -> None:
    app = logged_app(iris_repo, str(tmp_path / "p.db"), table, prediction_log_sample=0.0)
    apps.append(app)
    for row in ROWS[:5]:
        assert app.test_client().post("/predict", json=row).status_code == 200
    log = the_log(app)
    assert log._thread is None and log.queued == 0 and log.written == 0


def test_full_queue_drops_and_counts_while_requests_answer_at_once(
    iris_repo: Path, tmp_path: Path, table: str, apps: list[Flask]
) -> None:
    path = tmp_path / "p.db"
    app = logged_app(
        iris_repo, str(path), table, prediction_log_queue=4, prediction_log_flush_seconds=0.001
    )
    apps.append(app)
    client = app.test_client()
    log = the_log(app)
    assert client.post("/predict", json=ROWS[0]).status_code == 200
    assert log.flush(timeout=30) and log.written == 1  # the table exists, the file is in WAL

    # Stall the writer on purpose: another connection holds the write lock, so the log's
    # insert waits (up to its 30 s busy timeout) while requests keep coming.
    blocker = sqlite3.connect(path, timeout=1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        took = []
        for row in ROWS[1:41]:
            started = time.perf_counter()
            assert client.post("/predict", json=row).status_code == 200
            took.append(time.perf_counter() - started)
        assert max(took) < 0.25, took  # nobody waits for the stalled writer
        # The writer holds at most a few records in its stalled batch, the queue 4.
        assert log.dropped >= 30
        assert log.written == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert log.flush(timeout=30)
    assert log.failed == 0
    assert log.written + log.dropped == 41
    assert len(log.store.read("iris", 1, 0)) == log.written


def test_close_writes_what_is_still_queued(tmp_path: Path) -> None:
    store = PredictionStore(str(tmp_path / "c.db"))
    # A writer that would wait a minute to fill its batch: only close() writes it now.
    log = PredictionLog(store, flush_seconds=60)
    for i in range(100):
        log.record("iris", 1, SIGNATURE, IRIS.x[i : i + 1], {"predict": np.array([0])}, 0.0)
    time.sleep(0.2)
    assert log.written == 0
    started = time.monotonic()
    log.close()
    assert time.monotonic() - started < 10
    assert log.written == 100
    assert len(store.read("iris", 1, 0)) == 100
    log.record("iris", 1, SIGNATURE, IRIS.x[:1], {"predict": np.array([0])}, 0.0)
    assert log.dropped == 1  # after close: counted, not queued


@pytest.mark.e2e
@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_sigterm_writes_every_queued_record(
    server: str, iris_repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    import requests

    path = tmp_path / "live.db"
    env = {
        "MODELSERVE_PREDICTION_LOG": str(path),
        # Records wait in the queue until the stop: only the stop's flush can write them.
        "MODELSERVE_PREDICTION_LOG_FLUSH_SECONDS": "300",
    }
    srv = live_server([str(iris_repo), "--workers", "2", "--server", server], env)
    with requests.Session() as http:
        for row in ROWS[:30]:
            assert http.post(srv.url + "/predict", json=row, timeout=10).status_code == 200
        for i in range(10):
            body = {"instances": ROWS[i * 3 : i * 3 + 3]}
            assert http.post(srv.url + "/predict_batch", json=body, timeout=10).ok
    assert _count(path) == (0, 0)  # nothing written yet
    output = srv.stop()
    assert srv.proc.returncode == 0, output
    assert _count(path) == (40, 60), output
    assert "Traceback" not in output, output


def _count(path: Path) -> tuple[int, int]:
    """(records, rows) in the log file; (0, 0) before the table exists."""
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path) as conn:
        try:
            found = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_rows), 0) FROM modelserve_predictions"
            ).fetchone()
        except sqlite3.OperationalError:  # no such table
            return 0, 0
    return int(found[0]), int(found[1])
