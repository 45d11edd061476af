"""Shared fixtures: settings, app, client, model repositories on disk, a real server process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.settings import ServerSettings

from . import models

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def _reset_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MODELSERVE_* variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("MODELSERVE_"):
            monkeypatch.delenv(key)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with iris (scaler + logistic regression) and a forest Pipeline."""
    root = tmp_path / "models"
    iris_inputs = [{"name": n, "type": "number", "minimum": 0} for n in models.IRIS_FEATURES]
    models.write_model(root, "iris", models.iris(), manifest={"inputs": iris_inputs})
    models.write_model(root, "forest", models.forest())
    return root


@pytest.fixture
def settings(repo: Path) -> ServerSettings:
    return ServerSettings(profile="testing", model_path=repo, default_model="iris")


@pytest.fixture
def app(settings: ServerSettings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A real `modelserve serve` process on loopback, running this checkout's code."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
        # No MODELSERVE_SECRET_KEY: a server must start without one (it makes its own).
        full_env.update(PYTHONPATH=f"{SRC}{os.pathsep}{full_env.get('PYTHONPATH', '')}")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelserve", "serve", *args, "--port", str(self.port)],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group, so stopping it also stops every worker it forked.
            start_new_session=True,
        )
        # Read the output as it comes: a server logs every request, and a pipe nobody reads
        # fills up and blocks the workers' writes.
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or workers still loading
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.stop()}")

    def wait_workers_scanned(self, workers: int, timeout: float = 60.0) -> None:
        """Wait until ``workers`` processes have each logged their first repository scan.

        ``wait_ready`` returns once *one* worker answers; the others may still be loading, and
        a worker that scans after a test changes the repository sees the change. A test that
        must know what every worker loaded waits here first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self._scanned_pids()) >= workers:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"{workers} workers did not scan after {timeout}s:\n{self.output()}")

    def _scanned_pids(self) -> set[int]:
        pids = set()
        for line in list(self._lines):
            if '"modelserve.repository"' not in line or "repository rescan" not in line:
                continue
            try:
                pids.add(int(json.loads(line)["pid"]))
            except (ValueError, KeyError, TypeError):
                continue
        return pids

    def output(self) -> str:
        """What the server wrote so far; all of it once the server has exited."""
        if self.proc.poll() is not None:
            self._reader.join(timeout=10)
        return "".join(self._lines)

    def stop(self) -> str:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                # SIGTERM to the main process only, as Docker and Kubernetes send it (a granian
                # worker that gets its own SIGTERM skips the drain: modelserve.workers).
                if sig == signal.SIGTERM:
                    os.kill(self.proc.pid, sig)
                else:
                    os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                # The master is gone; make sure no worker outlives it.
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break
        return self.output()


@contextmanager
def running_server(args: list[str], env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """A real server for a ``with`` block (module-scoped fixtures): ready inside, stopped after."""
    server = LiveServer(args, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Start real servers (``live_server(["PATH", "--workers", "2"])``); all stop at teardown."""
    started: list[LiveServer] = []

    def start(args: list[str], env: dict[str, str] | None = None, ready: bool = True) -> LiveServer:
        server = LiveServer(args, env)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every demo model, digits CNN included, trained once per test session (a few seconds)."""
    from modelserve.demo import train_demo_models

    root = tmp_path_factory.mktemp("demo") / "models"
    train_demo_models(root)
    return root


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server`` on a free loopback port for the whole session (its URL).

    Started here rather than expected on 6379, so the README's test command works on a fresh
    machine and never touches a developer's own Redis. Missing binary: the tests fail (a skip
    would hide them in CI), naming the package to install.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed; the cache tests need it: "
            "sudo apt-get install redis-server",
            pytrace=False,
        )
    import redis

    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = workdir / "redis.log"
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--daemonize", "no", "--dir", str(workdir), "--logfile", str(log)]
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = log.read_text() if log.exists() else ""
                    pytest.fail(f"redis-server did not answer PING on port {port}:\n{output}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_pids(pid: int) -> set[int]:
    """The children of a server's main process, read from /proc (no psutil)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return children


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


@pytest.fixture
def limits_redis(redis_url: str) -> Iterator[str]:
    """The session's private Redis on a database of its own (7), emptied for each test."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
