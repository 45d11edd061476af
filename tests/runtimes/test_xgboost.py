"""The xgboost runtime: Booster files and pickled wrappers, served as the booster answers."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import xgboost as xgb
import yaml

from modelserve.errors import ModelLoadError
from modelserve.manifest import Manifest
from modelserve.runtimes._boosters import register_booster_converters
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.xgboost import XGBoostRuntime

from .boosters import assert_same
from .boosters import client
from .boosters import dataset
from .boosters import runtime_info
from .boosters import served

#: case -> (dataset, objective)
CASES = {
    "binary": ("breast-cancer", "binary:logistic"),
    "softprob": ("iris", "multi:softprob"),
    "softmax": ("iris", "multi:softmax"),
    "regression": ("diabetes", "reg:squarederror"),
}


@cache
def booster(case: str, names: bool = False) -> xgb.Booster:
    data, objective = CASES[case]
    x, y = dataset(data)
    params: dict[str, Any] = {"objective": objective, "max_depth": 3, "nthread": 1, "seed": 0}
    if objective.startswith("multi:"):
        params["num_class"] = 3
    feature_names = [f"f_{i}" for i in range(x.shape[1])] if names else None
    return xgb.train(params, xgb.DMatrix(x, y, feature_names=feature_names), 20)


def expected(b: xgb.Booster, objective: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """What the booster answers in-process: (labels or values, probabilities or None), with
    the scikit-learn wrappers' rules for labels."""
    if objective == "multi:softmax":
        margin = b.predict(xgb.DMatrix(x), output_margin=True).astype(np.float64)
        proba = np.exp(margin - margin.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        assert np.array_equal(proba.argmax(axis=1), b.predict(xgb.DMatrix(x)))
        return proba.argmax(axis=1), proba
    scores = b.predict(xgb.DMatrix(x)).astype(np.float64)
    if objective == "binary:logistic":
        proba = np.column_stack([1 - scores, scores])
        return (scores > 0.5).astype(np.int64), proba
    if objective == "multi:softprob":
        return scores.argmax(axis=1), scores
    return scores, None


def save(tmp_path: Path, case: str, suffix: str = ".json", names: bool = False) -> xgb.Booster:
    b = booster(case, names)
    folder = tmp_path / case / "1"
    folder.mkdir(parents=True)
    b.save_model(folder / f"model{suffix}")
    return b


@pytest.mark.parametrize(
    ("case", "suffix", "compiled"),
    [
        ("binary", ".json", True),
        ("binary", ".ubj", True),
        ("softprob", ".ubj", True),
        ("regression", ".json", True),
        # onnxmltools' graph gives softmax models' margins, not probabilities: the check sees it.
        ("softmax", ".json", False),
    ],
)
def test_booster_files_serve_what_the_booster_answers(
    tmp_path: Path, case: str, suffix: str, compiled: bool
) -> None:
    b = save(tmp_path, case, suffix)
    http = client(tmp_path)
    info = runtime_info(http, case)
    assert info["runtime"] == "xgboost"
    assert info["compiled"] is compiled, info["reason"]
    assert info["serving"] == ("onnx" if compiled else "xgboost")
    if compiled:
        assert info["reason"] is None
    else:
        # A softmax booster's graph gives margins: its check fails (which rows show it
        # first depends on the verification sample), and it serves natively.
        assert re.search(r"the compiled (probabilities|labels) differ", info["reason"])
    x = dataset(CASES[case][0])[0]
    labels, proba = expected(b, CASES[case][1], x)
    features = [f"x{i}" for i in range(x.shape[1])]
    assert_same(served(http, case, x, features), labels, proba, compiled, case == "regression")


def test_signature_from_the_booster(tmp_path: Path) -> None:
    save(tmp_path, "softprob", names=True)
    body = client(tmp_path).get("/models/softprob").json
    assert [f["name"] for f in body["inputs"]] == ["f_0", "f_1", "f_2", "f_3"]
    assert body["task"] == "classification"
    assert body["classes"] == [0, 1, 2]
    assert body["outputs"] == ["predict", "predict_proba"]
    assert body["runtime"]["objective"] == "multi:softprob"
    assert body["runtime"]["num_classes"] == 3


def test_manifest_names_features_and_classes(tmp_path: Path) -> None:
    b = save(tmp_path, "softprob")
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    manifest = {
        "inputs": [{"name": n, "minimum": 0, "maximum": 10} for n in names],
        "class_names": ["setosa", "versicolor", "virginica"],
    }
    (tmp_path / "softprob" / "model.yaml").write_text(yaml.safe_dump(manifest))
    http = client(tmp_path)
    x = dataset("iris")[0]
    row = dict(zip(names, map(float, x[100]), strict=True))
    body = http.post("/models/softprob/predict", json=row).json
    labels, proba = expected(b, "multi:softprob", x[100:101])
    assert body["prediction"] == int(labels[0]) == 2
    assert body["class_name"] == "virginica"
    assert proba is not None
    np.testing.assert_allclose(body["probability"], proba[0], rtol=0, atol=1e-5)


def test_single_file(tmp_path: Path) -> None:
    b = booster("binary")
    path = tmp_path / "cancer.ubj"
    b.save_model(path)
    http = client(path)
    assert runtime_info(http, "cancer")["compiled"] is True
    x = dataset("breast-cancer")[0][:50]
    labels, proba = expected(b, "binary:logistic", x)
    features = [f"x{i}" for i in range(30)]
    assert_same(served(http, "cancer", x, features), labels, proba, compiled=True)


def load(path: Path, **manifest: object) -> XGBoostRuntime:
    runtime = XGBoostRuntime(ArtifactSet(path, None, Manifest.model_validate(manifest)))
    runtime.load()
    return runtime


def test_manifest_that_contradicts_the_booster_is_refused(tmp_path: Path) -> None:
    booster("binary").save_model(tmp_path / "m.json")
    booster("binary", names=True).save_model(tmp_path / "named.json")
    with pytest.raises(ModelLoadError, match="lists 2 inputs but the booster was trained on 30"):
        load(tmp_path / "m.json", inputs=[{"name": "a"}, {"name": "b"}])
    with pytest.raises(ModelLoadError, match="task: regression"):
        load(tmp_path / "m.json", task="regression")
    with pytest.raises(ModelLoadError, match="3 class_names but the booster has 2 classes"):
        load(tmp_path / "m.json", class_names=["a", "b", "c"])
    renamed = [{"name": f"g_{i}"} for i in range(30)]
    with pytest.raises(ModelLoadError, match="names the booster was trained with"):
        load(tmp_path / "named.json", inputs=renamed)


def test_compiled_graph_is_cached_by_artifact_hash(tmp_path: Path) -> None:
    booster("binary").save_model(tmp_path / "m.json")
    first = load(tmp_path / "m.json")
    assert first.cache_path is not None and first.cache_path.parent.name == ".compiled"
    stamp = first.cache_path.stat().st_mtime_ns
    second = load(tmp_path / "m.json")
    assert second.cache_path == first.cache_path
    assert second.cache_path.stat().st_mtime_ns == stamp  # read back, not converted again
    booster("regression").save_model(tmp_path / "m.json")
    assert load(tmp_path / "m.json").cache_path != first.cache_path


def test_compile_can_be_turned_off(tmp_path: Path) -> None:
    b = booster("binary")
    b.save_model(tmp_path / "m.json")
    runtime = load(tmp_path / "m.json", compile=False)
    assert runtime.describe()["serving"] == "xgboost"
    assert "compile: false" in (runtime.reason or "")
    x = dataset("breast-cancer")[0]
    proba = b.inplace_predict(x).astype(np.float64)
    out = runtime.predict({"input": x})
    assert np.array_equal(out["predict_proba"][:, 1], proba)
    assert np.array_equal(out["predict"], (proba > 0.5).astype(np.int64))


@pytest.mark.parametrize("runtime", ["auto", "sklearn"])
@pytest.mark.parametrize("case", ["classifier", "regressor", "pipeline"])
def test_pickled_wrappers_serve_what_they_answer(tmp_path: Path, runtime: str, case: str) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    register_booster_converters()
    register_booster_converters()  # idempotent
    x, y = dataset("diabetes" if case == "regressor" else "breast-cancer")
    model: Any
    if case == "regressor":
        model = xgb.XGBRegressor(n_estimators=20, max_depth=3)
    else:
        model = xgb.XGBClassifier(n_estimators=20, max_depth=3)
    if case == "pipeline":
        model = make_pipeline(StandardScaler(), model)
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
        assert info["serving"] == "onnx"
    features = [f"x{i}" for i in range(x.shape[1])]
    proba = None if case == "regressor" else model.predict_proba(x)
    got = served(http, "m", x, features)
    assert_same(got, model.predict(x), proba, compiled, regression=case == "regressor")
