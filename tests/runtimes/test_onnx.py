from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml
from flask.testing import FlaskClient
from onnx import TensorProto
from onnx import helper

from modelserve.app import create_app
from modelserve.errors import InvalidInput
from modelserve.errors import ModelLoadError
from modelserve.manifest import Manifest
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.onnx import ONNXRuntime
from modelserve.runtimes.registry import get_runtime_class
from modelserve.runtimes.registry import runtime_for_file
from modelserve.settings import ServerSettings

from .. import models
from ..images import TinyNet
from ..images import save_onnx


def sklearn_onnx(model: Any, x: np.ndarray, zipmap: bool) -> bytes:
    from skl2onnx import to_onnx

    options = {id(model): {"zipmap": zipmap}} if hasattr(model, "predict_proba") else None
    onx = to_onnx(model, x[:1].astype(np.float32), options=options, target_opset=17)
    return onx.SerializeToString()


def load(path: Path, **manifest: Any) -> ONNXRuntime:
    runtime = ONNXRuntime(ArtifactSet(artifact=path, manifest=Manifest(**manifest)))
    runtime.load()
    return runtime


def iris_pipeline() -> tuple[Any, np.ndarray]:
    from sklearn.pipeline import make_pipeline

    trained = models.iris()
    return make_pipeline(trained.preprocessor, trained.model), trained.x


def test_registry_maps_onnx_files() -> None:
    assert runtime_for_file(Path("m.onnx")) == "onnx"
    assert get_runtime_class("onnx") is ONNXRuntime


@pytest.mark.parametrize("zipmap", [False, True])
def test_sklearn_classifier_serves_the_tabular_contract(tmp_path: Path, zipmap: bool) -> None:
    model, x = iris_pipeline()
    path = tmp_path / "iris.onnx"
    path.write_bytes(sklearn_onnx(model, x, zipmap))
    runtime = load(path)
    sig = runtime.signature()
    assert sig.kind == "tabular" and sig.task == "classification" and sig.has_proba
    assert sig.feature_names == ["x0", "x1", "x2", "x3"]
    assert sig.classes == (0, 1, 2)
    out = runtime.predict({"input": x})
    assert np.array_equal(out["predict"], model.predict(x))
    assert out["predict_proba"].dtype == np.float64
    assert np.allclose(out["predict_proba"], model.predict_proba(x), atol=1e-5)
    only_labels = runtime.predict({"input": x[:2]}, ["predict"])
    assert set(only_labels) == {"predict"}


def test_string_labels_come_from_the_graph(tmp_path: Path) -> None:
    trained = models.string_labels()
    path = tmp_path / "tree.onnx"
    path.write_bytes(sklearn_onnx(trained.model, trained.x, False))
    runtime = load(path)
    assert runtime.signature().classes == ("setosa", "versicolor", "virginica")
    out = runtime.predict({"input": trained.x[:5]})
    assert out["predict"].tolist() == trained.model.predict(trained.x[:5]).tolist()


def test_regressor_predicts_a_flat_vector(tmp_path: Path) -> None:
    trained = models.regressor()
    path = tmp_path / "ridge.onnx"
    path.write_bytes(sklearn_onnx(trained.model, trained.x, False))
    runtime = load(path)
    assert runtime.signature().task == "regression"
    out = runtime.predict({"input": trained.x[:7]})
    assert out["predict"].shape == (7,)
    assert np.allclose(out["predict"], trained.model.predict(trained.x[:7]), rtol=1e-4)


@pytest.fixture
def onnx_iris_client(tmp_path: Path) -> FlaskClient:
    model, x = iris_pipeline()
    vdir = tmp_path / "models" / "iris-onnx" / "1"
    vdir.mkdir(parents=True)
    (vdir / "model.onnx").write_bytes(sklearn_onnx(model, x, True))
    manifest = {
        "inputs": [{"name": n} for n in models.IRIS_FEATURES],
        "class_names": ["setosa", "versicolor", "virginica"],
    }
    (vdir.parent / "model.yaml").write_text(yaml.safe_dump(manifest))
    settings = ServerSettings(profile="testing", model_path=tmp_path / "models")
    return create_app(settings).test_client()


def test_onnx_tabular_model_on_the_seed_routes(onnx_iris_client: FlaskClient) -> None:
    trained = models.iris()
    one = onnx_iris_client.post("/predict", json=models.features_of(trained, trained.x[120]))
    assert one.status_code == 200, one.json
    assert one.json["prediction"] == 2 and one.json["class_name"] == "virginica"
    assert all(isinstance(p, float) for p in one.json["probability"])
    rows = [list(r) for r in trained.x[:3]]
    batch = onnx_iris_client.post("/models/iris-onnx/predict_batch", json={"instances": rows})
    assert batch.status_code == 200, batch.json
    assert [p["prediction"] for p in batch.json["predictions"]] == [0, 0, 0]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (
            "/v2/models/iris-onnx/infer",
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [0, 4], "data": []}]},
        ),
        (
            "/v2/models/iris-onnx/infer",
            {
                "inputs": [
                    {"name": n, "datatype": "FP64", "shape": [0], "data": []}
                    for n in models.IRIS_FEATURES
                ]
            },
        ),
        ("/models/iris-onnx/predict_batch", {"instances": []}),
    ],
)
def test_zero_rows_are_refused_before_the_session_runs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], url: str, body: Any
) -> None:
    """An empty batch is a 400 from the codec; onnxruntime never sees it, so it logs nothing.

    The graph is the one ``runtime: auto`` compiles (scaler + logistic regression, no
    ZipMap): its ArrayFeatureExtractor prints an error line to stderr on zero rows.
    """
    from modelserve.runtimes.auto import convert
    from modelserve.types import Feature
    from modelserve.types import Signature

    trained = models.iris()
    signature = Signature(tuple(Feature(n) for n in models.IRIS_FEATURES), "classification")
    vdir = tmp_path / "models" / "iris-onnx" / "1"
    vdir.mkdir(parents=True)
    (vdir / "model.onnx").write_bytes(convert(trained.model, trained.preprocessor, signature))
    manifest = {"inputs": [{"name": n} for n in models.IRIS_FEATURES]}
    (vdir.parent / "model.yaml").write_text(yaml.safe_dump(manifest))
    client = create_app(ServerSettings(profile="testing", model_path=tmp_path / "models"))
    capfd.readouterr()
    response = client.test_client().post(url, json=body)
    assert response.status_code == 400, response.json
    assert "rows" in response.json["error"] or "empty" in response.json["error"]
    assert response.json["details"]
    captured = capfd.readouterr()
    assert "onnxruntime" not in captured.err and "ArrayFeatureExtractor" not in captured.err


