"""One record per served version: built once at publication, released after its last request."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
from sklearn.preprocessing import FunctionTransformer

from modelserve.service import InferenceService
from modelserve.settings import ServerSettings

from . import models
from .conftest import SRC
from .conftest import LiveServer

ROOT = SRC.parent


def _slow_iris(root: Path, version: str = "1") -> Path:
    """Iris whose preprocessor sleeps on a marker row (a request we can hold in flight)."""
    trained = models.iris()
    slow = FunctionTransformer(models.slow_on_marker).fit(trained.x)
    return models.write_model(
        root,
        "iris",
        models.Trained(trained.model, trained.x, slow, trained.feature_names),
        version=version,
    )


def _service(root: Path) -> InferenceService:
    service = InferenceService(ServerSettings(profile="testing", model_path=root))
    service.load()
    return service


def test_unchanged_versions_keep_their_record_across_publications(repo: Path) -> None:
    service = _service(repo)
    iris, forest = service.resolve("iris"), service.resolve("forest")
    service.publish()
    assert service.resolve("iris") is iris and service.resolve("forest") is forest
    assert not iris.released and iris.seed is not None and iris.v2 is not None


def test_held_versions_are_released_exactly_once_when_the_last_request_leaves(
    repo: Path,
) -> None:
    service = _service(repo)
    sv = service.resolve("iris")
    released = threading.Event()
    calls: list[int] = []
    original = sv._release

    def counting() -> None:
        calls.append(1)
        original()
        released.set()

    sv._release = counting  # type: ignore[method-assign]
    holders = 64
    assert all(sv.acquire() for _ in range(holders))
    sv.retire()
    assert sv.active == holders and not released.wait(0.1)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: sv.leave(), range(holders)))
    assert released.wait(2) and calls == [1]
    assert not sv.acquire()  # released: a late request must look again


def test_acquire_retries_on_a_version_released_under_it(repo: Path) -> None:
    service = _service(repo)
    old = service.resolve("iris")
    # Publish a new table first, as a reload does, then retire the old record.
    models.write_model(repo, "iris", models.iris(), manifest={"description": "v1 again"})
    service.reload()
    assert old.released
    held = service.acquire("iris")
    try:
        assert held is not old and held.model.manifest.description == "v1 again"
    finally:
        held.leave()


_RELEASED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO modelserve\.serving: "
    r"released model iris version 1$",
    re.M,
)


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_a_version_swapped_out_mid_request_finishes_and_is_released_after_it(
    tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    root = tmp_path / "models"
    _slow_iris(root, "1")
    gate = tmp_path / "gate"
    gate.touch()
    server = live_server(
        [str(root), "--workers", "1", "--poll-interval", "0.2", "--server", server_name],
        env={
            "PYTHONPATH": f"{SRC}:{ROOT}",
            "MODELSERVE_TIMEOUT": "60",
            "MODELSERVE_LOG_FORMAT": "text",  # _RELEASED reads the text lines
            # No batcher: the held request would hold every other request of its batch too.
            "MODELSERVE_MAX_BATCH_SIZE": "1",
            models.SLOW_GATE_ENV: str(gate),
        },
    )
    row = models.features_of(models.iris(), models.iris().x[0])
    slow_row = {**row, "sepal_length": models.SLOW_MARKER}
    answer: dict[str, object] = {}

    def slow_request() -> None:
        resp = requests.post(server.url + "/predict", json=slow_row, timeout=60)
        answer.update(
            status=resp.status_code, body=resp.json(), done=time.time(), took=time.time() - t0
        )

    t0 = time.time()
    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.4)  # the request is inside the model now, held by the gate
    # Version 2 replaces version 1, whose folder goes: version 1 is retired while held.
    _slow_iris(root, "2")
    shutil.rmtree(root / "iris" / "1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = requests.post(server.url + "/predict", json=row, timeout=30).json()
        if body["version"] == "2":
            break
        time.sleep(0.05)
    swapped = time.time()
    assert body["version"] == "2", "version 2 serves while the request on version 1 runs"
    time.sleep(0.5)
    assert thread.is_alive(), answer
    gate.unlink()  # let the request on version 1 finish
    thread.join(30)
    assert answer["status"] == 200, answer
    assert answer["body"]["version"] == "1"  # type: ignore[index]
    done = float(answer["done"])  # type: ignore[arg-type]
    time.sleep(0.5)
    log = server.stop()
    (stamp,) = _RELEASED.findall(log)
    released = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    # Not at the swap (the request still held it), but as the request ended.
    assert released > swapped + 0.4, (released, swapped, done)
    assert done - 0.5 < released < done + 0.5, (released, done)
