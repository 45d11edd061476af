"""Production promises under load, on real servers (granian and gunicorn) on loopback:
worker recycling (request count, RSS) and SIGHUP lose no request, worker memory stays flat
over 100,000 requests, and preloaded workers share one copy of a large model.

Load comes from ``wrk`` (keep-alive connections, a fixed number of requests); the kill and
SIGTERM promises are in ``tests/test_process.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
import yaml

from modelserve.workers import rss_bytes

from . import models
from .conftest import LiveServer
from .conftest import wait_for
from .conftest import worker_pids

pytestmark = pytest.mark.e2e

SERVERS = ["granian", "gunicorn"]

#: Posts one JSON body, read from the environment.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")
"""

#: Quiet, steady servers: no request lines (100,000 of them would cost more CPU than the
#: requests), no repository polling.
QUIET = {"MODELSERVE_LOG_REQUESTS": "false", "MODELSERVE_POLL_INTERVAL": "0"}


@dataclass
class WrkResult:
    requests: int = 0
    errors: int = 0  # connect, read, write and timeout errors together
    non_2xx: int = 0
    output: str = ""


def wrk_for(url: str, body: str, seconds: int, script: Path) -> WrkResult:
    """One ``wrk`` run: 2 threads, 8 keep-alive connections, ``seconds`` long."""
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("wrk is not installed: sudo apt-get install wrk", pytrace=False)
    out = subprocess.run(
        [wrk, "-t2", "-c8", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        env={"WRK_BODY": body, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert done is not None, out
    return WrkResult(
        requests=int(done.group(1)),
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        output=out,
    )


def run_wrk(url: str, body: str, total: int, tmp: Path) -> WrkResult:
    """At least ``total`` POSTs of ``body`` to ``url``, in as few ``wrk`` runs as the rate
    allows (wrk runs for a duration, not a count): a short first run measures the rate, the
    next ones last what the rest should take."""
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    result = WrkResult()
    seconds = 2
    for _ in range(20):
        if result.requests >= total:
            break
        one = wrk_for(url, body, seconds, script)
        result.requests += one.requests
        result.errors += one.errors
        result.non_2xx += one.non_2xx
        result.output += one.output
        rate = max(one.requests / seconds, 100.0)
        # At most 10 s a run: a slow first run (connections, warm-up) would overshoot.
        seconds = max(1, min(10, math.ceil((total - result.requests) / rate * 1.02)))
    return result


@pytest.fixture(scope="module")
def iris_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iris") / "models"
    models.write_model(root, "iris", models.iris())
    return root


IRIS_ROW = json.dumps(models.features_of(models.iris(), models.iris().x[0]))


@pytest.mark.parametrize("server_name", SERVERS)
def test_recycled_workers_lose_no_request(
    iris_repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """MODELSERVE_MAX_REQUESTS under load: every worker is replaced once past its budget
    (plus jitter), and not one request fails or gets a non-2xx answer meanwhile."""
    server = live_server(
        [str(iris_repo), "--workers", "2", "--threads", "4", "--server", server_name],
        env={**QUIET, "MODELSERVE_MAX_REQUESTS": "2000", "MODELSERVE_MAX_REQUESTS_JITTER": "200"},
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 10)
    first = worker_pids(server.proc.pid)
    result = run_wrk(server.url + "/predict", IRIS_ROW, 7000, tmp_path)
    assert result.requests >= 7000, result.output
    assert (result.errors, result.non_2xx) == (0, 0), result.output
    # 7,000 requests over two workers: at least one took over 2,200 of them and was replaced
    # (how the connections spread over the two is the kernel's choice).
    said = "Autorestarting worker" if server_name == "gunicorn" else "recycling"
    assert server.output().count(said) >= 2, server.output()[-3000:]
    assert wait_for(lambda: len(first - worker_pids(server.proc.pid)) >= 1, 15)
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 15)
    assert server.proc.poll() is None
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    print(f"\n{server_name}: {result.requests} requests through recycling, 0 failed")


@pytest.mark.parametrize("server_name", SERVERS)
def test_workers_over_the_rss_limit_are_replaced_without_failing_requests(
    iris_repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """MODELSERVE_MAX_WORKER_RSS_MB below what any worker needs: every worker is replaced
    as soon as it is checked, over and over, and still no request fails."""
    server = live_server(
        [str(iris_repo), "--workers", "2", "--threads", "4", "--server", server_name],
        env={**QUIET, "MODELSERVE_MAX_WORKER_RSS_MB": "50"},
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) >= 2, 10)
    first = worker_pids(server.proc.pid)
    result = run_wrk(server.url + "/predict", IRIS_ROW, 2000, tmp_path)
    assert result.requests >= 2000, result.output
    assert (result.errors, result.non_2xx) == (0, 0), result.output

    def replaced() -> bool:
        # gunicorn checks a worker's RSS after each of its requests: one that the load's
        # connections never reached is checked at its first request, so keep sending some.
        answer = requests.post(
            server.url + "/predict",
            data=IRIS_ROW,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return not first & worker_pids(server.proc.pid)

    assert wait_for(replaced, 15, step=0.1), server.output()
    assert "RSS over MODELSERVE_MAX_WORKER_RSS_MB" in server.output()
    assert server.proc.poll() is None
    print(f"\n{server_name}: {result.requests} requests through RSS recycling, 0 failed")


@pytest.mark.parametrize("server_name", SERVERS)
def test_sighup_under_load_fails_no_request(
    iris_repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """SIGHUP (hot reload) while wrk keeps 8 connections busy: granian restarts every worker,
    gunicorn's workers rescan in place; either way no request fails."""
    server = live_server(
        [str(iris_repo), "--workers", "2", "--threads", "4", "--server", server_name],
        env=QUIET,
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 10)
    first = worker_pids(server.proc.pid)
    script = tmp_path / "post.lua"
    script.write_text(WRK_SCRIPT)
    outcome: list[WrkResult] = []
    load = threading.Thread(
        target=lambda: outcome.append(wrk_for(server.url + "/predict", IRIS_ROW, 11, script))
    )
    load.start()
    time.sleep(2)
    os.kill(server.proc.pid, signal.SIGHUP)
    load.join()
    (result,) = outcome
    assert result.requests > 1000 and (result.errors, result.non_2xx) == (0, 0), result.output
    now = worker_pids(server.proc.pid)
    if server_name == "granian":  # both replaced within the 9 s after the signal
        assert not first & now, server.output()
    else:
        assert now == first and "every worker rescans" in server.output()
    print(f"\n{server_name}: {result.requests} requests through SIGHUP, 0 failed")


@pytest.mark.parametrize("server_name", SERVERS)
def test_worker_rss_stays_flat_over_100k_requests(
    iris_repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """After a warm-up (caches, allocator arenas, lazily built objects), 100,000 more
    requests grow no worker's resident memory by 5% or more."""
    server = live_server(
        [str(iris_repo), "--workers", "2", "--threads", "4", "--server", server_name],
        env=QUIET,
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 10)
    pids = worker_pids(server.proc.pid)
    warm = run_wrk(server.url + "/predict", IRIS_ROW, 5_000, tmp_path)
    assert (warm.errors, warm.non_2xx) == (0, 0), warm.output
    before = {pid: rss_bytes(pid) for pid in pids}
    result = run_wrk(server.url + "/predict", IRIS_ROW, 100_000, tmp_path)
    after = {pid: rss_bytes(pid) for pid in pids}
    assert result.requests >= 100_000 and (result.errors, result.non_2xx) == (0, 0), result.output
    assert worker_pids(server.proc.pid) == pids  # the same workers served it all
    growth = {pid: after[pid] / before[pid] - 1 for pid in pids}
    print(
        f"\n{server_name}: RSS after warm-up {[b >> 20 for b in before.values()]} MiB, "
        f"after 100k more {[a >> 20 for a in after.values()]} MiB, growth "
        + ", ".join(f"{g:.2%}" for g in growth.values())
    )
    assert all(0 < before[pid] and growth[pid] < 0.05 for pid in pids), (before, after)


#: The large model: nearest neighbours over 250,000 x 100 doubles (200 MB), scored by brute
#: force, so every prediction (and the warm-up in each worker) reads all of it.
BIG_ROWS, BIG_FEATURES = 250_000, 100


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.neighbors import KNeighborsClassifier

    root = tmp_path_factory.mktemp("big") / "models"
    version = root / "big" / "1"
    version.mkdir(parents=True)
    x = np.random.default_rng(0).standard_normal((BIG_ROWS, BIG_FEATURES))
    model = KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(x, x[:, 0] > 0)
    joblib.dump(model, version / "model.joblib")
    digest = hashlib.sha256((version / "model.joblib").read_bytes()).hexdigest()
    manifest = {"runtime": "sklearn", "sha256": {"1/model.joblib": digest}}
    (root / "big" / "model.yaml").write_text(yaml.safe_dump(manifest))
    return root


def smaps(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` in bytes: Rss, Pss, Shared_Clean, ..."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) * 1024
    return fields


@pytest.mark.parametrize("server_name", SERVERS)
def test_preloaded_workers_share_one_copy_of_the_model(
    big_repo: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """4 workers serving a 200 MB model: each has all of it resident (its warm-up read every
    row), yet all of them and the main process together take well under 4 workers' worth
    of memory, because the main process loaded it before the fork (MODELSERVE_PRELOAD)."""
    server = live_server(
        [str(big_repo), "--workers", "4", "--threads", "2", "--server", server_name],
        env=QUIET,
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 4, 10)
    assert "preloaded big/1 in the main process" in server.output(), server.output()
    row = {"instances": [[0.1] * BIG_FEATURES]}
    for _ in range(8):  # new connections: spread over the workers
        answer = requests.post(server.url + "/models/big/predict_batch", json=row, timeout=30)
        assert answer.status_code == 200, answer.text
    time.sleep(0.5)
    pids = sorted(worker_pids(server.proc.pid))
    workers = [smaps(pid) for pid in pids]
    main = smaps(server.proc.pid)
    one_worker = max(w["Rss"] for w in workers)
    total_pss = main["Pss"] + sum(w["Pss"] for w in workers)
    ratio = total_pss / one_worker
    print(
        f"\n{server_name}: worker RSS {[w['Rss'] >> 20 for w in workers]} MiB, PSS "
        f"{[w['Pss'] >> 20 for w in workers]} MiB, main PSS {main['Pss'] >> 20} MiB; "
        f"total PSS {total_pss >> 20} MiB = {ratio:.2f} x one worker's RSS"
    )
    model_bytes = BIG_ROWS * BIG_FEATURES * 8
    assert all(w["Rss"] > model_bytes for w in workers), workers
    assert ratio < 2.0, (ratio, workers, main)
