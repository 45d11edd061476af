"""The lightgbm runtime: Booster files and pickled wrappers, served as the booster answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pytest
import yaml

from modelserve.errors import ModelLoadError
from modelserve.manifest import Manifest
from modelserve.runtimes._boosters import register_booster_converters
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.lightgbm import LightGBMRuntime

from .boosters import assert_same
from .boosters import client
from .boosters import dataset
from .boosters import runtime_info
from .boosters import served

#: case -> (dataset, objective)
CASES = {
    "binary": ("breast-cancer", "binary"),
    "multiclass": ("iris", "multiclass"),
    "regression": ("diabetes", "regression"),
}


@cache
def booster(case: str, names: bool = False) -> lgb.Booster:
    data, objective = CASES[case]
    x, y = dataset(data)
    params: dict[str, Any] = {
        "objective": objective,
        "num_leaves": 7,
        "num_threads": 1,
        "verbose": -1,
        "seed": 0,
    }
    if objective == "multiclass":
        params["num_class"] = 3
    feature_name = [f"f_{i}" for i in range(x.shape[1])] if names else "auto"
    return lgb.train(params, lgb.Dataset(x, y, feature_name=feature_name), 20)


def expected(b: lgb.Booster, case: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """What the booster answers in-process, with LGBMClassifier's rule for labels."""
    scores = np.asarray(b.predict(x), dtype=np.float64)
    if case == "regression":
        return scores, None
    proba = np.column_stack([1 - scores, scores]) if scores.ndim == 1 else scores
    return proba.argmax(axis=1), proba


@pytest.mark.parametrize("case", sorted(CASES))
def test_booster_files_serve_what_the_booster_answers(tmp_path: Path, case: str) -> None:
    b = booster(case)
    folder = tmp_path / case / "1"
    folder.mkdir(parents=True)
    b.save_model(folder / "model.txt")
    http = client(tmp_path)
    info = runtime_info(http, case)
    assert info["runtime"] == "lightgbm"
    assert info["compiled"] is True, info["reason"]
    assert info["serving"] == "onnx" and info["reason"] is None
    x = dataset(CASES[case][0])[0]
    labels, proba = expected(b, case, x)
    features = [f"x{i}" for i in range(x.shape[1])]  # LightGBM's Column_i are not names
    assert_same(served(http, case, x, features), labels, proba, True, case == "regression")


def load(path: Path, **manifest: object) -> LightGBMRuntime:
    runtime = LightGBMRuntime(ArtifactSet(path, None, Manifest.model_validate(manifest)))
    runtime.load()
    return runtime


def test_native_predict_is_the_boosters_and_thread_safe(tmp_path: Path) -> None:
    b = booster("multiclass")
    b.save_model(tmp_path / "m.txt")
    runtime = load(tmp_path / "m.txt", compile=False)
    assert runtime.describe()["serving"] == "lightgbm" and runtime.compiled is False
    x = dataset("iris")[0]
    labels, proba = expected(b, "multiclass", x)
    chunks = np.array_split(np.arange(len(x)), 15)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda rows: runtime.predict({"input": x[rows]}), chunks * 4))
    for rows, out in zip(chunks * 4, outs, strict=True):
        assert np.array_equal(out["predict"], labels[rows])
        assert np.array_equal(out["predict_proba"], proba[rows])


def test_signature_from_the_booster_and_the_manifest(tmp_path: Path) -> None:
    booster("binary", names=True).save_model(tmp_path / "named.txt")
    booster("binary").save_model(tmp_path / "m.txt")
    sig = load(tmp_path / "named.txt").signature()
    assert sig.feature_names == [f"f_{i}" for i in range(30)]
    assert sig.task == "classification" and sig.classes == (0, 1) and sig.has_proba
    sig = load(tmp_path / "m.txt", class_names=["malignant", "benign"]).signature()
    assert sig.feature_names == [f"x{i}" for i in range(30)]
    assert sig.class_names == ("malignant", "benign")
    with pytest.raises(ModelLoadError, match="lists 1 inputs but the booster was trained on 30"):
        load(tmp_path / "m.txt", inputs=[{"name": "a"}])
    with pytest.raises(ModelLoadError, match="objective 'binary' is classification"):
        load(tmp_path / "m.txt", task="regression")


def test_custom_objective_serves_raw_scores_as_regression(tmp_path: Path) -> None:
    x, y = dataset("diabetes")

    def squared(preds: np.ndarray, train: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        return preds - train.get_label(), np.ones_like(preds)

    params = {"objective": squared, "num_leaves": 7, "verbose": -1, "num_threads": 1}
    b = lgb.train(params, lgb.Dataset(x, y, init_score=np.full(len(y), y.mean())), 10)
    b.save_model(tmp_path / "m.txt")
    runtime = load(tmp_path / "m.txt")
    assert runtime.signature().task == "regression"
    out = runtime.predict({"input": x})["predict"]
    atol = 1e-5 * float(np.max(np.abs(b.predict(x))))
    np.testing.assert_allclose(out, b.predict(x), rtol=0, atol=max(atol, 1e-5))
    with pytest.raises(ModelLoadError, match="cannot be turned into classes"):
        load(tmp_path / "m.txt", task="classification")


@pytest.mark.parametrize("runtime", ["auto", "sklearn"])
@pytest.mark.parametrize("case", ["classifier", "multiclass", "regressor"])
def test_pickled_wrappers_serve_what_they_answer(tmp_path: Path, runtime: str, case: str) -> None:
    register_booster_converters()
    data = {"classifier": "breast-cancer", "multiclass": "iris", "regressor": "diabetes"}[case]
    x, y = dataset(data)
    model: Any
    if case == "regressor":
        model = lgb.LGBMRegressor(n_estimators=20, num_leaves=7, verbose=-1)
    else:
        model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1)
    model.fit(x, y)
    folder = tmp_path / "m" / "1"
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump({"runtime": runtime}))
    http = client(tmp_path)
    info = runtime_info(http, "m")
    compiled = runtime == "auto"
    if compiled:
        assert info["compiled"] is True, info["reason"]
    features = [f"x{i}" for i in range(x.shape[1])]
    proba = None if case == "regressor" else model.predict_proba(x)
    got = served(http, "m", x, features)
    assert_same(got, model.predict(x), proba, compiled, regression=case == "regressor")
