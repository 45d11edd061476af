"""runtime: auto — compiled to ONNX when the answers match scikit-learn, else served as is."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.datasets import load_iris

from modelserve.app import create_app
from modelserve.manifest import Manifest
from modelserve.runtimes import auto
from modelserve.runtimes.auto import AutoRuntime
from modelserve.runtimes.base import ArtifactSet
from modelserve.settings import ServerSettings

from .. import models


def load(path: Path, pre: Path | None = None, **manifest: object) -> AutoRuntime:
    runtime = AutoRuntime(ArtifactSet(path, pre, Manifest.model_validate(manifest)))
    runtime.load()
    return runtime


@pytest.mark.parametrize(
    ("name", "data"), [("iris", load_iris), ("breast-cancer", load_breast_cancer)]
)
def test_demo_models_compile_and_agree_with_sklearn(
    demo_repo: Path, name: str, data: object
) -> None:
    folder = demo_repo / name / "1"
    pre = folder / "scaler.joblib"
    runtime = load(folder / "model.joblib", pre if pre.exists() else None)
    assert runtime.compiled, runtime.reason
    x = data().data  # type: ignore[operator]
    model = joblib.load(folder / "model.joblib")
    z = joblib.load(pre).transform(x) if pre.exists() else x
    out = runtime.predict({"input": x})
    assert np.array_equal(out["predict"], model.predict(z))
    assert out["predict"].dtype == model.classes_.dtype
    assert out["predict_proba"].dtype == np.float64
    np.testing.assert_allclose(
        out["predict_proba"], model.predict_proba(z), atol=auto.PROBA_TOLERANCE
    )


def test_regressor_compiles(tmp_path: Path) -> None:
    trained = models.regressor()
    joblib.dump(trained.model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    out = runtime.predict({"input": trained.x})
    np.testing.assert_allclose(out["predict"], trained.model.predict(trained.x), rtol=1e-9)


def test_custom_transformer_falls_back_with_the_reason(tmp_path: Path) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    trained = models.iris()
    pipe = make_pipeline(FunctionTransformer(models.log_scale), trained.model)
    pipe.fit(
        trained.preprocessor.transform(trained.x),
        trained.model.predict(trained.preprocessor.transform(trained.x)),
    )
    model_dir = tmp_path / "custom" / "1"
    model_dir.mkdir(parents=True)
    joblib.dump(pipe, model_dir / "model.joblib")
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path))
    runtime = app.test_client().get("/models/custom").json["runtime"]
    assert runtime["runtime"] == "auto" and runtime["serving"] == "sklearn"
    assert runtime["compiled"] is False
    assert "skl2onnx cannot convert it" in runtime["reason"] or "differ" in runtime["reason"]
    row = {f"x{i}": v for i, v in enumerate(trained.x[0])}
    assert app.test_client().post("/predict", json=row).status_code == 200


def test_failed_check_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "PROBA_TOLERANCE", -1.0)  # nothing can agree within it
    joblib.dump(models.regressor().model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert not runtime.compiled
    assert "predictions differ" in (runtime.reason or "")


def test_dataframe_fitted_model_compiles_like_its_numpy_twin(tmp_path: Path) -> None:
    """Fitted on a DataFrame only to check names: compiled, fed the same float array."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    assert runtime.describe()["serving"] == "onnx"
    x = np.array([[0.5, 1.0], [2.5, 0.0]])
    out = runtime.predict({"input": x})
    assert np.array_equal(out["predict"], model.predict(pd.DataFrame(x, columns=["a", "b"])))


def test_compiled_graph_is_cached_by_artifact_hash(tmp_path: Path) -> None:
    joblib.dump(models.forest().model, tmp_path / "m.joblib")
    first = load(tmp_path / "m.joblib")
    assert first.cache_path is not None and first.cache_path.parent.name == ".compiled"
    stamp = first.cache_path.stat().st_mtime_ns
    second = load(tmp_path / "m.joblib")
    assert second.cache_path == first.cache_path
    assert second.cache_path.stat().st_mtime_ns == stamp  # read back, not converted again
    joblib.dump(models.regressor().model, tmp_path / "m.joblib")
    third = load(tmp_path / "m.joblib")
    assert third.cache_path != first.cache_path


