"""Discovery modes, versions, hash pinning and load failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest

from modelserve.errors import ModelLoadError
from modelserve.errors import ModelNotFound
from modelserve.errors import ModelNotReady
from modelserve.repository import FailedVersion
from modelserve.repository import ModelRepository
from modelserve.settings import ServerSettings

from . import models


def repository(path: Path, **kwargs: object) -> ModelRepository:
    repo = ModelRepository(ServerSettings(profile="testing", model_path=path, **kwargs))
    repo.load_all()
    return repo


def test_repository_folder_finds_every_model(repo: Path) -> None:
    r = repository(repo)
    assert r.names() == ["forest", "iris"]
    assert r.get("iris").ready


def test_single_model_folder(repo: Path) -> None:
    r = repository(repo / "iris")
    assert r.names() == ["iris"]
    assert r.default_name() == "iris"


def test_single_file_with_separate_preprocessor(tmp_path: Path) -> None:
    trained = models.iris()
    joblib.dump(trained.model, tmp_path / "trained_model.pkl")
    joblib.dump(trained.preprocessor, tmp_path / "scaler.pkl")
    r = repository(tmp_path / "trained_model.pkl", preprocessor=tmp_path / "scaler.pkl")
    mv = r.get("trained_model")
    assert mv.version == 1
    assert mv.signature is not None
    assert mv.signature.feature_names == ["x0", "x1", "x2", "x3"]
    assert mv.runtime is not None
    out = mv.runtime.predict({"input": trained.x[:5]})
    labels, proba = trained.expected(trained.x[:5])
    assert out["predict"].tolist() == labels.tolist()
    # Served compiled (runtime auto): equal up to float round-off.
    np.testing.assert_allclose(out["predict_proba"], proba, rtol=1e-9, atol=1e-12)


def test_preprocessor_only_in_single_file_mode(repo: Path, tmp_path: Path) -> None:
    joblib.dump(models.iris().preprocessor, tmp_path / "scaler.pkl")
    with pytest.raises(ModelLoadError, match="single model file"):
        repository(repo, preprocessor=tmp_path / "scaler.pkl")


def test_highest_ready_version_is_default_and_failures_are_kept(tmp_path: Path) -> None:
    trained = models.iris()
    for version in ("1", "2", "10"):
        models.write_model(tmp_path, "iris", trained, version=version)
    (tmp_path / "iris" / "10" / "model.joblib").write_bytes(b"corrupt")
    r = repository(tmp_path)
    entry = r.find_entry("iris")
    assert entry is not None
    assert entry.default is not None and entry.default.version == 2
    assert not entry.versions[10].ready
    assert "sha256 mismatch for 10/model.joblib" in (entry.versions[10].error or "")
    with pytest.raises(ModelNotReady, match="sha256 mismatch"):
        r.get("iris", 10)
    with pytest.raises(ModelNotFound):
        r.get("iris", 3)
    with pytest.raises(ModelNotFound):
        r.get("nope")


def test_hash_mismatch_refuses_to_load_with_clear_message(tmp_path: Path) -> None:
    model_dir = models.write_model(tmp_path, "iris", models.iris())
    joblib.dump(models.forest().model, model_dir / "1" / "model.joblib")
    r = repository(tmp_path)
    mv = r.find_entry("iris").versions[1]  # type: ignore[union-attr]
    assert isinstance(mv, FailedVersion) and mv.state == "failed"
    assert "sha256 mismatch for 1/model.joblib" in mv.error
    assert "refusing to load" in mv.error


def test_require_sha256_refuses_unpinned_artifacts(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris(), pin=False)
    assert repository(tmp_path).get("iris").ready
    failed = repository(tmp_path, require_sha256=True).find_entry("iris").versions[1]  # type: ignore[union-attr]
    assert not failed.ready
    assert "MODELSERVE_REQUIRE_SHA256" in (failed.error or "")


def test_version_manifest_overrides_model_manifest(tmp_path: Path) -> None:
    trained = models.iris()
    model_dir = models.write_model(tmp_path, "iris", trained, pin=False)
    (model_dir / "1" / "model.yaml").write_text(
        "description: version one\nsha256:\n  model.joblib: "
        + models.sha256(model_dir / "1" / "model.joblib")
        + "\n"
    )
    mv = repository(tmp_path, require_sha256=False).get("iris")
    assert mv.manifest.description == "version one"
    assert "1/model.joblib" in mv.manifest.sha256


def test_invalid_manifest_lists_every_problem(tmp_path: Path) -> None:
    model_dir = models.write_model(tmp_path, "iris", models.iris())
    (model_dir / "model.yaml").write_text(
        "runtime: sklearn\ntask: clustering\nsha256: {x: nothex}\ncolour: red\n"
    )
    error = repository(tmp_path).find_entry("iris").versions[1].error or ""  # type: ignore[union-attr]
    assert "task" in error and "colour" in error and "sha256" in error


def test_several_artifacts_need_a_name(tmp_path: Path) -> None:
    vdir = tmp_path / "m" / "1"
    vdir.mkdir(parents=True)
    joblib.dump(models.iris().model, vdir / "a.joblib")
    joblib.dump(models.iris().model, vdir / "b.joblib")
    error = repository(tmp_path).find_entry("m").versions[1].error or ""  # type: ignore[union-attr]
    assert "Several artifacts" in error and "a.joblib, b.joblib" in error


def test_manifest_inputs_must_match_the_model(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris(), manifest={"inputs": [{"name": "a"}]})
    error = repository(tmp_path).find_entry("iris").versions[1].error or ""  # type: ignore[union-attr]
    assert "lists 1 inputs but the model was fitted on 4 features" in error


def test_empty_or_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="No models found"):
        repository(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        repository(tmp_path / "missing")


def test_check_verifies_without_loading(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris())
    shutil.copytree(tmp_path / "iris", tmp_path / "copy")
    (tmp_path / "copy" / "1" / "scaler.joblib").write_bytes(b"x")
    checked = {
        mv.name: mv
        for mv in ModelRepository(ServerSettings(profile="testing", model_path=tmp_path)).check()
    }
    assert checked["iris"].error is None
    assert "sha256 mismatch" in (checked["copy"].error or "")
