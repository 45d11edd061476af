"""deploy/gunicorn.conf.py under the real gunicorn: preloads, serves, recycles, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .. import models
from ..conftest import SRC
from ..conftest import free_port
from ..conftest import wait_for
from ..conftest import worker_pids
from .conftest import DEPLOY
from .conftest import ROOT

IRIS_ROW = dict(zip(models.IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
KEY = {"X-API-Key": "gunicorn-conf-tests-key"}


class Gunicorn:
    """``gunicorn -c deploy/gunicorn.conf.py 'modelserve.app:create_app()'`` on loopback."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
        full_env.update(PYTHONPATH=str(SRC), MODELSERVE_PORT=str(self.port), **env)
        conf = str(DEPLOY / "gunicorn.conf.py")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", conf, "modelserve.app:create_app()"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        if self.proc.poll() is not None:
            self._reader.join(timeout=10)
        return "".join(self.lines)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


@pytest.fixture
def gunicorn(repo: Path) -> Iterator[Gunicorn]:
    """Two workers of four threads over scikit-learn models, recycled every ~5 requests."""
    env = {
        "MODELSERVE_MODEL_PATH": str(repo),
        "MODELSERVE_DEFAULT_MODEL": "iris",
        "MODELSERVE_HOST": "127.0.0.1",
        "MODELSERVE_WORKERS": "2",
        "MODELSERVE_THREADS": "4",
        "MODELSERVE_MAX_REQUESTS": "5",
        "MODELSERVE_MAX_REQUESTS_JITTER": "1",
        "MODELSERVE_GRACEFUL_TIMEOUT": "10",
        "MODELSERVE_POLL_INTERVAL": "0",
        "MODELSERVE_API_KEY": KEY["X-API-Key"],
    }
    server = Gunicorn(env)
    try:
        if not wait_for(lambda: server.ready() or server.proc.poll() is not None, 60, 0.1):
            pytest.fail(f"gunicorn not ready:\n{server.output()}")
        assert server.proc.poll() is None, server.output()
        yield server
    finally:
        server.kill()


def test_serves_preloaded_models_recycles_and_stops_cleanly(gunicorn: Gunicorn) -> None:
    # The master loaded the fork-safe models before forking (MODELSERVE_PRELOAD, on by default).
    assert "preloaded forest/1, iris/1 in the main process" in gunicorn.output()
    first = worker_pids(gunicorn.proc.pid)
    assert len(first) == 2  # MODELSERVE_WORKERS
    for _ in range(20):  # new connections, so both workers take requests
        r = requests.post(f"{gunicorn.url}/predict", json=IRIS_ROW, headers=KEY, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == 0
    # MODELSERVE_MAX_REQUESTS reached gunicorn: workers were recycled, two are serving.
    assert wait_for(lambda: len(worker_pids(gunicorn.proc.pid)) == 2, 10)
    assert worker_pids(gunicorn.proc.pid) != first
    assert "Autorestarting worker" in gunicorn.output()

    # The workers form one group: an unload through one holds in all of them, and in the
    # workers forked since (recycled every ~5 requests meanwhile).
    unload = f"{gunicorn.url}/v2/repository/models/forest/unload"
    assert requests.post(unload, headers=KEY, timeout=30).status_code == 200
    forest = models.forest()
    row = models.features_of(forest, forest.x[0])
    # Each on its own connection, so that they spread over the workers.
    close = {"Connection": "close", **KEY}
    url = f"{gunicorn.url}/models/forest/predict"
    statuses = [
        requests.post(url, json=row, headers=close, timeout=10).status_code for _ in range(30)
    ]
    assert statuses == [404] * 30

    gunicorn.proc.send_signal(signal.SIGTERM)
    assert gunicorn.proc.wait(timeout=20) == 0
    output = gunicorn.output()
    assert "Shutting down: Master" in output
    assert "Traceback" not in output and "was sent SIGKILL" not in output


def test_bad_settings_stop_the_master_with_one_message(tmp_path: Path) -> None:
    server = Gunicorn(
        {"MODELSERVE_MODEL_PATH": str(tmp_path / "missing"), "MODELSERVE_WORKERS": "0"}
    )
    try:
        assert server.proc.wait(timeout=30) != 0
    finally:
        server.kill()
    output = server.output()
    assert "modelserve: Invalid settings: MODELSERVE_WORKERS" in output
    assert "Traceback" not in output
