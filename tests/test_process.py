"""The process model on real servers, granian and gunicorn, 2 workers each: a killed worker
is replaced, SIGTERM drains without losing accepted requests, per-worker hooks run once,
a worker that cannot boot stops the server, and the server-level limits are what README says.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml

from . import models
from .conftest import SRC
from .conftest import LiveServer
from .conftest import wait_for
from .conftest import worker_pids

pytestmark = pytest.mark.e2e

SERVERS = ["granian", "gunicorn"]
ROW = models.features_of(models.iris(), models.iris().x[0])

#: Registers a start and a stop callback that append one line per call to a file named after
#: the worker's pid; on PYTHONPATH it is imported by every interpreter the server starts.
SITECUSTOMIZE = """
import os
from pathlib import Path

from modelserve import workers

_DIR = Path(os.environ["HOOK_MARKER_DIR"])


@workers.on_worker_start
def _started():
    with open(_DIR / f"start-{os.getpid()}", "a") as f:
        f.write("start\\n")


@workers.on_worker_stop
def _stopped():
    with open(_DIR / f"stop-{os.getpid()}", "a") as f:
        f.write("stop\\n")
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris())
    return root


class Load:
    """Client threads posting ``/predict`` on keep-alive sessions until stopped (or 20 s)."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        #: (sent at, answered at, status code or exception name)
        self.results: list[tuple[float, float, int | str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 20
        while not self._stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            outcome: int | str
            try:
                outcome = session.post(self.url + "/predict", json=ROW, timeout=10).status_code
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                time.sleep(0.02)  # the server is gone: do not spin
            with self._lock:
                self.results.append((sent, time.monotonic(), outcome))

    def ok_per_window(self, start: float, end: float, width: float = 0.5) -> list[int]:
        """Successful answers per ``width`` seconds between ``start`` and ``end``."""
        counts = [0] * int((end - start) / width)
        for _, done, outcome in list(self.results):
            i = int((done - start) / width)
            if outcome == 200 and 0 <= i < len(counts):
                counts[i] += 1
        return counts


@pytest.mark.parametrize("server_name", SERVERS)
def test_killed_worker_is_replaced_under_load(
    repo: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    server = live_server(
        [str(repo), "--workers", "2", "--threads", "4", "--server", server_name],
        env={"MODELSERVE_POLL_INTERVAL": "0"},
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 10)
    with Load(server.url) as load:
        time.sleep(2.5)
        before = worker_pids(server.proc.pid)
        victim = min(before)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(
            lambda: (
                len(worker_pids(server.proc.pid) - before) == 1
                and victim not in worker_pids(server.proc.pid)
            ),
            10,
        )
        time.sleep(max(0.0, killed_at + 6.5 - time.monotonic()))
    assert replaced, server.stop()
    assert server.proc.poll() is None  # the server did not shut down
    baseline = statistics.median(load.ok_per_window(killed_at - 2.0, killed_at))
    after = load.ok_per_window(killed_at + 5.0, killed_at + 6.5)
    assert baseline > 5 and min(after) >= 0.4 * baseline, (baseline, after)
    failed = [(sent - killed_at, o) for sent, _, o in load.results if o != 200]
    # Only requests in flight on the killed worker may fail: sent before the kill, one per
    # client at most.
    assert len(failed) <= 4 and all(sent < 0.05 for sent, _ in failed), failed
    print(f"\n{server_name}: SIGKILL: {len(failed)} failed; ok/0.5 s {baseline} -> {after}")
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize("server_name", SERVERS)
def test_sigterm_under_load_answers_what_was_accepted_and_runs_stop_hooks(
    repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """SIGTERM to the main process (what Docker and Kubernetes send): readiness fails at once,
    every request sent before the signal on the clients' established keep-alive connections
    gets a 200, the server exits within the graceful timeout, and every worker ran its start
    and stop callbacks exactly once."""
    hook_site = tmp_path / "site"
    hook_site.mkdir()
    (hook_site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    markers = tmp_path / "markers"
    markers.mkdir()
    graceful = 10
    server = live_server(
        [str(repo), "--workers", "2", "--threads", "4", "--server", server_name],
        env={
            "MODELSERVE_POLL_INTERVAL": "0",
            "MODELSERVE_GRACEFUL_TIMEOUT": str(graceful),
            "HOOK_MARKER_DIR": str(markers),
            "PYTHONPATH": f"{hook_site}{os.pathsep}{SRC}",
        },
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 10)
    pids = worker_pids(server.proc.pid)
    readiness: list[tuple[float, int | str]] = []

    def poll_readiness() -> None:
        session = requests.Session()
        while server.proc.poll() is None:
            try:
                status: int | str = session.get(server.url + "/v2/health/ready", timeout=5)
                status = status.status_code  # type: ignore[union-attr]
            except requests.RequestException as exc:
                status = type(exc).__name__
            readiness.append((time.monotonic(), status))
            time.sleep(0.05)

    poller = threading.Thread(target=poll_readiness)
    with Load(server.url) as load:
        poller.start()
        time.sleep(2.0)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=graceful + 5)
        exited = time.monotonic() - signalled
    poller.join()
    assert code == 0 and exited < graceful, (code, exited)
    print(f"\n{server_name}: SIGTERM: exit 0 after {exited:.2f} s (graceful timeout {graceful} s)")
    sent_before = [o for sent, _, o in load.results if sent < signalled]
    assert len(sent_before) > 50 and all(o == 200 for o in sent_before), [
        o for o in sent_before if o != 200
    ]
    print(f"{server_name}: SIGTERM: {len(sent_before)} requests sent before it, all 200")
    assert all(s == 200 for t, s in readiness if t < signalled)
    assert 503 in [s for t, s in readiness if t > signalled], readiness[-10:]
    for pid in pids:
        assert (markers / f"start-{pid}").read_text() == "start\n"
        assert (markers / f"stop-{pid}").read_text() == "stop\n", server.output()
    assert len(list(markers.iterdir())) == 4  # the main process ran neither


@pytest.mark.parametrize("server_name", SERVERS)
def test_worker_that_cannot_boot_stops_the_server(
    tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """The preflight checks manifests and hashes only; an artifact that is pinned but cannot
    be unpickled fails in the worker, and must stop the server, not loop respawning it."""
    root = tmp_path / "models"
    model_dir = models.write_model(root, "iris", models.iris(), pin=False)
    (model_dir / "1" / "model.joblib").write_bytes(b"not a pickle")
    pins = {f"1/{f}": models.sha256(model_dir / "1" / f) for f in ("model.joblib", "scaler.joblib")}
    manifest = yaml.safe_load((model_dir / "model.yaml").read_text())
    (model_dir / "model.yaml").write_text(yaml.safe_dump({**manifest, "sha256": pins}))
    started = time.monotonic()
    server = live_server([str(root), "--workers", "2", "--server", server_name], ready=False)
    code = server.proc.wait(timeout=60)
    output = server.output()
    assert code == 3, output
    assert time.monotonic() - started < 30
    assert "No model could be loaded" in output, output
    if server_name == "granian":
        assert "a worker failed to boot, server stopped" in output
        assert "Respawning" not in output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("server_name", SERVERS)
def test_a_signal_to_the_whole_process_group_stops_promptly(
    repo: Path, live_server: Callable[..., LiveServer], server_name: str, sig: signal.Signals
) -> None:
    """Ctrl-C in a terminal (SIGINT) and systemd's default KillMode (SIGTERM) signal every
    process of the group: the workers stop by themselves, and granian must not respawn
    them (the fresh ones were then killed only after the graceful timeout, ~30 s)."""
    server = live_server([str(repo), "--workers", "2", "--server", server_name])
    started = time.monotonic()
    os.killpg(server.proc.pid, sig)
    server.proc.wait(timeout=60)
    took = time.monotonic() - started
    output = server.output()
    assert took < 10, (took, output[-2000:])
    assert "Respawning" not in output and "refused to gracefully stop" not in output


def raw_status(port: int, head: bytes) -> tuple[int, bytes]:
    """Send one raw request head; return the status code and the start of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 1:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2][:20]


