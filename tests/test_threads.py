"""Thread counts: CPUs from the container's quota, the defaults derived from them, and the
default request threads per worker start granian without a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve import threads
from modelserve.server import _ThreadCountNotice
from modelserve.settings import ServerSettings

from . import models
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
