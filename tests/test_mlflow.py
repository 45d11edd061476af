"""MLflow model folders served without MLflow: flavors, signature, input example, refusals."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelserve.errors import ModelLoadError
from modelserve.mlflow import load_mlflow_manifest
from modelserve.repository import ModelRepository
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings

from . import mlflow_folders
from . import models
from .runtimes.boosters import assert_same
from .runtimes.boosters import client


@cache
def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    return data.data, np.asarray(data.target)


@cache
def cancer_frame() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_breast_cancer(as_frame=True)
    # XGBoost and LightGBM refuse some punctuation in feature names; notebooks rename.
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    return frame, np.asarray(data.target)


@cache
def iris_pipeline() -> Any:
    x, y = iris_frame()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)


def batch(http: Any, name: str, x: pd.DataFrame) -> tuple[list[Any], list[Any] | None]:
    rows = [dict(zip(x.columns, map(float, row), strict=True)) for row in x.to_numpy()]
    got = http.post(f"/models/{name}/predict_batch", json={"instances": rows})
    assert got.status_code == 200, got.json
    items = got.json["predictions"]
    proba = [item["probability"] for item in items]
    return [item["prediction"] for item in items], None if proba[0] is None else proba


@pytest.mark.parametrize("fmt", ["pickle", "cloudpickle"])
def test_sklearn_folder_answers_what_the_model_answers(tmp_path: Path, fmt: str) -> None:
    x, _ = iris_frame()
    model = iris_pipeline()
    folder = mlflow_folders.save_model(
        tmp_path / "iris-model",
        model,
        serialization_format=fmt,
        inputs=mlflow_folders.column_specs(x),
        outputs=mlflow_folders.output_specs(model.predict(x)),
        example=x.iloc[10:],
    )
    http = client(folder)
    meta = http.get("/models/iris-model").json
    assert meta["runtime"]["runtime"] == "auto"
    assert meta["description"] == "MLflow sklearn model (run 0b5c6d2e4f7a4b1c9d8e7f6a5b4c3d2e)"
    assert meta["inputs"] == [{"name": str(c), "type": "number"} for c in x.columns]
    # The saved input example's first row is the model's example (and its warm-up row).
    assert meta["example"] == dict(zip(x.columns, x.iloc[10].tolist(), strict=True))
    compiled = meta["runtime"]["compiled"]
    assert compiled, meta["runtime"]["reason"]
    assert_same(batch(http, "iris-model", x), model.predict(x), model.predict_proba(x), compiled)


def test_xgboost_folder_answers_what_the_model_answers(tmp_path: Path) -> None:
    import xgboost

    x, y = cancer_frame()
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
    folder = mlflow_folders.save_model(
        tmp_path / "cancer",
        model,
        "xgboost",
        inputs=mlflow_folders.column_specs(x),
        outputs=mlflow_folders.output_specs(model.predict(x)),
        example=x,
    )
    assert (folder / "model.xgb").is_file()
    http = client(folder)
    meta = http.get("/models/cancer").json
    assert meta["runtime"]["runtime"] == "xgboost"
    assert [f["name"] for f in meta["inputs"]] == list(x.columns)
    assert meta["example"] == {c: float(v) for c, v in x.iloc[0].items()}
    assert meta["runtime"]["compiled"], meta["runtime"]["reason"]
    # The booster's own scores, widened as the runtime widens them.
    scores = model.get_booster().inplace_predict(x.to_numpy()).astype(np.float64)
    proba = np.column_stack([1 - scores, scores])
    assert_same(batch(http, "cancer", x), model.predict(x), proba, compiled=True)


def test_lightgbm_booster_and_wrapper_folders(tmp_path: Path) -> None:
    import lightgbm

    x, y = cancer_frame()
    wrapper = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1).fit(x, y)
    booster = lightgbm.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1},
        lightgbm.Dataset(x, y),
        num_boost_round=20,
    )
    root = tmp_path / "models"
    specs = mlflow_folders.column_specs(x)
    mlflow_folders.save_model(root / "wrapped", wrapper, "lightgbm", inputs=specs, example=x)
    mlflow_folders.save_model(root / "native", booster, "lightgbm", inputs=specs, example=x)
    http = client(root)
    wrapped = http.get("/models/wrapped").json["runtime"]
    native = http.get("/models/native").json["runtime"]
    assert wrapped["runtime"] == "auto" and native["runtime"] == "lightgbm"
    assert_same(
        batch(http, "wrapped", x),
        wrapper.predict(x),
        wrapper.predict_proba(x),
        wrapped["compiled"],
    )
    p1 = booster.predict(x)
    proba = np.column_stack([1 - p1, p1])
    labels = np.argmax(proba, axis=1)
    assert_same(batch(http, "native", x), labels, proba, native["compiled"])


def test_signature_types_become_feature_types(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    frame = pd.DataFrame(
        {
            "a": np.array([1.5], dtype=np.float64),
            "b": np.array([2.5], dtype=np.float32),
            "c": np.array([3], dtype=np.int64),
            "d": np.array([4], dtype=np.int32),
            "e": ["x"],
            "f": [True],
        }
    )
    mlflow_folders.save_model(
        folder,
        models.string_labels().model,
        inputs=mlflow_folders.column_specs(frame),
        outputs=[{"type": "string", "required": True}],
        example=frame,
    )
    manifest = load_mlflow_manifest(folder)
    assert manifest.artifact == "model.pkl" and manifest.runtime == "auto"
    assert [(f.name, f.type) for f in manifest.inputs or []] == [
        ("a", "number"),
        ("b", "number"),
        ("c", "integer"),
        ("d", "integer"),
        ("e", "string"),
        ("f", "boolean"),
    ]
    assert [f.sample for f in manifest.inputs or []] == [1.5, 2.5, 3, 4, "x", True]
    # A string output can only be a label.
    assert manifest.task == "classification"


def test_tensor_signature_leaves_inputs_to_the_model(tmp_path: Path) -> None:
    trained = models.forest()
    folder = mlflow_folders.save_model(
        tmp_path / "forest",
        trained.model,
        serialization_format="pickle",
        inputs=mlflow_folders.tensor_spec(trained.x),
        outputs=mlflow_folders.tensor_spec(trained.model.predict(trained.x)),
    )
    manifest = load_mlflow_manifest(folder)
    assert manifest.inputs is None and manifest.task is None
    http = client(folder)
    labels, proba = batch(http, "forest", pd.DataFrame(trained.x, columns=trained.feature_names))
    assert labels == trained.model.predict(trained.x).tolist()
    meta = http.get("/models/forest").json
    assert [f["name"] for f in meta["inputs"]] == list(trained.feature_names)


class Doubler:
    """A stand-in for a user's ``mlflow.pyfunc.PythonModel`` subclass."""

    def predict(self, context: Any, model_input: Any) -> Any:
        return model_input * 2