@pytest.mark.parametrize("server_name", SERVERS)
def test_server_level_limits_are_the_documented_ones(
    repo: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """README, "Server-level limits": what reaches the app (JSON errors) and what the server
    answers itself."""
    server = live_server(
        [str(repo), "--server", server_name], env={"MODELSERVE_MAX_CONTENT_LENGTH": "1000"}
    )

    def get(path: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        head = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n"
        return raw_status(server.port, head + b"\r\n")

    for length in (5_000, 60_000):  # long URLs reach the app on both servers
        status, body = get(b"/" + b"a" * length)
        assert status == 404 and body.startswith(b'{"error"'), (status, body)
    status, body = get(b"/" + b"a" * 70_000)
    assert (status, body[:1]) == ((414, b"") if server_name == "granian" else (404, b"{"))
    # 100 header fields at most (Host and Connection count), on both servers.
    assert get(b"/health", b"".join(b"X-%d: v\r\n" % i for i in range(98)))[0] == 200
    assert get(b"/health", b"".join(b"X-%d: v\r\n" % i for i in range(99)))[0] == 431
    assert get(b"/health", b"X-Big: " + b"v" * 60_000 + b"\r\n")[0] == 200
    big_field = get(b"/health", b"X-Big: " + b"v" * 70_000 + b"\r\n")[0]
    assert big_field == (200 if server_name == "granian" else 431)
    too_big = requests.post(server.url + "/predict", json={"x": "v" * 2000}, timeout=10)
    assert too_big.status_code == 413 and too_big.json()["status"] == "error"
