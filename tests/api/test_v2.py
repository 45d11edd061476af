from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.registry import get_runtime_class
from modelserve.settings import ServerSettings

from .. import models


def _infer(client: FlaskClient, model: str, body: dict[str, object], version: str = "") -> dict:
    where = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    resp = client.post(where + "/infer", json=body)
    assert resp.status_code == 200, resp.json
    assert resp.json is not None
    return resp.json


def test_server_metadata_and_health(client: FlaskClient) -> None:
    meta = client.get("/v2").json
    assert meta is not None
    assert meta["name"] == "modelserve"
    assert set(meta["extensions"]) == {"binary_tensor_data", "model_repository"}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json == {"ready": True}


def test_model_metadata(client: FlaskClient) -> None:
    for url in ("/v2/models/forest", "/v2/models/forest/versions/1"):
        meta = client.get(url).json
        assert meta == {
            "name": "forest",
            "versions": ["1"],
            "platform": "sklearn",
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}],
            "outputs": [
                {"name": "predict", "datatype": "INT64", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
            ],
        }


def test_platform_names_the_framework_not_the_runtime(tmp_path: Path) -> None:
    """A pickle served by ``runtime: auto`` (the default for .pkl) is compiled to ONNX, and
    its V2 platform is still ``sklearn``, as the README shows; ``/models`` says how it runs."""
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris(), manifest={"runtime": "auto"})
    client = create_app(ServerSettings(profile="testing", model_path=root)).test_client()
    assert client.get("/v2/models/iris").json["platform"] == "sklearn"
    runtime = client.get("/models/iris").json["runtime"]
    assert runtime["runtime"] == "auto" and runtime["compiled"] is True


@pytest.mark.parametrize(
    ("runtime", "platform"),
    [
        ("auto", "sklearn"),
        ("sklearn", "sklearn"),
        ("onnx", "onnx"),
        ("torch", "pytorch"),
        ("xgboost", "xgboost"),
        ("lightgbm", "lightgbm"),
    ],
)
def test_every_runtime_has_a_kserve_platform(runtime: str, platform: str) -> None:
    assert get_runtime_class(runtime)(ArtifactSet(Path("model"))).platform() == platform


def test_model_ready_and_unknown(client: FlaskClient) -> None:
    assert client.get("/v2/models/iris/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200
    resp = client.get("/v2/models/nope/ready")
    assert resp.status_code == 404
    assert resp.json is not None and "nope" in resp.json["error"]
    assert client.get("/v2/models/iris/versions/9").status_code == 404
    assert client.post("/v2/models/nope/infer", json={}).status_code == 404


def test_infer_json_equals_in_process(client: FlaskClient) -> None:
    trained = models.iris()
    x = trained.x[::10]
    body = _infer(
        client,
        "iris",
        {
            "id": "abc",
            "parameters": {"custom": 1},
            "inputs": [
                {"name": "input", "shape": list(x.shape), "datatype": "FP64", "data": x.tolist()}
            ],
        },
        version="1",
    )
    labels, proba = trained.expected(x)
    assert body["model_name"] == "iris"
    assert body["model_version"] == "1"
    assert body["id"] == "abc"
    assert isinstance(body["parameters"], dict)
    out = {o["name"]: o for o in body["outputs"]}
    assert out["predict"]["datatype"] == "INT64"
    assert out["predict"]["shape"] == [len(x)]
    assert out["predict"]["data"] == labels.tolist()
    assert out["predict_proba"]["shape"] == [len(x), 3]
    assert out["predict_proba"]["data"] == proba.reshape(-1).tolist()


def test_infer_column_inputs_and_requested_output(client: FlaskClient) -> None:
    trained = models.iris()
    x = trained.x[:5]
    inputs = [
        {"name": name, "shape": [len(x)], "datatype": "FP32", "data": x[:, i].tolist()}
        for i, name in enumerate(models.IRIS_FEATURES)
    ]
    body = _infer(client, "iris", {"inputs": inputs, "outputs": [{"name": "predict"}]})
    labels, _ = trained.expected(x.astype(np.float32).astype(np.float64))
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert body["outputs"][0]["data"] == labels.tolist()


def test_infer_binary_request_and_response(client: FlaskClient) -> None:
    trained = models.forest()
    x = trained.x[:40]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [
                {"name": "predict_proba", "parameters": {"binary_data": True}},
                {"name": "predict"},
            ],
        }
    )
    resp = client.post(
        "/v2/models/forest/infer",
        data=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert resp.status_code == 200, resp.data[:300]
    length = int(resp.headers["Inference-Header-Content-Length"])
    raw = resp.get_data()
    meta = orjson.loads(raw[:length])
    labels, proba = trained.expected(x)
    proba_meta, predict_meta = meta["outputs"]
    assert proba_meta["parameters"]["binary_data_size"] == proba.nbytes
    got = np.frombuffer(raw[length:], dtype=np.float64).reshape(proba_meta["shape"])
    np.testing.assert_array_equal(got, proba)
    assert predict_meta["data"] == labels.tolist()


def test_regression_and_string_labels(tmp_path: Path) -> None:
    root = tmp_path / "m"
    models.write_model(root, "reg", models.regressor())
    models.write_model(root, "labels", models.string_labels())
    client = create_app(ServerSettings(profile="testing", model_path=root)).test_client()
    reg = models.regressor()
    body = _infer(
        client,
        "reg",
        {
            "inputs": [
                {"name": "input", "shape": [2, 10], "datatype": "FP64", "data": reg.x[:2].tolist()}
            ]
        },
    )
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert body["outputs"][0]["datatype"] == "FP64"
    np.testing.assert_allclose(body["outputs"][0]["data"], reg.expected(reg.x[:2])[0])
    lab = models.string_labels()
    body = _infer(
        client,
        "labels",
        {
            "inputs": [
                {"name": "input", "shape": [3, 4], "datatype": "FP64", "data": lab.x[::60].tolist()}
            ]
        },
    )
    assert body["outputs"][0]["datatype"] == "BYTES"
    assert body["outputs"][0]["data"] == lab.expected(lab.x[::60])[0].tolist()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
            "shape",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3]}]},
            "elements",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]},
            "Unknown input",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}
                ]
            },
            "datatype",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 4], "datatype": "INT64", "data": [1.5] * 4}
                ]
            },
            "INT64",
        ),
        (
            {
                "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}],
                "outputs": [{"name": "zz"}],
            },
            "Unknown output",
        ),
        ({"inputs": "nope"}, "inputs"),
    ],
)
def test_bad_requests_are_400_with_error(
    client: FlaskClient, body: dict[str, object], message: str
) -> None:
    resp = client.post("/v2/models/iris/infer", json=body)
    assert resp.status_code == 400
    assert resp.json is not None
    assert isinstance(resp.json["error"], str) and message in resp.json["error"]


