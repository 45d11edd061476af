"""Thread counts: the default request threads per worker stay within granian's rule."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve.threads import default_server_threads

from . import models
from .conftest import LiveServer


@pytest.mark.parametrize(
    ("cpus", "threads"), [(0, 3), (1, 3), (2, 5), (4, 9), (15, 31), (16, 32), (128, 32)]
)
def test_default_server_threads(cpus: int, threads: int) -> None:
    assert default_server_threads(cpus) == threads


@pytest.mark.parametrize("cpus", range(1, 65))
def test_default_server_threads_never_trip_granian_and_still_batch(cpus: int) -> None:
    threads = default_server_threads(cpus)
    # granian/server/mp.py warns when blocking_threads > cpu_count() * 2 + 1 (WSGI).
    assert threads <= cpus * 2 + 1
    # More than one request in flight per worker, or the batcher never sees a second row.
    assert threads >= 3


@pytest.mark.e2e
def test_granian_does_not_warn_about_the_default_thread_count(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    """The number granian itself judges, on this machine, through the real command line."""
    models.write_model(tmp_path / "models", "iris", models.iris())
    threads = default_server_threads(multiprocessing.cpu_count())
    server = live_server([str(tmp_path / "models"), "--threads", str(threads)])
    output = server.stop()
    assert f"1 worker(s) x {threads} thread(s), granian" in output
    assert "Python threads" not in output and "quite high" not in output
