"""Logs: one JSON line per request with its fields, the X-Request-ID round trip, errors with
their traceback in the log only, the batcher's lines with the batch's request ids, the
format by profile, and a log file that several writers rotate safely."""

from __future__ import annotations

import logging
import logging.config
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from flask import Flask

from modelserve import telemetry
from modelserve.api._handlers import get_handlers
from modelserve.app import create_app
from modelserve.batching.batcher import Batcher
from modelserve.logging import REQUEST_LOGGER
from modelserve.logging import JsonFormatter
from modelserve.logging import SharedRotatingFileHandler
from modelserve.logging import configure_logging
from modelserve.logging import granian_log_config
from modelserve.logging import log_format
from modelserve.settings import ServerSettings
from modelserve.types import TensorDict

from . import models

ROW = models.features_of(models.iris(), models.iris().x[0])


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "modelserve.log"


@pytest.fixture
def logged_app(settings: ServerSettings, log_file: Path) -> Flask:
    log_file.parent.mkdir()
    return create_app(settings.model_copy(update={"log_file": log_file, "log_format": "json"}))


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def request_lines(path: Path) -> list[dict[str, Any]]:
    return [line for line in lines(path) if line["logger"] == REQUEST_LOGGER]


def test_each_request_is_one_json_line_with_its_fields(
    settings: ServerSettings, log_file: Path, tmp_path: Path
) -> None:
    from modelserve.keys import create_key

    keys_file = tmp_path / "keys.toml"
    secret = create_key(keys_file, "team-a", ["predict"])
    log_file.parent.mkdir()
    logged_app = create_app(
        settings.model_copy(
            update={"log_file": log_file, "log_format": "json", "keys_file": keys_file}
        )
    )
    client = logged_app.test_client()
    headers = {"X-Request-ID": "req-42", "X-API-Key": secret}
    response = client.post("/predict", json=ROW, headers=headers)
    assert response.status_code == 200
    client.get("/health")
    first, second = request_lines(log_file)
    assert first["message"] == f"POST /predict 200 {first['latency_ms']:.2f} ms"
    assert {k: first[k] for k in first if k not in ("ts", "pid", "latency_ms", "message")} == {
        "level": "INFO",
        "logger": REQUEST_LOGGER,
        "request_id": "req-42",
        "method": "POST",
        "route": "/predict",
        "model": "iris",
        "version": "1",
        "status": 200,
        "rows": 1,
        "batch_size": 1,
        "cache_hit": None,
        "client": "team-a",
    }
    assert 0 < first["latency_ms"] < 10_000
    assert first["ts"].endswith("Z") and first["ts"][10] == "T"
    assert second["route"] == "/health" and second["model"] is None and second["rows"] is None
    assert secret not in log_file.read_text()


def test_batch_request_reports_rows_and_route_rule(logged_app: Flask, log_file: Path) -> None:
    client = logged_app.test_client()
    body = {"instances": [ROW, ROW, ROW]}
    assert client.post("/models/iris/versions/1/predict_batch", json=body).status_code == 200
    assert client.post("/models/nope/predict", json=ROW).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    batch, unknown_model, unmatched = request_lines(log_file)
    assert batch["route"] == "/models/<name>/versions/<int:version>/predict_batch"
    assert batch["rows"] == 3 and batch["batch_size"] == 3 and batch["client"] is None
    # An unknown model is no label: only versions that served are named.
    assert unknown_model["route"] == "/models/<name>/predict" and unknown_model["model"] is None
    assert unmatched["route"] is None and unmatched["path"] == "/no/such/path"
    assert unmatched["status"] == 404


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("trace:span.1=/+x", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ('quote"d', False),
        ("new\u00e9line", False),
        ("", False),
        (None, False),
    ],
)
def test_request_id_is_kept_when_sane_else_made(
    logged_app: Flask, log_file: Path, sent: str | None, kept: bool
) -> None:
    headers = {"X-Request-ID": sent} if sent is not None else {}
    response = logged_app.test_client().get("/health", headers=headers)
    echoed = response.headers["X-Request-ID"]
    if kept:
        assert echoed == sent
    else:
        assert echoed != sent and len(echoed) == 32 and int(echoed, 16) >= 0
    (line,) = request_lines(log_file)
    assert line["request_id"] == echoed


def test_made_request_ids_differ(client: Any) -> None:
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20