def test_compiled_answers_keep_their_json_types(demo_repo: Path) -> None:
    app = create_app(ServerSettings(profile="testing", model_path=demo_repo, default_model="iris"))
    body = (
        app.test_client()
        .post(
            "/predict",
            json={"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8},
        )
        .json
    )
    assert type(body["prediction"]) is int
    assert all(type(p) is float for p in body["probability"])
    assert app.test_client().get("/models/iris").json["runtime"]["serving"] == "onnx"


def tutorial_expected(rows: list[dict[str, object]]) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    model = models.tutorial().model
    frame = pd.DataFrame(rows)
    return model.predict(frame), model.predict_proba(frame)


def test_tutorial_mixed_pipeline_compiles_with_one_input_per_column(tmp_path: Path) -> None:
    trained = models.tutorial()
    joblib.dump(trained.model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    graph_inputs = runtime._impl.describe()["inputs"]
    assert [(i["name"], i["datatype"]) for i in graph_inputs] == [
        ("feature1", "FP64"),
        ("feature2", "FP64"),
        ("feature3", "BYTES"),
    ]
    rows = models.tutorial_frame(200, seed=7).to_dict("records")
    table = np.array([list(r.values()) for r in rows], dtype=object)
    out = runtime.predict({"input": table})
    labels, proba = tutorial_expected(rows)
    assert np.array_equal(out["predict"], labels)
    np.testing.assert_allclose(out["predict_proba"], proba, atol=auto.PROBA_TOLERANCE)


def test_tutorial_mixed_pipeline_serves_with_no_manifest(tmp_path: Path) -> None:
    """The tutorial's own model: loads, is compiled, answers what the model answers."""
    joblib.dump(models.tutorial().model, tmp_path / "model.pkl")
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path / "model.pkl"))
    client = app.test_client()
    (info,) = client.get("/models").json["models"]
    meta = client.get(f"/models/{info['name']}").json
    assert meta["runtime"]["serving"] == "onnx" and meta["runtime"]["compiled"] is True
    assert meta["inputs"][2] == {"name": "feature3", "type": "string", "enum": ["A", "B", "C"]}
    rows = models.tutorial_frame(12, seed=3).to_dict("records")
    labels, proba = tutorial_expected(rows)
    same_text = 0
    for row, label, p in zip(rows, labels, proba, strict=True):
        resp = client.post("/predict", json=row)
        assert resp.status_code == 200, resp.json
        assert resp.json["prediction"] == label
        got = resp.json["probability"]
        np.testing.assert_allclose(got, p, atol=auto.PROBA_TOLERANCE)
        # Written at float32 precision: 0.9, never 0.8999999761581421 (nor below zero).
        assert all(v == float(str(np.float32(v))) and 0.0 <= v <= 1.0 for v in got)
        if (np.float32(got) == np.float32(p)).all():
            # Where float32 reached scikit-learn's value, the text is scikit-learn's own.
            assert orjson.dumps(p.tolist()) in resp.data
            same_text += 1
    assert same_text >= 3
    batch = client.post("/predict_batch", json={"instances": rows})
    assert [item["prediction"] for item in batch.json["predictions"]] == labels.tolist()
    np.testing.assert_allclose(
        [item["probability"] for item in batch.json["predictions"]], proba, atol=1e-5
    )
    bad = client.post("/predict", json={**rows[0], "feature3": "D"})
    assert bad.status_code == 400
    assert bad.json["details"] == [
        {"path": "feature3", "message": 'is "D", not one of "A", "B", "C"'}
    ]


def test_frame_fitted_scaler_as_preprocessor_compiles(tmp_path: Path) -> None:
    """`modelserve serve model.pkl --preprocessor scaler.pkl` with a DataFrame-fitted scaler."""
    import pandas as pd

    trained = models.frame_scaler()
    joblib.dump(trained.model, tmp_path / "model.pkl")
    joblib.dump(trained.preprocessor, tmp_path / "scaler.pkl")
    settings = ServerSettings(
        profile="testing", model_path=tmp_path / "model.pkl", preprocessor=tmp_path / "scaler.pkl"
    )
    client = create_app(settings).test_client()
    (info,) = client.get("/models").json["models"]
    runtime = client.get(f"/models/{info['name']}").json["runtime"]
    assert runtime["serving"] == "onnx", runtime["reason"]
    x = trained.x[::10]
    rows = [models.features_of(trained, row) for row in x]
    z = trained.preprocessor.transform(pd.DataFrame(x, columns=list(models.IRIS_FEATURES)))
    body = client.post("/predict_batch", json={"instances": rows}).json
    assert [item["prediction"] for item in body["predictions"]] == trained.model.predict(z).tolist()
    assert [item["probability"] for item in body["predictions"]] == (
        trained.model.predict_proba(z).tolist()
    )


