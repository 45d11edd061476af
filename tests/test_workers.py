"""The per-worker start/stop registry, the draining flag the readiness routes read, and the
recycling limits (request budget with jitter, RSS guard)."""

from __future__ import annotations

import random
import threading

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


def test_request_limit_adds_a_jitter_within_bounds() -> None:
    rng = random.Random(0)
    limits = {workers.request_limit(1000, 50, rng) for _ in range(500)}
    assert min(limits) >= 1000 and max(limits) <= 1050 and len(limits) > 20
    assert workers.request_limit(1000, 0) == 1000
    assert workers.request_limit(0, 50) == 0  # no limit, whatever the jitter


def test_request_budget_is_spent_once_across_threads() -> None:
    budget = workers.RequestBudget(5000)
    spent: list[bool] = []

    def take(n: int) -> None:
        spent.extend(budget.spend() for _ in range(n))

    threads = [threading.Thread(target=take, args=(2000,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spent.count(True) == 1 and len(spent) == 8000
    assert not any(workers.RequestBudget(0).spend() for _ in range(10))


def test_rss_guard_reads_this_process_at_most_once_per_interval() -> None:
    own = workers.rss_bytes()
    assert own > 10 * 1024 * 1024  # a Python process with numpy and Flask loaded
    low = workers.RssGuard(1, every=60)  # 1 MiB: this process is over it
    assert low.over() is True
    assert low.over() is False  # not read again within the interval
    assert workers.RssGuard(own // (1 << 20) + 1024).over() is False
    assert workers.RssGuard(0).over() is False
    assert workers.rss_bytes(2**22 + 12345) == 0  # no such process