def test_image_graph_signature_is_read_from_the_graph(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    save_onnx(TinyNet(), path, (1, 3, 16, 12))
    runtime = load(path, class_names=["a", "b", "c"])
    sig = runtime.signature()
    assert sig.kind == "image"
    assert [s.to_dict() for s in sig.tensor_inputs] == [
        {"name": "pixels", "datatype": "FP32", "shape": [-1, 3, 16, 12]}
    ]
    assert [s.to_dict() for s in sig.tensor_outputs] == [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]}
    ]
    spec = sig.extra["image"]
    assert (spec.size, spec.mode, spec.layout) == ((16, 12), "RGB", "NCHW")
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 12)).astype(np.float32)
    expected = TinyNet()(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(runtime.predict({"pixels": x})["scores"], expected, atol=1e-5)
    assert runtime.describe()["providers"] == ["CPUExecutionProvider"]


def test_image_manifest_disagreeing_with_the_graph_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    save_onnx(TinyNet(), path, (1, 3, 16, 16))
    with pytest.raises(ModelLoadError, match=r"image.size is \[8, 8\]"):
        load(path, image={"size": 8})
    with pytest.raises(ModelLoadError, match="image.mode is L"):
        load(path, image={"mode": "L"})
    with pytest.raises(ModelLoadError, match="2 class_names but the model outputs 3"):
        load(path, class_names=["a", "b"])


def test_wrong_input_shape_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    save_onnx(TinyNet(), path, (1, 3, 16, 16))
    runtime = load(path)
    with pytest.raises(InvalidInput, match=r"\[-1, 3, 16, 16\]"):
        runtime.predict({"pixels": np.zeros((1, 3, 8, 8), dtype=np.float32)})
    with pytest.raises(InvalidInput, match="Missing input 'pixels'"):
        runtime.predict({"input": np.zeros((1, 3, 16, 16), dtype=np.float32)})


def test_unavailable_providers_fail_to_load_naming_the_available_ones(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    save_onnx(TinyNet(), path, (1, 3, 16, 16))
    with pytest.raises(ModelLoadError, match="available: .*CPUExecutionProvider"):
        load(path, onnx={"providers": ["NoSuchExecutionProvider"]})


def test_other_graphs_pass_tensors_through(tmp_path: Path) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 2, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 2, 2])
    total = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 2, 2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"])], "g", [a, b], [total])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "add.onnx"
    onnx.save(model, str(path))
    runtime = load(path)
    assert runtime.kind == "tensor" and runtime.signature().kind == "tensor"
    x = np.ones((3, 2, 2))
    out = runtime.predict({"a": x, "b": x})
    assert out["sum"].dtype == np.float32 and np.all(out["sum"] == 2)


def test_a_corrupt_file_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match="Cannot load bad.onnx"):
        load(path)


def test_a_graph_with_one_input_per_listed_column_is_fed_from_the_table(tmp_path: Path) -> None:
    """What skl2onnx makes of a ColumnTransformer: filled column by column, no pandas."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.common.data_types import StringTensorType

    trained = models.tutorial()
    types = [
        ("feature1", DoubleTensorType([None, 1])),
        ("feature2", DoubleTensorType([None, 1])),
        ("feature3", StringTensorType([None, 1])),
    ]
    final = trained.model.steps[-1][1]
    graph = to_onnx(trained.model, initial_types=types, options={id(final): {"zipmap": False}})
    (tmp_path / "m.onnx").write_bytes(graph.SerializeToString())
    inputs = [
        {"name": "feature3", "type": "string", "enum": ["A", "B", "C"]},
        {"name": "feature1"},
        {"name": "feature2"},
    ]
    runtime = load(tmp_path / "m.onnx", inputs=inputs)
    assert runtime.kind == "tabular"
    assert runtime.signature().feature_names == ["feature3", "feature1", "feature2"]
    frame = models.tutorial_frame(50, seed=5)
    table = frame[["feature3", "feature1", "feature2"]].to_numpy(dtype=object)
    out = runtime.predict({"input": table})
    assert np.array_equal(out["predict"], trained.model.predict(frame))
    np.testing.assert_allclose(out["predict_proba"], trained.model.predict_proba(frame), atol=1e-5)
    with pytest.raises(InvalidInput, match="feature1"):
        runtime.predict({"input": np.array([["A", "tall", 1.0]], dtype=object)})
    # Without the manifest's list the same graph is a plain tensor model.
    assert load(tmp_path / "m.onnx").kind == "tensor"