def test_custom_code_on_a_dataframe_serves_with_sklearn_and_says_why(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.preprocessing import StandardScaler

    frame = models.tutorial_frame(80)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["feature1", "feature2"]),
                ("cat", FunctionTransformer(models.letters_to_numbers), ["feature3"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, frame["feature3"] == "B")
    joblib.dump(model, tmp_path / "m.joblib")
    inputs = [{"name": "feature1"}, {"name": "feature2"}, {"name": "feature3", "type": "string"}]
    runtime = load(tmp_path / "m.joblib", inputs=inputs)
    assert not runtime.compiled
    assert runtime.describe()["serving"] == "sklearn"
    assert "skl2onnx cannot convert it" in (runtime.reason or "")
    row = {"feature1": 4.0, "feature2": 0.5, "feature3": "C"}
    out = runtime.predict({"input": np.array([list(row.values())], dtype=object)})
    assert out["predict"].tolist() == model.predict(pd_frame([row])).tolist()


def pd_frame(rows: list[dict[str, object]]) -> object:
    import pandas as pd

    return pd.DataFrame(rows)


def test_linear_svc_compiles_and_serves_no_probabilities(tmp_path: Path) -> None:
    """Its graph's second output holds raw scores: never served as probabilities."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(x, y)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    assert not runtime.signature().has_proba
    out = runtime.predict({"input": x})
    assert set(out) == {"predict"}
    assert np.array_equal(out["predict"], model.predict(x))
    assert set(runtime.predict({"input": x}, ["predict", "predict_proba"])) == {"predict"}


def test_svr_compiles_with_a_float32_cast_within_the_tolerance(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    x, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), SVR()).fit(x, y)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    want = model.predict(x)
    got = runtime.predict({"input": x})["predict"]
    assert not np.array_equal(got, want)  # computed in float32: not scikit-learn's bits
    atol = auto.PROBA_TOLERANCE * float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def test_hist_gradient_boosting_compiles_and_routes_missing_values(tmp_path: Path) -> None:
    """Fitted with missing values: the graph sends NaN where each split learned to."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = load_breast_cancer(return_X_y=True)
    holes = np.where(np.random.default_rng(0).random(x.shape) < 0.1, np.nan, x)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(holes, y)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    out = runtime.predict({"input": holes})
    assert np.array_equal(out["predict"], model.predict(holes))
    np.testing.assert_allclose(
        out["predict_proba"], model.predict_proba(holes), rtol=0, atol=auto.PROBA_TOLERANCE
    )


def test_imputer_pipeline_compiles_and_fills_missing_values(tmp_path: Path) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    holes = np.where(np.random.default_rng(1).random(x.shape) < 0.1, np.nan, x)
    model = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=2000)
    ).fit(holes, y)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    out = runtime.predict({"input": holes})
    assert np.array_equal(out["predict"], model.predict(holes))
    np.testing.assert_allclose(
        out["predict_proba"], model.predict_proba(holes), rtol=0, atol=auto.PROBA_TOLERANCE
    )


def test_column_names_that_are_no_onnx_identifiers_compile(tmp_path: Path) -> None:
    """skl2onnx renames the graph input of ``od280/od315`` to ``od280_od315``."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "od280/od315": rng.normal(size=120),
            "2nd reading": rng.normal(size=120),
            "level": pd.Categorical(rng.choice(["low", "mid", "high"], 120)),
        }
    )
    y = (frame["od280/od315"] + (frame["level"] == "high") > 0.5).to_numpy()
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["od280/od315", "2nd reading"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["level"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, y)
    joblib.dump(model, tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    assert runtime.compiled, runtime.reason
    graph_inputs = [i["name"] for i in runtime._impl.describe()["inputs"]]
    assert graph_inputs == ["od280_od315", "_2nd_reading", "level"]
    table = frame.astype(object).to_numpy()
    out = runtime.predict({"input": table})
    assert np.array_equal(out["predict"], model.predict(frame))
    np.testing.assert_allclose(
        out["predict_proba"], model.predict_proba(frame), rtol=0, atol=auto.PROBA_TOLERANCE
    )
