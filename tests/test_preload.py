"""Preloading in one process: what the main process offers, what a worker's repository takes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
import yaml

from modelserve import preload
from modelserve.repository import LoadedVersion
from modelserve.repository import ModelRepository
from modelserve.settings import ServerSettings

from . import models


@pytest.fixture(autouse=True)
def _no_offers() -> Iterator[None]:
    preload.clear()
    yield
    preload.clear()


def runtime_of(repo: ModelRepository, name: str) -> object:
    version = repo.get(name)
    assert isinstance(version, LoadedVersion)
    return version.runtime


def test_a_worker_takes_the_preloaded_runtime_of_unchanged_files(
    settings: ServerSettings,
) -> None:
    main = ModelRepository(settings)
    assert sorted(main.preload()) == ["forest/1", "iris/1"]
    assert preload.count() == 2
    offered = {o.artifacts.artifact.parent.parent.name: o.runtime for o in preload._offers}
    worker = ModelRepository(settings)
    worker.load_all()
    assert runtime_of(worker, "iris") is offered["iris"]
    assert runtime_of(worker, "forest") is offered["forest"]
    assert preload.count() == 0  # taken once: a later reload in the worker reads the files
    # What the worker does after taking it (signature, warm-up) ran: it serves.
    assert worker.get("iris").call_ms is not None


def test_changed_files_are_loaded_by_the_worker(settings: ServerSettings, repo: Path) -> None:
    ModelRepository(settings).preload()
    iris = repo / "iris"
    joblib.dump(
        models.iris().model, iris / "1" / "model.joblib", compress=3
    )  # same model, new bytes
    pins = {"1/model.joblib": models.sha256(iris / "1" / "model.joblib")}
    data = yaml.safe_load((iris / "model.yaml").read_text())
    data["sha256"].update(pins)
    (iris / "model.yaml").write_text(yaml.safe_dump(data))
    worker = ModelRepository(settings)
    worker.load_all()
    assert preload.count() == 1  # the iris offer did not match; forest was taken
    assert runtime_of(worker, "iris") is not preload._offers[0].runtime


def test_only_fork_safe_runtimes_are_preloaded(tmp_path: Path) -> None:
    root = tmp_path / "models"
    models.write_model(root, "native", models.iris())
    models.write_model(root, "compiled", models.iris(), manifest={"runtime": "auto"})
    models.write_model(root, "latest", models.iris(), version="1")
    models.write_model(root, "latest", models.iris(), version="2")
    manifest = root / "latest" / "model.yaml"
    manifest.write_text(manifest.read_text() + "version_policy: {latest: 1}\n")
    settings = ServerSettings(profile="testing", model_path=root)
    assert sorted(ModelRepository(settings).preload()) == ["latest/2", "native/1"]


def test_a_broken_artifact_is_left_for_the_worker_to_report(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_dir = models.write_model(root, "iris", models.iris(), pin=False)
    (model_dir / "1" / "model.joblib").write_bytes(b"not a pickle")
    settings = ServerSettings(profile="testing", model_path=root)
    assert ModelRepository(settings).preload() == []
    worker = ModelRepository(settings)
    worker.load_all()
    entry = worker.find_entry("iris")
    assert entry is not None and entry.default is None
    assert "Cannot load model.joblib" in str(entry.failures())


def test_freeze_moves_what_exists_out_of_the_collector() -> None:
    try:
        preload.freeze()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def test_the_registry_knows_which_runtimes_are_fork_safe_without_importing_them() -> None:
    from modelserve.runtimes import registry

    for name in registry.runtime_names():
        assert registry.is_fork_safe(name) is registry.get_runtime_class(name).fork_safe, name


def test_preloading_never_imports_onnxruntime_or_torch_into_the_main_process(
    tmp_path: Path,
) -> None:
    """A worker forked from a process that imported them hangs at exit (their thread pools)."""
    import subprocess
    import sys

    root = tmp_path / "models"
    models.write_model(root, "native", models.iris())
    models.write_model(root, "compiled", models.iris(), manifest={"runtime": "auto"})
    models.write_model(root, "graph", models.iris(), manifest={"runtime": "onnx"})
    code = (
        "import sys\n"
        "from modelserve.repository import ModelRepository\n"
        "from modelserve.settings import ServerSettings\n"
        f"s = ServerSettings(profile='testing', model_path={str(root)!r})\n"
        "print(sorted(ModelRepository(s).preload()))\n"
        "print(sorted(m for m in ('onnxruntime', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out == ["['native/1']", "[]"]