def test_custom_pyfunc_is_refused_naming_it_and_the_way_out(tmp_path: Path) -> None:
    folder = mlflow_folders.save_model(tmp_path / "custom", Doubler(), "pyfunc")
    with pytest.raises(ModelLoadError) as info:
        load_mlflow_manifest(folder)
    message = info.value.message
    assert "custom python_function model" in message
    assert "python_model python_model.pkl, loaded by mlflow.pyfunc.model" in message
    assert "mlflow.sklearn, mlflow.xgboost or mlflow.lightgbm" in message
    assert "export it to ONNX" in message
    # Served beside a good model, it is reported as failed with the same reason.
    x, _ = iris_frame()
    mlflow_folders.save_model(tmp_path / "iris", iris_pipeline(), example=x)
    service = InferenceService(ServerSettings(profile="testing", model_path=tmp_path))
    service.load()
    entry = service.repository.find_entry("custom")
    assert entry is not None and entry.failures()[0]["error"] == message
    assert service.repository.get("iris").manifest.runtime == "auto"


def test_custom_loader_module_is_named(tmp_path: Path) -> None:
    folder = mlflow_folders.save_model(tmp_path / "m", Doubler(), "pyfunc")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"] = {"loader_module": "my_loader", "data": "weights"}
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ModelLoadError, match="loader_module my_loader"):
        load_mlflow_manifest(folder)


