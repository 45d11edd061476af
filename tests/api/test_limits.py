"""Rate limits in one process: route classes, the client key, 429s, storage failures."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from modelserve.api import limits
from modelserve.app import create_app
from modelserve.settings import ServerSettings

from .. import models

ROW = dict.fromkeys(models.IRIS_FEATURES, 1.0)
#: A port nothing listens on: every connection to it is refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"


ADMIN_KEY = "ms_test-admin-key-for-the-rate-limit-tests"


def limited_app(repo: Path, **limit_settings: Any) -> Flask:
    settings = ServerSettings(
        profile="testing", model_path=repo, default_model="iris", **limit_settings
    )
    return create_app(settings)


def post(client: FlaskClient, url: str, addr: str = "10.0.0.1", **kwargs: Any) -> Any:
    kwargs.setdefault("json", ROW if "batch" not in url else {"instances": [ROW]})
    return client.post(url, environ_base={"REMOTE_ADDR": addr}, **kwargs)


def test_every_endpoint_is_classified_or_explicitly_unlimited(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    forgotten = endpoints - set(limits.ROUTE_CLASSES) - limits.UNLIMITED
    assert not forgotten, f"add these to ROUTE_CLASSES or UNLIMITED in api/limits.py: {forgotten}"
    assert not set(limits.ROUTE_CLASSES) & limits.UNLIMITED
    assert set(limits.ROUTE_CLASSES) <= endpoints  # no stale entry


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("POST", "/predict", "predict"),
        ("POST", "/models/iris/predict", "predict"),
        ("POST", "/models/iris/versions/1/predict", "predict"),
        ("POST", "/v2/models/iris/infer", "predict"),
        ("POST", "/predict_batch", "batch"),
        ("POST", "/models/iris/predict_batch", "batch"),
        ("POST", "/predict_image", "image"),
        ("POST", "/models/digits/versions/2/predict_image_base64", "image"),
        ("POST", "/v2/repository/index", "admin"),
        ("POST", "/v2/repository/models/iris/load", "admin"),
        ("POST", "/v2/repository/models/iris/unload", "admin"),
        ("GET", "/health", None),
        ("GET", "/v2/health/live", None),
        ("GET", "/v2/health/ready", None),
        ("GET", "/models", None),
        ("GET", "/models/iris", None),
        ("GET", "/v2/models/iris/ready", None),
    ],
)
def test_route_classes(app: Flask, method: str, url: str, expected: str | None) -> None:
    endpoint, _ = app.url_map.bind("localhost").match(url, method=method)
    assert limits.route_class(endpoint) == expected


def test_client_key_is_the_principal_name_else_the_peer_address(repo: Path) -> None:
    from modelserve.api.auth import current_principal

    app = limited_app(repo, rate_limit="5/minute", api_key=ADMIN_KEY)
    with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        assert limits.client_key() == "ip:192.0.2.7"
    with app.test_request_context(
        environ_base={"REMOTE_ADDR": "192.0.2.7"}, headers={"X-API-Key": ADMIN_KEY}
    ):
        principal = current_principal()
        assert principal is not None and limits.client_key() == f"key:{principal.name}"
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
    with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.7"}, headers=headers):
        assert limits.client_key() == "ip:192.0.2.7"


def test_no_hook_at_all_when_limits_are_off(repo: Path) -> None:
    off = limited_app(repo)
    on = limited_app(repo, rate_limit="5/minute")
    assert limits.get_limiter(off) is None and "limiter" not in off.extensions
    assert isinstance(limits.get_limiter(on), limits.RateLimiter)
    assert len(on.before_request_funcs[None]) == len(off.before_request_funcs.get(None, [])) + 1
    resp = post(off.test_client(), "/predict")
    assert resp.status_code == 200 and "X-RateLimit-Limit" not in resp.headers


def test_n_requests_pass_then_429_with_headers_and_json(repo: Path) -> None:
    client = limited_app(repo, rate_limit="3/minute").test_client()
    for remaining in (2, 1, 0):
        resp = post(client, "/predict")
        assert resp.status_code == 200, resp.json
        assert resp.headers["X-RateLimit-Limit"] == "3"
        assert resp.headers["X-RateLimit-Remaining"] == str(remaining)
        assert int(resp.headers["X-RateLimit-Reset"]) > 0
        assert "Retry-After" not in resp.headers  # only refusals say when to come back
    refused = post(client, "/models/iris/predict")  # the same class: the same budget
    assert refused.status_code == 429
    assert refused.mimetype == "application/json"
    assert refused.json["status"] == "error" and refused.json["type"] == "TooManyRequests"
    assert "3/minute" in refused.json["error"] and "MODELSERVE_RATE_LIMIT" in refused.json["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Another client has its own budget.
    assert post(client, "/predict", addr="10.0.0.2").status_code == 200


def test_each_class_has_its_own_budget_and_overrides(repo: Path) -> None:
    app = limited_app(repo, rate_limit="2/minute", rate_limit_batch="3/minute")
    client = app.test_client()
    assert [post(client, "/predict").status_code for _ in range(3)] == [200, 200, 429]
    assert [post(client, "/predict_batch").status_code for _ in range(4)] == [200] * 3 + [429]
    # The admin class needs an admin credential before it is counted at all.
    admin = limited_app(repo, rate_limit="2/minute", api_key=ADMIN_KEY).test_client()
    headers = {"X-API-Key": ADMIN_KEY}
    statuses = [
        post(admin, "/v2/repository/index", json=None, headers=headers).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_off_exempts_one_class(repo: Path) -> None:
    client = limited_app(repo, rate_limit="1/minute", rate_limit_batch="off").test_client()
    assert [post(client, "/predict_batch").status_code for _ in range(5)] == [200] * 5
    assert [post(client, "/predict").status_code for _ in range(2)] == [200, 429]


def test_health_and_descriptions_are_never_limited(repo: Path) -> None:
    client = limited_app(repo, rate_limit="1/minute").test_client()
    assert post(client, "/predict").status_code == 200
    assert post(client, "/predict").status_code == 429
    for url in ("/health", "/v2/health/live", "/v2/health/ready", "/models", "/models/iris"):
        for _ in range(3):
            resp = client.get(url, environ_base={"REMOTE_ADDR": "10.0.0.1"})
            assert resp.status_code == 200, url
            assert "X-RateLimit-Limit" not in resp.headers


def test_a_spoofed_forwarded_for_does_not_reset_the_limit(repo: Path) -> None:
    client = limited_app(repo, rate_limit="2/minute").test_client()
    statuses = [
        post(client, "/predict", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 429, 429]


def test_redis_counts_are_shared_by_every_process(repo: Path, limits_redis: str) -> None:
    # Two apps stand for two workers (or two replicas): one budget between them.
    first, second = (
        limited_app(repo, rate_limit="3/minute", rate_limit_storage=limits_redis).test_client()
        for _ in range(2)
    )
    statuses = [post(c, "/predict").status_code for c in (first, second, first, second, first)]
    assert statuses == [200, 200, 200, 429, 429]
    keys = redis.Redis.from_url(limits_redis).keys("*")
    assert keys and all(
        k.startswith(b"LIMITS:LIMITER/modelserve/ip:10.0.0.1/predict") for k in keys
    )


def test_storage_down_fails_open_and_logs_once(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = limited_app(repo, rate_limit="1/minute", rate_limit_storage=DEAD_REDIS).test_client()
    with caplog.at_level(logging.ERROR, logger="modelserve.api.limits"):
        statuses = [post(client, "/predict").status_code for _ in range(5)]
    assert statuses == [200] * 5
    lines = [r for r in caplog.records if r.name == "modelserve.api.limits"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "unreachable" in lines[0].getMessage() and "letting requests through" in (
        lines[0].getMessage()
    )


def test_storage_down_fails_closed_with_503_when_asked(repo: Path) -> None:
    client = limited_app(
        repo, rate_limit="1/minute", rate_limit_storage=DEAD_REDIS, rate_limit_fail_open=False
    ).test_client()
    for _ in range(3):  # the first request waits for the refused connection, then none do
        resp = post(client, "/predict")
        assert resp.status_code == 503, resp.json
        assert resp.json["type"] == "ServerBusy"
        assert "MODELSERVE_RATE_LIMIT_FAIL_OPEN" in resp.json["error"]
        assert int(resp.headers["Retry-After"]) >= 1
    assert client.get("/health").status_code == 200  # health never touches the storage


def test_the_storage_recovers(
    repo: Path, limits_redis: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(limits, "STORAGE_RETRY_INTERVAL", 0.0)
    app = limited_app(
        repo, rate_limit="2/minute", rate_limit_storage=limits_redis, rate_limit_fail_open=False
    )
    client = app.test_client()
    limiter = limits.get_limiter(app)
    assert limiter is not None
    assert post(client, "/predict").status_code == 200

    def down(*args: Any, **kwargs: Any) -> int:
        raise redis.ConnectionError("connection reset")

    with monkeypatch.context() as patch, caplog.at_level(logging.INFO):
        patch.setattr(limiter.storage, "incr", down)
        assert post(client, "/predict").status_code == 503
    assert [post(client, "/predict").status_code for _ in range(2)] == [200, 429]
    assert any("reachable again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("given", "storage", "warned"),
    [
        ({"workers": 2}, "memory://", True),
        ({"workers": 2, "redis_url": "redis://10.1.2.3:6379/2"}, "redis://10.1.2.3:6379/2", False),
        ({"workers": 2, "cache_backend": "redis"}, "redis://127.0.0.1:6379/0", False),
        ({"workers": 1, "redis_url": "redis://10.1.2.3:6379/2"}, "memory://", False),
        ({"workers": 4, "rate_limit_storage": "memory://"}, "memory://", True),
    ],
)
def test_storage_default_and_the_per_process_warning(
    repo: Path, caplog: pytest.LogCaptureFixture, given: dict[str, Any], storage: str, warned: bool
) -> None:
    from modelserve.server import preflight

    settings = ServerSettings(model_path=repo, secret_key="k" * 32, rate_limit="10/minute", **given)
    assert settings.rate_limit_storage == storage
    with caplog.at_level(logging.WARNING, logger="modelserve.server"):
        assert preflight(settings) == []
    lines = [r.getMessage() for r in caplog.records if "counted per worker" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)
    # Off: nothing to warn about, whatever the storage.
    caplog.clear()
    preflight(settings.model_copy(update={"rate_limit": None}))
    assert not [r for r in caplog.records if "counted per worker" in r.getMessage()]


def test_bad_limits_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelserve.errors import ConfigError
    from modelserve.settings import load_settings

    monkeypatch.setenv("MODELSERVE_RATE_LIMIT_BATCH", "lots")
    with pytest.raises(ConfigError, match="MODELSERVE_RATE_LIMIT_BATCH: .*100/minute"):
        load_settings()
    monkeypatch.delenv("MODELSERVE_RATE_LIMIT_BATCH")
    monkeypatch.setenv("MODELSERVE_RATE_LIMIT_STORAGE", "memcached://x")
    with pytest.raises(ConfigError, match="MODELSERVE_RATE_LIMIT_STORAGE"):
        load_settings()


def test_several_limits_stop_at_the_first_exceeded_one(repo: Path) -> None:
    # As Flask-Limiter: the shortest window gives the headers, and a request it refuses
    # spends nothing of the longer ones.
    app = limited_app(repo, rate_limit="2/minute;3/hour")
    client = app.test_client()
    statuses = [post(client, "/predict").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    limiter = limits.get_limiter(app)
    assert limiter is not None and isinstance(limiter.storage, limits.MemoryCounters)
    hour_key = limiter.classes["predict"].keys_for("ip:10.0.0.1")[1]
    assert hour_key.endswith("/predict/3/1/hour")
    window = limiter.storage.incr(limiter.classes["predict"], "ip:10.0.0.1")
    assert window[0] == 0 and window[1] == 5  # the minute refuses again, before the hour
    resp = post(client, "/predict")
    assert resp.headers["X-RateLimit-Limit"] == "2"


def test_the_longer_limit_refuses_with_its_own_headers(repo: Path) -> None:
    client = limited_app(repo, rate_limit="5/minute;2/hour").test_client()
    assert [post(client, "/predict").status_code for _ in range(3)] == [200, 200, 429]
    refused = post(client, "/predict")
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 60 < int(refused.headers["Retry-After"]) <= 3600


def test_memory_windows_restart_and_old_ones_are_swept(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    counters = limits.MemoryCounters()
    minute = limits.ClassLimits("predict", "2/minute")
    assert [counters.incr(minute, "ip:a")[1] for _ in range(3)] == [1, 2, 3]
    assert counters.incr(minute, "ip:b") == (0, 1, 60.0)
    now[0] += 30
    assert counters.incr(minute, "ip:a") == (0, 4, 30.0)
    assert len(counters) == 2
    now[0] += 30  # a's window is over: it starts again at its next request
    assert counters.incr(minute, "ip:a") == (0, 1, 60.0)
    assert len(counters) == 1  # b did not come back: swept (once a minute)
    now[0] += limits._SWEEP_INTERVAL + 1
    assert counters.incr(minute, "ip:c") == (0, 1, 60.0)
    assert len(counters) == 1


def test_redis_script_reloaded_and_connection_reopened(
    repo: Path, limits_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = limited_app(repo, rate_limit="3/minute", rate_limit_storage=limits_redis)
    client = app.test_client()
    server = redis.Redis.from_url(limits_redis)
    assert post(client, "/predict").status_code == 200
    server.script_flush()  # as after a Redis restart: the script is gone
    assert post(client, "/predict").headers["X-RateLimit-Remaining"] == "1"
    killed = server.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1  # as when Redis restarts: the limiter's connection is gone
    with caplog.at_level(logging.ERROR, logger="modelserve.api.limits"):
        assert post(client, "/predict").headers["X-RateLimit-Remaining"] == "0"
        assert post(client, "/predict").status_code == 429
    # Reconnected at once: nothing failed, nothing was let through.
    assert not [r for r in caplog.records if r.name == "modelserve.api.limits"]
    (key,) = server.keys("*")
    assert 0 < server.pttl(key) <= 60_000


def test_a_redis_counter_without_expiry_gets_one(repo: Path, limits_redis: str) -> None:
    app = limited_app(repo, rate_limit="2/minute", rate_limit_storage=limits_redis)
    limiter = limits.get_limiter(app)
    assert limiter is not None
    server = redis.Redis.from_url(limits_redis)
    (key,) = limiter.classes["predict"].keys_for("ip:10.0.0.1")
    server.set(key, 5)  # left behind without a TTL: it must not block the client for good
    resp = post(app.test_client(), "/predict")
    assert resp.status_code == 429
    assert 0 < server.pttl(key) <= 60_000
    assert 0 < int(resp.headers["Retry-After"]) <= 60


def test_a_forked_worker_opens_its_own_redis_connection(repo: Path, limits_redis: str) -> None:
    app = limited_app(repo, rate_limit="5/minute", rate_limit_storage=limits_redis)
    limiter = limits.get_limiter(app)
    assert limiter is not None and isinstance(limiter.storage, limits.RedisCounters)
    predict = limiter.classes["predict"]
    assert limiter.storage.incr(predict, "ip:a")[1] == 1  # this thread now holds a connection
    server = redis.Redis.from_url(limits_redis)
    before = {c["id"] for c in server.client_list()}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            count = limiter.storage.incr(predict, "ip:a")[1]
            ids = {c["id"] for c in redis.Redis.from_url(limits_redis).client_list()}
            os.write(write, json.dumps([count, len(ids - before)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        count, new_connections = json.loads(pipe.read())
    assert count == 2
    assert new_connections >= 2  # its counter connection, and the one that listed them
    assert limiter.storage.incr(predict, "ip:a")[1] == 3  # the parent's connection still works


def test_several_limits_in_one_redis_round_trip(repo: Path, limits_redis: str) -> None:
    app = limited_app(repo, rate_limit="2/minute;3/hour", rate_limit_storage=limits_redis)
    client = app.test_client()
    assert [post(client, "/predict").status_code for _ in range(4)] == [200, 200, 429, 429]
    limiter = limits.get_limiter(app)
    assert limiter is not None
    minute, hour = limiter.classes["predict"].keys_for("ip:10.0.0.1")
    server = redis.Redis.from_url(limits_redis)
    # Every request counted on the minute; the refused ones spent nothing of the hour.
    assert (server.get(minute), server.get(hour)) == (b"4", b"2")
    assert 3_540_000 < server.pttl(hour) <= 3_600_000


def test_far_from_the_limit_requests_are_counted_in_leases(repo: Path, limits_redis: str) -> None:
    """1,600/minute: 100 requests of room per 1/16, so a lease is the most, 64 requests; one
    round trip for 64 requests, and the headers still count down one by one."""
    app = limited_app(repo, rate_limit="1600/minute", rate_limit_storage=limits_redis)
    client = app.test_client()
    limiter = limits.get_limiter(app)
    assert limiter is not None
    (key,) = limiter.classes["predict"].keys_for("ip:10.0.0.1")
    server = redis.Redis.from_url(limits_redis)
    remaining = []
    for i in range(limits.LEASE_MAX):
        resp = post(client, "/predict")
        assert resp.status_code == 200
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
        assert server.get(key) == b"%d" % limits.LEASE_MAX, i  # counted once, up front
    assert remaining == list(range(1599, 1599 - limits.LEASE_MAX, -1))
    post(client, "/predict")  # the lease is spent: the next one is counted
    assert server.get(key) == b"%d" % (2 * limits.LEASE_MAX)


def test_leases_never_let_more_than_the_limit_through(repo: Path, limits_redis: str) -> None:
    """Two workers (apps) on one budget: leases shrink to single requests near the limit, so
    exactly the limit passes."""
    first, second = (
        limited_app(repo, rate_limit="200/minute", rate_limit_storage=limits_redis).test_client()
        for _ in range(2)
    )
    statuses = [post(c, "/predict").status_code for _ in range(130) for c in (first, second)]
    assert statuses.count(200) == 200
    assert statuses[-10:] == [429] * 10


def test_a_forked_worker_drops_the_parents_leases(repo: Path, limits_redis: str) -> None:
    app = limited_app(repo, rate_limit="1600/minute", rate_limit_storage=limits_redis)
    limiter = limits.get_limiter(app)
    assert limiter is not None and isinstance(limiter.storage, limits.RedisCounters)
    predict = limiter.classes["predict"]
    assert limiter.storage.incr(predict, "ip:a")[1] == 1  # a lease of 64: 63 left here
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, json.dumps(limiter.storage.incr(predict, "ip:a")[1]).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child_count = json.loads(pipe.read())
    # The child counted its own lease in Redis rather than spending the parent's.
    assert child_count == limits.LEASE_MAX + 1
    assert limiter.storage.incr(predict, "ip:a")[1] == 2  # the parent's lease is its own
