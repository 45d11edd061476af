"""Safe loading: unpinned pickles refused in production, no path leaves the repository."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve import trust
from modelserve.errors import ModelLoadError
from modelserve.repository import FailedVersion
from modelserve.repository import LoadedVersion
from modelserve.repository import ModelRepository
from modelserve.settings import ServerSettings

from . import models


class Evil:
    """A pickle that writes a marker file when it is loaded (the classic RCE payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def write_evil(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Evil(marker)))


def repository(root: Path, **settings: Any) -> ModelRepository:
    settings.setdefault("profile", "production")
    repo = ModelRepository(ServerSettings(model_path=root, **settings))
    repo.load_all()
    return repo


def only_version(repo: ModelRepository, name: str) -> LoadedVersion | FailedVersion:
    entry = repo.find_entry(name)
    assert entry is not None
    (mv,) = entry.versions.values()
    return mv


@pytest.mark.parametrize(
    ("name", "runtime", "expected"),
    [
        ("m.pkl", "auto", True),
        ("m.joblib", "sklearn", True),
        ("m.pickle", "onnx", True),  # a pickle suffix unpickles whatever the manifest says
        ("m.bin", "sklearn", True),  # joblib reads anything the sklearn runtime is given
        ("m.skops", "sklearn", False),
        ("m.onnx", "onnx", False),
        ("m.pt", "torch", False),
        ("m.json", "xgboost", False),
    ],
)
def test_unpickles(name: str, runtime: str, expected: bool) -> None:
    assert trust.unpickles(Path(name), runtime) is expected


def test_unpinned_pickle_never_runs_in_production(tmp_path: Path) -> None:
    root, marker = tmp_path / "models", tmp_path / "pwned"
    models.write_model(root, "iris", models.iris())
    write_evil(root / "evil" / "1" / "model.pkl", marker)
    repo = repository(root)
    mv = only_version(repo, "evil")
    assert isinstance(mv, FailedVersion)
    assert "Refusing to load 1/model.pkl" in mv.error
    assert f"modelserve validate {root / 'evil'} --write-manifest" in mv.error
    assert "--trust-pickles" in mv.error and "MODELSERVE_TRUST_PICKLES=true" in mv.error
    assert "trust: true" in mv.error
    assert not marker.exists()
    assert isinstance(only_version(repo, "iris"), LoadedVersion)  # pinned: served
    # The master's preflight refuses it the same way, without loading anything.
    checks = {c.name: c.error for c in ModelRepository(repo.settings).check()}
    assert checks["iris"] is None and "Refusing to load" in (checks["evil"] or "")
    assert not marker.exists()


@pytest.mark.parametrize(
    "how",
    [{"trust_pickles": True}, {"profile": "development"}, {"profile": "testing"}, "manifest"],
)
def test_trusted_or_outside_production_the_pickle_loads(
    tmp_path: Path, how: dict[str, Any] | str, caplog: pytest.LogCaptureFixture
) -> None:
    root, marker = tmp_path / "models", tmp_path / "pwned"
    write_evil(root / "evil" / "1" / "model.pkl", marker)
    if how == "manifest":
        (root / "evil" / "model.yaml").write_text("trust: true\n")
        settings: dict[str, Any] = {}
    else:
        assert isinstance(how, dict)
        settings = how
    with caplog.at_level(logging.WARNING, logger="modelserve.trust"):
        mv = only_version(repository(root, **settings), "evil")
    assert marker.exists()  # it was unpickled (and then is no estimator)
    assert isinstance(mv, FailedVersion) and "Refusing" not in mv.error
    warned = any("production profile refuses it" in r.getMessage() for r in caplog.records)
    assert warned is (settings.get("profile") in ("development", "testing"))


def test_a_pinned_pickle_loads_in_production(tmp_path: Path) -> None:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris())  # pins model.joblib and scaler.joblib
    assert isinstance(only_version(repository(root), "iris"), LoadedVersion)


def test_a_pinned_artifact_with_an_unpinned_preprocessor_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_dir = models.write_model(root, "iris", models.iris())
    manifest = yaml.safe_load((model_dir / "model.yaml").read_text())
    del manifest["sha256"]["1/scaler.joblib"]
    (model_dir / "model.yaml").write_text(yaml.safe_dump(manifest))
    mv = only_version(repository(root), "iris")
    assert isinstance(mv, FailedVersion) and "Refusing to load 1/scaler.joblib" in mv.error