def test_unsupported_column_type_is_named(tmp_path: Path) -> None:
    folder = mlflow_folders.save_model(
        tmp_path / "m",
        models.regressor().model,
        inputs=[{"type": "datetime", "name": "when", "required": True}],
    )
    with pytest.raises(ModelLoadError, match="input 'when' has the MLflow type 'datetime'"):
        load_mlflow_manifest(folder)


def _pin(model_dir: Path, key: str, digest: str) -> None:
    (model_dir / "model.yaml").write_text(yaml.safe_dump({"sha256": {key: digest}}))


def test_versioned_repository_of_mlflow_folders_pins_and_reloads(tmp_path: Path) -> None:
    x, _ = iris_frame()
    model = iris_pipeline()
    root = tmp_path / "models"
    specs = mlflow_folders.column_specs(x)
    v1 = mlflow_folders.save_model(root / "iris" / "1", model, inputs=specs, example=x)
    mlflow_folders.save_model(root / "iris" / "2", model, inputs=specs, example=x.iloc[50:])
    _pin(root / "iris", "1/model.pkl", models.sha256(v1 / "model.pkl"))
    settings = ServerSettings(profile="testing", model_path=root)
    service = InferenceService(settings)
    service.load()
    repo = service.repository
    assert sorted(repo.find_entry("iris").versions) == [1, 2]  # type: ignore[union-attr]
    assert repo.get("iris").version == 2
    assert repo.get("iris", 1).hashes["1/model.pkl"] == models.sha256(v1 / "model.pkl")
    labels, _ = batch(client(root), "iris", x)
    assert labels == model.predict(x).tolist()

    # A wrong pin refuses that version; the other keeps serving.
    _pin(root / "iris", "2/model.pkl", "0" * 64)
    report = service.reload()
    assert "iris/2" in report.failed
    assert repo.get("iris").version == 2  # the ready copy keeps serving the changed version
    fresh = ModelRepository(settings)
    fresh.load_all()
    assert fresh.get("iris").version == 1

    # Editing MLmodel alone (a new input example) reloads the version that holds it.
    _pin(root / "iris", "1/model.pkl", models.sha256(v1 / "model.pkl"))
    service.reload()
    info = json.loads((v1 / "input_example.json").read_text())
    info["data"] = info["data"][1:]
    (v1 / "input_example.json").write_text(json.dumps(info))
    mlmodel = v1 / "MLmodel"
    text = mlmodel.read_text().replace("mlflow_version: 2.17.0", "mlflow_version: 2.17.1")
    mlmodel.write_text(text)
    stat = mlmodel.stat()
    os.utime(mlmodel, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert "iris/1" in service.reload().loaded
    assert service.resolve("iris", 1).signature.example() == dict(
        zip(x.columns, x.iloc[1].tolist(), strict=True)
    )


def test_model_yaml_beside_mlmodel_overrides_it(tmp_path: Path) -> None:
    x, _ = iris_frame()
    folder = mlflow_folders.save_model(
        tmp_path / "iris", iris_pipeline(), inputs=mlflow_folders.column_specs(x)
    )
    (folder / "model.yaml").write_text(yaml.safe_dump({"compile": False, "description": "mine"}))
    http = client(folder)
    meta = http.get("/models/iris").json
    assert meta["description"] == "mine"
    assert meta["runtime"]["compiled"] is False
    assert len(meta["inputs"]) == 4
