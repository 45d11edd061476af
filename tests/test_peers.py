"""Workers of one server agreeing on admin changes: the shared counter and acknowledgements."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from modelserve.peers import WorkerGroup
from modelserve.reload import Reloader

from . import models
from .conftest import LiveServer


@pytest.fixture
def peer() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing in for another worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


def test_the_counter_is_shared_and_bumps_are_serialised(tmp_path: Path) -> None:
    one, two = WorkerGroup(tmp_path), WorkerGroup(tmp_path, pid=1)
    assert one.generation() == two.generation() == 0
    with_threads = [threading.Thread(target=one.bump) for _ in range(20)]
    for t in with_threads:
        t.start()
    for t in with_threads:
        t.join()
    two.bump()
    assert one.generation() == two.generation() == 21  # a memory map: seen at once


def test_live_workers_behind_are_waited_for_and_dead_ones_dropped(
    tmp_path: Path, peer: subprocess.Popen[bytes]
) -> None:
    me = WorkerGroup(tmp_path)
    other = WorkerGroup(tmp_path, pid=peer.pid)
    me.acknowledge(0)
    other.acknowledge(0)
    generation = me.bump()
    assert sorted(me.lagging(generation)) == sorted([me.pid, peer.pid])
    me.acknowledge(generation)
    started = time.monotonic()
    assert me.wait(generation, timeout=0.2) == [peer.pid]
    assert time.monotonic() - started >= 0.2
    threading.Timer(0.1, other.acknowledge, [generation]).start()
    assert me.wait(generation, timeout=5) == []
    # A killed worker (a zombie until its parent reaps it) is not waited for.
    generation = me.bump()
    me.acknowledge(generation)
    peer.kill()
    time.sleep(0.2)
    assert me.wait(generation, timeout=1) == []
    assert not (tmp_path / "workers" / str(peer.pid)).exists()


def test_a_reloader_applies_another_workers_change_and_acknowledges_it(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path)
    group.acknowledge(group.generation())
    scans = threading.Event()
    reloader = Reloader(scans.set, interval=0, group=group)
    reloader.start()
    try:
        time.sleep(0.2)
        assert not scans.is_set()  # nothing changed, no polling: no scan
        assert group.announce(timeout=5) == []  # the reloader scanned and acknowledged
        assert scans.is_set()
    finally:
        reloader.stop()
        group.leave()


_ADMIN = {"X-API-Key": "peers-tests-admin-key"}


def _fresh(url: str, method: str = "GET") -> requests.Response:
    """One request on its own connection, so that successive ones spread over the workers."""
    with requests.Session() as session:
        headers = {"Connection": "close", **_ADMIN}
        return session.request(method, url, timeout=10, headers=headers)


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_load_and_unload_hold_in_every_worker_when_they_answer(
    repo: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """Found by fuzzing: right after unload answered, the other worker still served the
    model; after a failed load, the other worker's index did not list it."""
    server = live_server(
        [str(repo), "--workers", "2", "--poll-interval", "0", "--server", server_name],
        {"MODELSERVE_API_KEY": _ADMIN["X-API-Key"]},
    )
    server.wait_workers_scanned(2)  # both workers up before the unload they must both hear
    row = models.features_of(models.iris(), models.iris().x[0])
    assert _fresh(server.url + "/v2/repository/models/iris/unload", "POST").status_code == 200
    statuses = [
        requests.post(
            server.url + "/models/iris/predict",
            json=row,
            timeout=10,
            headers={"Connection": "close", **_ADMIN},
        ).status_code
        for _ in range(30)
    ]
    assert statuses == [404] * 30
    # Reloading a model whose files are now broken: every worker lists it, with the reason.
    (repo / "iris" / "1" / "model.joblib").write_bytes(b"not a model")
    failed = _fresh(server.url + "/v2/repository/models/iris/load", "POST")
    assert failed.status_code >= 400 and "sha256 mismatch" in failed.json()["error"]
    for _ in range(30):
        index = _fresh(server.url + "/v2/repository/index", "POST").json()
        iris = [item for item in index if item["name"] == "iris"]
        assert iris and all(item["state"] == "UNAVAILABLE" for item in iris), index
        assert "sha256 mismatch" in iris[0]["reason"]
