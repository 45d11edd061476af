"""Thread counts: CPUs from the container's quota, the defaults derived from them, and the
default request threads per worker start granian without a warning."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from modelserve import threads
from modelserve.server import _BLOCKING_THREADS_ARG
from modelserve.server import _SIZE_THREADS_ENV
from modelserve.server import _sized_wsgi_worker
from modelserve.server import _ThreadCountNotice
from modelserve.server import request_threads_after_load
from modelserve.settings import ServerSettings

from . import models
from .conftest import SRC
from .conftest import LiveServer


def test_only_granians_thread_count_notice_is_dropped() -> None:
    notice = _ThreadCountNotice()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("_granian", logging.WARNING, __file__, 1, message, None, None)

    assert not notice.filter(
        record(
            "Configuration allows spawning up to 32 Python threads, which seems quite high "
            "compared to the number of CPU cores available."
        )
    )
    assert notice.filter(record("Unexpected exit from worker-1"))


@pytest.mark.e2e
def test_granian_does_not_warn_about_the_default_thread_count(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    """The default (32, more than 2 x CPUs + 1 on this machine) through the real command."""
    models.write_model(tmp_path / "models", "iris", models.iris())
    server = live_server([str(tmp_path / "models")])
    output = server.stop()
    threads = ServerSettings().threads
    assert f"1 worker(s) x {threads} thread(s), granian" in output
    assert "Python threads" not in output and "quite high" not in output


# -- CPUs from the container's quota (fake cgroup trees) ------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_cgroup_v2_quota_is_read_from_cpu_max(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "cpu io", "cpu.max": "150000 100000\n"})
    proc = _proc(tmp_path, "0::/\n")
    assert threads.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v2_without_a_quota(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "cpu", "cpu.max": "max 100000\n"})
    assert threads.cgroup_cpu_limit(root, _proc(tmp_path, "0::/\n")) is None


def test_cgroup_v2_the_smallest_limit_of_the_path_counts(tmp_path: Path) -> None:
    """A parent's quota binds its children: the service's 4 CPUs inside a pod's 2."""
    root = _tree(
        tmp_path / "cg",
        {
            "cgroup.controllers": "cpu",
            "kubepods/cpu.max": "200000 100000",
            "kubepods/pod1/cpu.max": "400000 100000",
            "kubepods/pod1/app/cpu.max": "max 100000",
        },
    )
    proc = _proc(tmp_path, "0::/kubepods/pod1/app\n")
    assert threads.cgroup_cpu_limit(root, proc) == 2.0


def test_cgroup_v1_quota_and_period(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "cg",
        {"cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    proc = _proc(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    # The host's path (/docker/abc) is absent in the container's mount: its root counts.
    assert threads.cgroup_cpu_limit(root, proc) == 2.5


def test_cgroup_v1_unlimited_and_unreadable(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "cg", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    )
    proc = _proc(tmp_path, "1:cpu:/\n")
    assert threads.cgroup_cpu_limit(root, proc) is None
    assert threads.cgroup_cpu_limit(tmp_path / "absent", tmp_path / "absent-proc") is None
    garbage = _tree(tmp_path / "bad", {"cgroup.controllers": "", "cpu.max": "lots 100000"})
    assert threads.cgroup_cpu_limit(garbage, _proc(tmp_path, "0::/\n")) is None


def test_available_cpus_is_the_fewer_of_affinity_and_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 64)
    proc = _proc(tmp_path, "0::/\n")
    two = _tree(tmp_path / "two", {"cgroup.controllers": "cpu", "cpu.max": "200000 100000"})
    assert threads.available_cpus(two, proc) == 2
    half = _tree(tmp_path / "half", {"cgroup.controllers": "cpu", "cpu.max": "50000 100000"})
    assert threads.available_cpus(half, proc) == 1  # never below one
    odd = _tree(tmp_path / "odd", {"cgroup.controllers": "cpu", "cpu.max": "350000 100000"})
    assert threads.available_cpus(odd, proc) == 3  # 3.5 CPUs: 3 that can be kept busy
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 2)
    many = _tree(tmp_path / "many", {"cgroup.controllers": "cpu", "cpu.max": "800000 100000"})
    assert threads.available_cpus(many, proc) == 2  # pinned to 2: the quota cannot add any


@pytest.mark.parametrize(
    ("cpus", "workers", "expected"),
    [(1, 1, 32), (2, 1, 64), (4, 1, 64), (64, 1, 64), (4, 2, 64), (2, 4, 32), (1, 8, 32)],
)
def test_default_request_threads_follow_the_workers_share_of_cpus(
    cpus: int, workers: int, expected: int
) -> None:
    assert threads.default_server_threads(workers, cpus) == expected
    assert threads.default_max_batch_size(workers, cpus) == max(64, expected)
    assert threads.default_max_latency_ms(workers, cpus) == 5.0