def test_a_hash_mismatch_is_refused_before_unpickling(tmp_path: Path) -> None:
    root, marker = tmp_path / "models", tmp_path / "pwned"
    model_dir = models.write_model(root, "iris", models.iris())
    write_evil(model_dir / "1" / "model.joblib", marker)  # swapped after pinning
    for settings in ({}, {"trust_pickles": True}, {"profile": "development"}):
        mv = only_version(repository(root, **settings), "iris")
        assert isinstance(mv, FailedVersion) and "sha256 mismatch" in mv.error
    assert not marker.exists()


def test_single_file_pins_come_from_the_manifest_beside_it(tmp_path: Path) -> None:
    trained = models.iris()
    import joblib

    joblib.dump(trained.model, tmp_path / "trained_model.pkl")
    joblib.dump(trained.preprocessor, tmp_path / "scaler.pkl")
    settings = {"preprocessor": tmp_path / "scaler.pkl"}
    mv = only_version(repository(tmp_path / "trained_model.pkl", **settings), "trained_model")
    assert isinstance(mv, FailedVersion)
    assert "Refusing to load trained_model.pkl, scaler.pkl" in mv.error
    assert (
        f"modelserve validate {tmp_path / 'trained_model.pkl'} "
        f"--preprocessor {tmp_path / 'scaler.pkl'} --write-manifest"
    ) in mv.error
    # What `modelserve validate FILE --write-manifest` writes beside the file:
    pins = {name: models.sha256(tmp_path / name) for name in ("trained_model.pkl", "scaler.pkl")}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump({"sha256": pins}))
    mv = only_version(repository(tmp_path / "trained_model.pkl", **settings), "trained_model")
    assert isinstance(mv, LoadedVersion)


@pytest.mark.parametrize(
    "value", ["../../elsewhere/model.joblib", "/etc/passwd", "sub/../../x.pkl", "C:\\m.pkl"]
)
def test_manifest_paths_may_not_leave_the_version_folder(tmp_path: Path, value: str) -> None:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris(), manifest={"artifact": value})
    mv = only_version(repository(root, trust_pickles=True), "iris")
    assert isinstance(mv, FailedVersion)
    assert f"artifact: {value!r}" in mv.error and "without '..'" in mv.error


def test_a_preprocessor_path_may_not_leave_either(tmp_path: Path) -> None:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris(), manifest={"preprocessor": "../scaler.joblib"})
    mv = only_version(repository(root, trust_pickles=True), "iris")
    assert isinstance(mv, FailedVersion) and "preprocessor: '../scaler.joblib'" in mv.error


def test_symlinks_out_of_the_repository_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "outside"
    models.write_model(outside, "iris", models.iris())
    models.write_model(root, "iris", models.iris())
    # A file symlinked out of a version folder (its sha256 even matches its pin).
    artifact = root / "iris" / "1" / "model.joblib"
    artifact.unlink()
    artifact.symlink_to(outside / "iris" / "1" / "model.joblib")
    # A whole version folder symlinked out.
    (root / "forest").mkdir()
    (root / "forest" / "model.yaml").write_text(
        "artifact: model.joblib\npreprocessor: scaler.joblib\n"
    )
    (root / "forest" / "1").symlink_to(outside / "iris" / "1", target_is_directory=True)
    repo = repository(root, trust_pickles=True)
    for name in ("iris", "forest"):
        mv = only_version(repo, name)
        assert isinstance(mv, FailedVersion), name
        assert "outside the model repository" in mv.error and str(outside) in mv.error


def test_symlinks_inside_the_repository_are_fine(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_dir = models.write_model(root, "iris", models.iris())
    shared = root / "shared"
    shared.mkdir()
    os.replace(model_dir / "1" / "model.joblib", shared / "model.joblib")
    (model_dir / "1" / "model.joblib").symlink_to(shared / "model.joblib")
    assert isinstance(only_version(repository(root), "iris"), LoadedVersion)


def test_a_repository_reached_through_a_symlink_is_inside_itself(tmp_path: Path) -> None:
    models.write_model(tmp_path / "real", "iris", models.iris())
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert isinstance(only_version(repository(tmp_path / "link"), "iris"), LoadedVersion)


def test_check_inside_and_relative_unit(tmp_path: Path) -> None:
    trust.check_inside(tmp_path / "a" / "b", tmp_path.resolve())
    with pytest.raises(ModelLoadError, match="outside the model repository"):
        trust.check_inside(tmp_path / ".." / "x", tmp_path.resolve())
    trust.check_relative("sub/model.joblib", "artifact", tmp_path)
    with pytest.raises(ModelLoadError, match="leaves that folder"):
        trust.check_relative("..\\model.joblib", "artifact", tmp_path)