def test_unexpected_error_logs_traceback_but_answers_without_it(
    logged_app: Flask, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with logged_app.app_context():
        seed = get_handlers().seed

    def explode(*args: object) -> dict[str, Any]:
        raise RuntimeError("secret internals 0xdeadbeef")

    monkeypatch.setattr(seed, "predict_one", explode)
    response = logged_app.test_client().post(
        "/predict", json=ROW, headers={"X-Request-ID": "boom-1"}
    )
    assert response.status_code == 500
    assert b"deadbeef" not in response.data and b"Traceback" not in response.data
    assert response.json == {
        "error": "Internal server error",
        "type": "InternalServerError",
        "status": "error",
    }
    error = next(line for line in lines(log_file) if line["level"] == "ERROR")
    assert error["request_id"] == "boom-1"
    assert "Traceback" in error["traceback"] and "secret internals 0xdeadbeef" in error["traceback"]
    (request_line,) = request_lines(log_file)
    assert request_line["status"] == 500 and request_line["request_id"] == "boom-1"


def test_request_lines_can_be_turned_off(settings: ServerSettings, log_file: Path) -> None:
    log_file.parent.mkdir()
    app = create_app(settings.model_copy(update={"log_file": log_file, "log_requests": False}))
    response = app.test_client().post("/predict", json=ROW)
    assert response.status_code == 200 and response.headers["X-Request-ID"]
    assert request_lines(log_file) == []


def test_format_follows_the_profile_unless_set(
    repo: Path, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert log_format(ServerSettings(profile="production")) == "json"
    assert log_format(ServerSettings(profile="testing")) == "json"
    assert log_format(ServerSettings(profile="development")) == "text"

    log_file.parent.mkdir()
    configure_logging(ServerSettings(profile="development", log_file=log_file))
    try:
        logging.getLogger("modelserve.test").warning(
            "hello %s", "there", extra={"fields": {"a": 1}}
        )
    finally:
        configure_logging(ServerSettings(profile="testing"))
    text = log_file.read_text()
    assert text.endswith("WARNING modelserve.test: hello there a=1\n"), text
    assert not text.startswith("{")
    monkeypatch.setenv("MODELSERVE_LOG_FORMAT", "json")
    assert log_format(ServerSettings(profile="development")) == "json"


def test_configure_logging_replaces_its_handlers(settings: ServerSettings) -> None:
    logger = logging.getLogger("modelserve")
    configure_logging(settings)
    count = len(logger.handlers)
    configure_logging(settings)
    configure_logging(settings)
    assert len(logger.handlers) == count


def test_granian_config_sends_its_loggers_through_ours(log_file: Path) -> None:
    config = granian_log_config(ServerSettings(log_file=log_file, log_format="json"))
    assert config["loggers"]["_granian"]["handlers"] == ["modelserve_console", "modelserve_file"]
    assert config["loggers"]["granian.access"]["propagate"] is False
    log_file.parent.mkdir()
    logging.config.dictConfig(config)
    try:
        logging.getLogger("_granian").info("Starting granian")
    finally:
        for handler in logging.getLogger("_granian").handlers:
            handler.close()
        logging.getLogger("_granian").handlers.clear()
        logging.getLogger("granian.access").handlers.clear()
    (line,) = lines(log_file)
    assert line["logger"] == "_granian" and line["message"] == "Starting granian"


class GatedModel:
    """Blocks its first call until released, so the calls that follow queue into one batch."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        return {"sum": inputs["input"].sum(axis=1)}


def test_batcher_lines_carry_the_request_ids_of_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = GatedModel()
    batcher = Batcher(model.predict, max_batch_size=64, max_latency_ms=0, max_queue=10, timeout=10)
    records: dict[str, telemetry.RequestRecord] = {}

    def call(rid: str) -> None:
        records[rid] = telemetry.begin(rid)
        try:
            batcher.submit({"input": np.ones((2, 3))})
        finally:
            telemetry.end()

    first = threading.Thread(target=call, args=("r-first",))
    with caplog.at_level(logging.DEBUG, logger="modelserve.batching"):
        first.start()
        assert model.entered.wait(10)
        others = [threading.Thread(target=call, args=(f"r-{i}",)) for i in range(3)]
        for t in others:
            t.start()
        deadline = time.monotonic() + 10
        while len(batcher._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        model.release.set()
        for t in [first, *others]:
            t.join(10)
    batcher.close()
    batched = [r for r in caplog.records if r.getMessage().startswith("ran 3 calls (6 rows)")]
    assert len(batched) == 1, [r.getMessage() for r in caplog.records]
    fields = batched[0].fields  # type: ignore[attr-defined]
    assert sorted(fields["request_ids"]) == ["r-0", "r-1", "r-2"]
    assert records["r-0"].batch_size == 6 and records["r-first"].batch_size == 2
    assert records["r-0"].queue_seconds is not None and records["r-0"].queue_seconds > 0
    assert all(r.model_seconds is not None and r.model_seconds >= 0 for r in records.values())
    line = orjson.loads(JsonFormatter().format(batched[0]))
    assert sorted(line["request_ids"]) == ["r-0", "r-1", "r-2"]
    assert "request_id" not in line  # the batcher thread serves no one request


def test_shared_file_handlers_rotate_without_losing_lines(tmp_path: Path) -> None:
    """Two handlers on one path stand for two workers: each follows the other's rotation."""
    path = tmp_path / "app.log"
    a = SharedRotatingFileHandler(str(path), max_bytes=2000, backups=50)
    b = SharedRotatingFileHandler(str(path), max_bytes=2000, backups=50)
    sent = []
    try:
        for i in range(200):
            handler = a if i % 2 else b
            message = f"line {i:04d} " + "x" * 40
            sent.append(message)
            handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None))
    finally:
        a.close()
        b.close()
    files = [path, *sorted(p for p in tmp_path.glob("app.log.*") if p.suffix != ".lock")]
    assert len(files) > 3  # it rotated
    assert all(f.stat().st_size <= 2000 for f in files)
    written = sorted(line for f in files for line in f.read_text().splitlines())
    assert written == sorted(sent)