def test_settings_defaults_come_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fixed numbers: the settings ask threads.py, per worker count; the environment and
    explicit values still win."""
    monkeypatch.setattr(threads, "available_cpus", lambda *a, **k: 2)
    for name in ("MODELSERVE_THREADS", "MODELSERVE_MAX_BATCH_SIZE", "MODELSERVE_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    one = ServerSettings()
    assert one.threads == threads.default_server_threads(1, 2)
    assert one.max_batch_size == threads.default_max_batch_size(1, 2)
    assert one.max_latency_ms == threads.default_max_latency_ms(1, 2)
    assert ServerSettings(workers=2).threads == threads.default_server_threads(2, 2)
    monkeypatch.setenv("MODELSERVE_THREADS", "7")
    assert ServerSettings().threads == 7
    assert ServerSettings(threads=3, max_batch_size=9).max_batch_size == 9
    assert threads.default_model_threads(2, 2) == 1


# -- fewer request threads for a worker whose models are not batched -----------------------


@pytest.mark.parametrize(
    ("cpus", "workers", "expected"), [(1, 1, 8), (2, 1, 16), (2, 2, 8), (16, 1, 64), (1, 4, 8)]
)
def test_unbatched_request_threads_follow_the_workers_share_of_cpus(
    cpus: int, workers: int, expected: int
) -> None:
    assert threads.unbatched_server_threads(workers, cpus) == expected


def _loaded_app(root: Path, **settings: Any) -> Flask:
    from modelserve.app import create_app

    return create_app(ServerSettings(profile="testing", model_path=root, **settings))


def test_a_worker_without_batched_models_asks_for_fewer_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "available_cpus", lambda *a, **k: 1)
    models.write_model(tmp_path, "iris", models.iris())
    # Not batched: its call costs less than this (whatever the machine's load).
    app = _loaded_app(tmp_path, threads=32, batch_min_cost_ms=1000)
    assert request_threads_after_load(app, app.extensions["modelserve"].settings) is None
    monkeypatch.setenv(_SIZE_THREADS_ENV, "1")  # the main process: threads are the default
    assert request_threads_after_load(app, app.extensions["modelserve"].settings) == 8
    # A batched model needs a thread for every request waiting to share its call.
    batched = _loaded_app(tmp_path, threads=32, batch_min_cost_ms=0)
    assert request_threads_after_load(batched, batched.extensions["modelserve"].settings) is None


def test_the_worker_target_gets_the_threads_only_where_granian_put_them() -> None:
    calls: list[tuple[Any, ...]] = []

    def inner(*args: Any) -> None:
        calls.append(args)

    def loader() -> Any:
        def wsgi(environ: Any, start_response: Any) -> list[bytes]:
            return []

        wsgi.modelserve_threads = 8  # type: ignore[attr-defined]
        return wsgi

    tail = list(range(_BLOCKING_THREADS_ARG)) + [32, 30, 64]
    _sized_wsgi_worker(inner, (_BLOCKING_THREADS_ARG, 32), 1, "name", loader, *tail)
    (args,) = calls
    assert args[0] == 1 and args[1] == "name" and callable(args[2])
    assert list(args[3:]) == list(range(_BLOCKING_THREADS_ARG)) + [8, 30, 64]
    assert args[2]().modelserve_threads == 8  # the loaded app, not a second load
    # Another layout (the value there is not the configured threads): left as it is.
    calls.clear()
    _sized_wsgi_worker(inner, (_BLOCKING_THREADS_ARG, 48), 1, "name", loader, *tail)
    assert list(calls[0][3:]) == tail


@pytest.mark.e2e
def test_granian_runs_the_fewer_threads_it_says(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    """Through the real command: a worker with one unbatched model holds exactly as many
    requests at once as it says it runs threads; the next one waits for a free thread."""
    from sklearn.preprocessing import FunctionTransformer

    trained = models.iris()
    slow = FunctionTransformer(models.slow_on_marker).fit(trained.x)
    root = tmp_path / "models"
    models.write_model(
        root, "iris", models.Trained(trained.model, trained.x, slow, trained.feature_names)
    )
    gate = tmp_path / "gate"
    gate.touch()
    server = live_server(
        [str(root)],
        env={
            "PYTHONPATH": f"{SRC}:{SRC.parent}",
            models.SLOW_GATE_ENV: str(gate),
            "MODELSERVE_BATCH_MIN_COST_MS": "1000",  # not batched, whatever the machine's load
        },
    )
    fewer = threads.unbatched_server_threads(1)
    row = models.features_of(trained, trained.x[0])
    held = {**row, "sepal_length": models.SLOW_MARKER}
    with ThreadPoolExecutor(fewer) as pool:
        try:
            holding = [
                pool.submit(requests.post, server.url + "/predict", json=held, timeout=60)
                for _ in range(fewer - 1)
            ]
            time.sleep(1.0)  # all of them inside the model, each holding a thread
            # One thread left: it answers.
            assert requests.get(server.url + "/health", timeout=10).status_code == 200
            holding.append(
                pool.submit(requests.post, server.url + "/predict", json=held, timeout=60)
            )
            time.sleep(1.0)
            with pytest.raises(requests.Timeout):  # every thread held: this one waits
                requests.get(server.url + "/health", timeout=1.5)
        finally:
            gate.unlink()
        assert [f.result().status_code for f in holding] == [200] * fewer
    output = server.stop()
    assert f"no model is batched: {fewer} request threads" in output
