"""The per-worker start/stop registry and the draining flag the readiness routes read."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from modelserve import workers
from modelserve.workers import WorkerHooks


def test_start_in_order_stop_in_reverse_each_once() -> None:
    hooks = WorkerHooks()
    calls: list[str] = []
    for name in ("a", "b", "c"):
        hooks.on_start(lambda name=name: calls.append(f"start {name}"))
        hooks.on_stop(lambda name=name: calls.append(f"stop {name}"))
    hooks.run_start()
    hooks.run_start()
    hooks.run_stop()
    hooks.run_stop()
    assert calls == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = WorkerHooks()
    ran: list[str] = []

    @hooks.on_stop
    def first() -> None:
        ran.append("first")

    @hooks.on_stop
    def broken() -> None:
        raise RuntimeError("boom")

    hooks.run_stop()
    assert ran == ["first"]
    assert "worker stop callback" in caplog.text and "boom" in caplog.text


def test_decorators_return_the_function() -> None:
    hooks = WorkerHooks()

    def fn() -> None:
        pass

    assert hooks.on_start(fn) is fn and hooks.on_stop(fn) is fn


def test_readiness_answers_503_while_draining(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "hooks", WorkerHooks())
    assert client.get("/health").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    workers.begin_draining()
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["status"] == "draining"
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and ready.get_json()["ready"] is False
    # Liveness is not readiness: a draining worker is alive.
    assert client.get("/v2/health/live").status_code == 200
