"""Rate limits across workers, safe loading of pickles and path escapes, on real servers."""

from __future__ import annotations

import pickle
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from . import models
from .conftest import LiveServer
from .test_trust import Evil

pytestmark = pytest.mark.e2e

SERVERS = ["granian", "gunicorn"]
ROW = dict.fromkeys(models.IRIS_FEATURES, 1.0)


def fresh_post(url: str, spoof: str, **kwargs: Any) -> requests.Response:
    # A new connection each time, so the requests spread over both workers.
    headers = {"Connection": "close", "X-Forwarded-For": spoof, "X-Real-IP": spoof}
    return requests.post(url, headers=headers, timeout=30, **kwargs)


def wait_for_workers(state_dir: Path, count: int, timeout: float = 60.0) -> None:
    """Wait until ``count`` workers have built their app (each acknowledges the group's
    state in ``workers/<pid>`` then): a server is ready when its first worker is, and
    gunicorn's second one may still be loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = state_dir / "workers"
        if members.is_dir() and len(list(members.iterdir())) >= count:
            time.sleep(0.5)  # from its acknowledgement to accepting: a few statements
            return
        time.sleep(0.1)
    pytest.fail(f"fewer than {count} workers in {state_dir}")


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_limit_of_n_lets_exactly_n_through_across_every_worker(
    repo: Path,
    tmp_path: Path,
    live_server: Callable[..., LiveServer],
    limits_redis: str,
    server_name: str,
) -> None:
    limit, sent = 20, 36
    # No storage named: several workers and MODELSERVE_REDIS_URL make it Redis.
    env = {
        "MODELSERVE_RATE_LIMIT": f"{limit}/minute",
        "MODELSERVE_REDIS_URL": limits_redis,
        "MODELSERVE_STATE_FILE": str(tmp_path / "state" / "repository.json"),
    }
    server = live_server([str(repo), "--workers", "2", "--server", server_name], env=env)
    wait_for_workers(tmp_path / "state", 2)
    url = server.url + "/models/iris/predict"
    with ThreadPoolExecutor(8) as pool:
        # Every request claims another client address: with 0 trusted proxy hops that
        # changes nothing, all of them spend the loopback peer's budget.
        answers = list(
            pool.map(lambda i: fresh_post(url, f"198.51.100.{i}", json=ROW), range(sent))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * limit + [429] * (sent - limit), statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["Content-Type"].startswith("application/json")
    body = refused.json()
    assert body["status"] == "error" and body["type"] == "TooManyRequests"
    assert f"{limit}/minute" in body["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == str(limit)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time() - 5
    passed = next(a for a in answers if a.status_code == 200)
    assert passed.headers["X-RateLimit-Limit"] == str(limit)
    assert "Retry-After" not in passed.headers
    # Batches have their own budget; health is never limited.
    batch = fresh_post(server.url + "/models/iris/predict_batch", "x", json={"instances": [ROW]})
    assert batch.status_code == 200
    for _ in range(5):
        assert requests.get(server.url + "/health", timeout=10).status_code == 200
    keys = redis.Redis.from_url(limits_redis).keys("*")
    assert any(b"/ip:127.0.0.1/predict/" in k for k in keys), keys
    assert "counted per worker" not in server.stop()


def write_evil(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Evil(marker)))


def test_an_unpinned_pickle_stops_the_start_and_never_runs(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    root, marker = tmp_path / "models", tmp_path / "pwned"
    write_evil(root / "evil" / "1" / "model.pkl", marker)
    server = live_server([str(root), "--workers", "2"], ready=False)
    assert server.proc.wait(timeout=60) == 2
    output = server.output()
    assert "Refusing to load 1/model.pkl" in output, output
    assert "modelserve validate" in output and "--write-manifest" in output
    assert "--trust-pickles" in output and "trust: true" in output
    assert not marker.exists()


def _failed_versions(url: str) -> dict[str, str]:
    body = requests.get(url + "/health", headers={"Connection": "close"}, timeout=10).json()
    (iris,) = [m for m in body["models"] if m["name"] == "iris"]
    return {v["version"]: v["error"] for v in iris.get("failed_versions", [])}


def test_hot_reload_refuses_unpinned_pickles_and_escapes(
    repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    marker = tmp_path / "pwned"
    server = live_server([str(repo), "--workers", "2", "--poll-interval", "0.3"])
    # Version 2: a malicious pickle, published atomically (built beside, renamed in).
    stage = repo / "iris" / ".stage"
    write_evil(stage / "model.joblib", marker)
    shutil.copy(repo / "iris" / "1" / "scaler.joblib", stage / "scaler.joblib")
    stage.rename(repo / "iris" / "2")
    # Version 3: a version folder that is a symlink to a copy outside the repository.
    outside = tmp_path / "outside"
    shutil.copytree(repo / "iris" / "1", outside)
    (repo / "iris" / "3").symlink_to(outside, target_is_directory=True)
    deadline = time.monotonic() + 30
    seen: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        seen = [_failed_versions(server.url) for _ in range(6)]  # both workers, likely
        if all({"2", "3"} <= set(failed) for failed in seen):
            break
        time.sleep(0.3)
    assert all({"2", "3"} <= set(failed) for failed in seen), seen
    assert "Refusing to load 2/model.joblib, 2/scaler.joblib" in seen[0]["2"]
    assert "--trust-pickles" in seen[0]["2"]
    assert "outside the model repository" in seen[0]["3"]
    assert not marker.exists()
    resp = requests.post(server.url + "/models/iris/predict", json=ROW, timeout=10)
    assert resp.status_code == 200 and resp.json()["version"] == "1"


def test_trust_pickles_loads_them(
    repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    marker = tmp_path / "pwned"
    write_evil(repo / "evil" / "1" / "model.pkl", marker)
    server = live_server([str(repo), "--trust-pickles", "--default-model", "iris"], ready=False)
    # Not healthy (evil unpickles to no estimator); serving iris tells it is up.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            if requests.post(server.url + "/predict", json=ROW, timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    else:
        pytest.fail(f"not serving:\n{server.stop()}")
    assert marker.exists()  # it was unpickled: trusting a file means running it
