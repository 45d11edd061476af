"""Hot reload: repository rescans, version policies, the reloader thread, real workers."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
import requests
import yaml

from modelserve.admin import RepositoryAdmin
from modelserve.errors import ModelLoadError
from modelserve.listing import ModelListing
from modelserve.manifest import parse_manifest
from modelserve.reload import Reloader
from modelserve.repository import ModelRepository
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings

from . import models
from .conftest import LiveServer


def publish(root: Path, name: str, version: int, *, broken: bool = False) -> Path:
    """Publish a version the way operators should: build it beside, then rename it in.

    Pins live in the version's own model.yaml, so publishing never rewrites the model-level
    manifest. ``broken`` pins a hash the artifact does not have.
    """
    trained = models.iris()
    stage = root / name / f".stage-{version}"
    stage.mkdir(parents=True)
    joblib.dump(trained.model, stage / "model.joblib")
    joblib.dump(trained.preprocessor, stage / "scaler.joblib")
    pins = {f: models.sha256(stage / f) for f in ("model.joblib", "scaler.joblib")}
    if broken:
        pins["model.joblib"] = "0" * 64
    (stage / "model.yaml").write_text(yaml.safe_dump({"sha256": pins}))
    final = root / name / str(version)
    stage.rename(final)
    return final


def write_iris_manifest(root: Path, **extra: Any) -> None:
    (root / "iris").mkdir(parents=True, exist_ok=True)
    data = {
        "runtime": "sklearn",
        "artifact": "model.joblib",
        "preprocessor": "scaler.joblib",
        "inputs": [{"name": n} for n in models.IRIS_FEATURES],
        **extra,
    }
    (root / "iris" / "model.yaml").write_text(yaml.safe_dump(data))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_iris_manifest(root)
    publish(root, "iris", 1)
    return root


def _service(root: Path) -> InferenceService:
    service = InferenceService(ServerSettings(profile="testing", model_path=root))
    service.load()
    return service


def test_new_version_is_loaded_beside_and_old_objects_survive(root: Path) -> None:
    service = _service(root)
    v1 = service.resolve("iris")
    assert v1.version == 1
    publish(root, "iris", 2)
    report = service.reload()
    assert report.loaded == ["iris/2"]
    assert service.resolve("iris").version == 2
    # Version 1 did not change on disk: the very same object keeps serving it.
    assert service.resolve("iris", 1) is v1
    # A request that resolved v1 before the swap can still finish on it.
    assert not v1.released
    assert v1.infer({"input": models.iris().x[:2]})["predict"].shape == (2,)


def test_broken_version_never_serves_and_is_reported(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = _service(root)
    publish(root, "iris", 2, broken=True)
    with caplog.at_level(logging.ERROR, logger="modelserve"):
        report = service.reload()
    assert report.failed == ["iris/2"]
    assert "sha256 mismatch" in caplog.text
    assert service.resolve("iris").version == 1
    body, ready = ModelListing(service).health()
    assert ready
    (model,) = body["models"]
    assert model["version"] == "1"
    assert model["failed_versions"][0]["version"] == "2"
    assert "sha256 mismatch" in model["failed_versions"][0]["error"]
    # Not retried while its files stay the same.
    assert not service.reload().changed


def test_changed_served_version_that_fails_keeps_the_old_copy(root: Path) -> None:
    service = _service(root)
    v1 = service.resolve("iris")
    (root / "iris" / "1" / "model.joblib").write_bytes(b"garbage")
    report = service.reload()
    assert report.failed == ["iris/1"]
    assert service.resolve("iris") is v1
    body, ready = ModelListing(service).health()
    assert ready
    assert body["models"][0]["failed_versions"][0]["state"] == "rejected"
    assert not service.reload().changed
    # Fixing the files brings a new copy in.
    joblib.dump(models.iris().model, root / "iris" / "1" / "model.joblib")
    (root / "iris" / "1" / "model.yaml").unlink()
    assert service.reload().loaded == ["iris/1"]
    assert service.resolve("iris") is not v1
    assert "failed_versions" not in ModelListing(service).health()[0]["models"][0]


def test_changed_manifest_reloads_every_version(root: Path) -> None:
    service = _service(root)
    v1 = service.resolve("iris")
    write_iris_manifest(root, class_names=["setosa", "versicolor", "virginica"])
    assert service.reload().loaded == ["iris/1"]
    v1_new = service.resolve("iris")
    assert v1_new is not v1
    assert v1_new.signature is not None and v1_new.signature.class_names == (
        "setosa",
        "versicolor",
        "virginica",
    )
    # The retired copy, which no request holds, is released (codecs, batcher, runtime).
    assert v1.released


def test_removed_version_folder_is_removed(root: Path) -> None:
    service = _service(root)
    publish(root, "iris", 2)
    service.reload()
    shutil.rmtree(root / "iris" / "2")
    assert service.reload().removed == ["iris/2"]
    assert service.resolve("iris").version == 1


def test_version_policy_latest_skips_broken_versions(root: Path) -> None:
    write_iris_manifest(root, version_policy={"latest": 2})
    for v in (2, 3):
        publish(root, "iris", v)
    publish(root, "iris", 4, broken=True)
    repo = ModelRepository(ServerSettings(profile="testing", model_path=root))
    repo.load_all()
    entry = repo.find_entry("iris")
    assert entry is not None
    assert {v: mv.ready for v, mv in entry.versions.items()} == {4: False, 3: True, 2: True}
    assert repo.get("iris").version == 3


def test_version_policy_specific(root: Path) -> None:
    for v in (2, 3):
        publish(root, "iris", v)
    write_iris_manifest(root, version_policy={"specific": [1, 3]})
    repo = ModelRepository(ServerSettings(profile="testing", model_path=root))
    repo.load_all()
    entry = repo.find_entry("iris")
    assert entry is not None and sorted(entry.versions) == [1, 3]


@pytest.mark.parametrize(
    "policy", [{"latest": 1, "specific": [1]}, {}, {"latest": 0}, "some", {"specific": []}]
)
def test_bad_version_policy_is_a_manifest_error(policy: object) -> None:
    with pytest.raises(ModelLoadError, match="version_policy"):
        parse_manifest({"version_policy": policy}, "model.yaml")


def test_unload_state_is_shared_through_the_state_file(root: Path, tmp_path: Path) -> None:
    settings = ServerSettings(
        profile="testing", model_path=root, state_file=tmp_path / "state.json"
    )
    one, two = InferenceService(settings), InferenceService(settings)
    one.load()
    two.load()
    RepositoryAdmin(one).unload("iris")
    two.reload()
    assert two.repository.find_entry("iris") is None and two.find_model("iris") is None
    RepositoryAdmin(two).load("iris")
    one.reload()
    assert one.resolve("iris").version == 1


def test_reloader_polls_wakes_and_survives_errors(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def scan() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ModelLoadError("boom")

    reloader = Reloader(scan, interval=0.05)
    reloader.start()
    try:
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reloader.stop()
    assert len(calls) >= 3
    assert "boom" in caplog.text


def test_reloader_without_interval_scans_on_request_and_sighup() -> None:
    scanned = threading.Event()
    reloader = Reloader(scanned.set, interval=0)
    previous = signal.getsignal(signal.SIGHUP)
    reloader.install_sighup()
    reloader.start()
    try:
        assert not scanned.wait(0.2)
        reloader.request()
        assert scanned.wait(5)
        scanned.clear()
        os.kill(os.getpid(), signal.SIGHUP)
        assert scanned.wait(5)
    finally:
        reloader.stop()
        signal.signal(signal.SIGHUP, previous)


# -- real servers -------------------------------------------------------------------------------


def _versions_seen(url: str, n: int = 12) -> set[str]:
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5, 3, 1, 0]}]
    }
    seen = set()
    for _ in range(n):
        resp = requests.post(url + "/v2/models/iris/infer", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        seen.add(resp.json()["model_version"])
    return seen


def _wait_for(check: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["gunicorn", "granian"])
def test_sighup_to_the_master_reloads_every_worker(
    root: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """gunicorn: every worker rescans in place; granian: its workers restart on the new state."""
    server = live_server(
        [str(root), "--workers", "2", "--poll-interval", "0", "--server", server_name]
    )
    server.wait_workers_scanned(2)  # a worker still loading would scan version 2 below
    assert _versions_seen(server.url) == {"1"}
    publish(root, "iris", 2)
    time.sleep(0.5)
    assert _versions_seen(server.url) == {"1"}  # polling is off
    server.proc.send_signal(signal.SIGHUP)
    assert _wait_for(lambda: _versions_seen(server.url) == {"2"})
    assert server.proc.poll() is None


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["gunicorn", "granian"])
def test_hot_reload_under_load(
    root: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """30 s of traffic on 2 workers while 10 versions and 1 broken one are published."""
    write_iris_manifest(root, version_policy={"latest": 2})
    server = live_server(
        [str(root), "--workers", "2", "--threads", "4", "--server", server_name],
        env={"MODELSERVE_POLL_INTERVAL": "0.3"},
    )
    published: dict[str, float] = {"1": 0.0}
    broken = "7"
    stop = threading.Event()
    results: list[tuple[float, float, int, str | None]] = []
    lock = threading.Lock()
    duration = 30.0

    def client() -> None:
        session = requests.Session()
        body = {
            "inputs": [
                {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": [5, 3, 1, 0] * 2}
            ]
        }
        while not stop.is_set():
            started = time.monotonic()
            resp = session.post(server.url + "/v2/models/iris/infer", json=body, timeout=30)
            version = resp.json().get("model_version") if resp.status_code == 200 else None
            with lock:
                results.append((started, time.monotonic(), resp.status_code, version))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    begin = time.monotonic()
    try:
        version = 1
        for i in range(10):
            time.sleep(duration / 11)
            version += 1
            if i == 5:
                publish(root, "iris", int(broken), broken=True)
                assert _wait_for(lambda: _reports_failed(server.url, broken), timeout=15)
                version += 1
            # Stamped before the folder appears, so no worker can serve it "earlier".
            published[str(version)] = time.monotonic()
            publish(root, "iris", version)
        time.sleep(max(0.0, begin + duration - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join()
    final = str(version)
    assert version == 12
    assert results and len(results) > 200
    bad = [r for r in results if r[2] != 200]
    assert not bad, bad[:5]
    for started, finished, _, served in results:
        assert served != broken
        # A request is resolved when the server gets to it, which on a busy machine can be
        # after a version it did not know at its start went live: compare with its answer.
        assert served in published and published[served] <= finished, (served, started)
    assert {r[3] for r in results} >= {"1", final}
    # Every worker ends on the newest version; the broken one is reported in /health.
    assert _wait_for(lambda: _versions_seen(server.url) == {final})
    assert requests.get(server.url + "/health", timeout=5).json()["status"] == "healthy"


def _reports_failed(url: str, version: str) -> bool:
    health = requests.get(url + "/health", timeout=5).json()
    failed = health["models"][0].get("failed_versions", [])
    return health["status"] == "healthy" and any(f["version"] == version for f in failed)


def test_retired_version_is_released_after_its_last_request(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelserve.runtimes.sklearn import SKLearnRuntime

    unloaded = threading.Event()
    monkeypatch.setattr(SKLearnRuntime, "unload", lambda self: unloaded.set())
    service = _service(root)
    old = service.acquire("iris")  # a request in flight on version 1
    write_iris_manifest(root, description="changed")
    service.reload()
    assert service.resolve("iris") is not old
    # However long it takes, the request finishes on its own copy, which is not released.
    assert not unloaded.wait(0.3) and not old.released
    assert old.infer({"input": models.iris().x[:2]})["predict"].shape == (2,)
    old.leave()  # its last request is done: released at once, no grace period
    assert unloaded.wait(2) and old.released


def test_a_released_version_sends_late_requests_to_the_new_one(root: Path) -> None:
    service = _service(root)
    old = service.resolve("iris")  # looked up, not yet held, when the reload lands
    write_iris_manifest(root, description="changed")
    service.reload()
    assert old.released and not old.acquire()
    held = service.acquire("iris")
    try:
        assert held is not old and held.model.manifest.description == "changed"
    finally:
        held.leave()