def test_bad_header_length_is_400(client: FlaskClient) -> None:
    resp = client.post(
        "/v2/models/iris/infer", data=b"{}", headers={"Inference-Header-Content-Length": "x"}
    )
    assert resp.status_code == 400


ADMIN_KEY = "admin-key-for-the-repository-tests"


@pytest.fixture
def admin(repo: Path) -> FlaskClient:
    """A client of an app with an admin key, sending it: the repository API needs ``admin``."""
    settings = ServerSettings(
        profile="testing",
        model_path=repo,
        default_model="iris",
        api_key=ADMIN_KEY,  # type: ignore[arg-type]
    )
    client = create_app(settings).test_client()
    client.environ_base["HTTP_X_API_KEY"] = ADMIN_KEY
    return client


def test_repository_api_is_closed_without_an_admin_credential(client: FlaskClient) -> None:
    for url in ("/v2/repository/index", "/v2/repository/models/forest/unload"):
        resp = client.post(url)
        assert resp.status_code == 403 and resp.json is not None
        assert resp.json["type"] == "Forbidden" and "MODELSERVE_API_KEY" in resp.json["error"]
    assert client.get("/v2/models/forest/ready").status_code == 200


def test_repository_index_unload_load(admin: FlaskClient) -> None:
    client = admin
    index = client.post("/v2/repository/index").json
    assert {"name": "forest", "version": "1", "state": "READY"} in index
    assert client.post("/v2/repository/models/forest/unload").status_code == 200
    assert client.get("/v2/models/forest/ready").status_code == 404
    assert client.post("/v2/models/forest/infer", json={}).status_code == 404
    index = client.post("/v2/repository/index").json
    assert {"name": "forest", "state": "UNAVAILABLE", "reason": "unloaded"} in index
    assert client.post("/v2/repository/models/forest/unload").status_code == 404
    assert client.post("/v2/repository/models/forest/load").status_code == 200
    assert client.get("/v2/models/forest/ready").status_code == 200
    assert client.post("/v2/repository/models/nope/load").status_code == 404


def test_load_reports_a_failed_new_copy_while_the_old_one_serves(
    admin: FlaskClient, repo: Path
) -> None:
    client = admin
    (repo / "forest" / "1" / "model.joblib").write_bytes(b"not a model")
    resp = client.post("/v2/repository/models/forest/load")
    assert resp.status_code == 400  # the request's answer, with the reason (Triton: 400)
    assert resp.json is not None
    assert "sha256 mismatch" in resp.json["error"]
    assert "version 1 keeps serving" in resp.json["error"]
    assert client.get("/v2/models/forest/ready").status_code == 200
    health = client.get("/health").json
    assert health is not None
    forest = next(m for m in health["models"] if m["name"] == "forest")
    assert forest["failed_versions"][0]["state"] == "rejected"


def test_too_many_rows_is_413(repo: Path) -> None:
    settings = ServerSettings(profile="testing", model_path=repo, max_batch_rows=2)
    client = create_app(settings).test_client()
    body = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP64", "data": [0.0] * 12}]}
    resp = client.post("/v2/models/iris/infer", json=body)
    assert resp.status_code == 413
    assert resp.json is not None and "MODELSERVE_MAX_BATCH_ROWS" in resp.json["error"]


def test_compressed_body_limits(repo: Path) -> None:
    import gzip

    settings = ServerSettings(profile="testing", model_path=repo, max_content_length=1000)
    client = create_app(settings).test_client()
    big = gzip.compress(b" " * 5000)
    resp = client.post("/v2/models/iris/infer", data=big, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    resp = client.post("/v2/models/iris/infer", data=b"xx", headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 400
    resp = client.post("/v2/models/iris/infer", data=b"xx", headers={"Content-Encoding": "br"})
    assert resp.status_code == 415
