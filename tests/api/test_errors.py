"""Every error status on the API comes back as the one JSON shape, never HTML or a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.settings import ServerSettings

from .. import models


def assert_error(resp: Any, status: int, type_name: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/json"
    body: dict[str, Any] = resp.json
    assert body["status"] == "error"
    assert body["type"] == type_name
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def test_schema_errors_list_every_bad_field(client: FlaskClient) -> None:
    resp = client.post(
        "/predict",
        json={"sepal_length": "long", "sepal_width": -1, "petal_length": True, "colour": "red"},
    )
    body = assert_error(resp, 400, "InvalidInput")
    problems = {d["path"]: d["message"] for d in body["details"]}
    assert set(problems) == {"sepal_length", "sepal_width", "petal_length", "petal_width", "(root)"}
    assert "number" in problems["sepal_length"]
    assert "minimum" in problems["sepal_width"]
    assert "number" in problems["petal_length"]  # JSON true is not a number
    assert problems["petal_width"] == "is required"
    assert "colour" in problems["(root)"]
    assert "and 4 more" in body["error"]


def test_batch_errors_name_the_row(client: FlaskClient) -> None:
    good = models.features_of(models.iris(), models.iris().x[0])
    resp = client.post(
        "/predict_batch",
        json={"instances": [good, {**good, "petal_width": "x"}, [1, 2, 3], "nope"]},
    )
    body = assert_error(resp, 400, "InvalidInput")
    paths = [d["path"] for d in body["details"]]
    assert "instances[1].petal_width" in paths
    assert any(p.startswith("instances[2]") for p in paths)
    assert "instances[3]" in paths
    assert not any(p.startswith("instances[0]") for p in paths)


@pytest.mark.parametrize(
    "payload",
    [{"instances": []}, {"instances": {"a": 1}}, {"rows": []}, [1, 2]],
)
def test_batch_shape_errors(client: FlaskClient, payload: Any) -> None:
    assert_error(client.post("/predict_batch", json=payload), 400, "InvalidInput")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"sepal_length": NaN}',
        b'{"sepal_length": Infinity}',
        b'{"sepal_length": 1e999}',
        b"",
    ],
)
def test_malformed_json_nan_infinity_and_empty_are_400(client: FlaskClient, body: bytes) -> None:
    resp = client.post("/predict", data=body, content_type="application/json")
    assert_error(resp, 400, "InvalidInput")


def test_non_object_body_is_400(client: FlaskClient) -> None:
    assert_error(client.post("/predict", json=[1, 2, 3, 4]), 400, "InvalidInput")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.post("/predict", data=b'{"a": 1}', headers=headers)
    assert_error(resp, 415, "UnsupportedMediaType")


@pytest.mark.parametrize(
    "url",
    ["/models/nope/predict", "/models/iris/versions/9/predict", "/models/nope", "/no/such/route"],
)
def test_unknown_model_version_or_route_is_404(client: FlaskClient, url: str) -> None:
    resp = client.post(url, json={}) if "predict" in url else client.get(url)
    assert_error(resp, 404, "ModelNotFound" if "models" in url else "NotFound")


def test_wrong_method_is_405_with_allow_header(client: FlaskClient) -> None:
    resp = client.get("/predict")
    assert_error(resp, 405, "MethodNotAllowed")
    assert "POST" in resp.headers["Allow"]
    assert_error(client.delete("/health"), 405, "MethodNotAllowed")


def test_oversize_body_is_413(repo: Path) -> None:
    settings = ServerSettings(
        profile="testing", model_path=repo, default_model="iris", max_content_length=100
    )
    client = create_app(settings).test_client()
    resp = client.post(
        "/predict", data=b'{"x": "' + b"a" * 200 + b'"}', content_type="application/json"
    )
    body = assert_error(resp, 413, "RequestEntityTooLarge")
    assert "MODELSERVE_MAX_CONTENT_LENGTH" in body["error"]


def test_no_default_model_with_several_is_404_with_advice(repo: Path) -> None:
    client = create_app(ServerSettings(profile="testing", model_path=repo)).test_client()
    body = assert_error(client.post("/predict", json={}), 404, "ModelNotFound")
    assert "MODELSERVE_DEFAULT_MODEL" in body["error"]


def test_model_raising_on_valid_input_is_422(tmp_path: Path) -> None:
    """A model that rejects schema-valid input answers 422 with the model's reason."""
    from sklearn.preprocessing import FunctionTransformer

    trained = models.iris()
    models.write_model(tmp_path, "iris", trained)
    # A preprocessor that validates its input the way real models do (sklearn's own check).
    strict = FunctionTransformer(models.reject_negative_sepal, validate=True).fit(trained.x)
    models.write_model(
        tmp_path, "guarded", models.Trained(trained.model, trained.x, strict, trained.feature_names)
    )
    client = create_app(ServerSettings(profile="testing", model_path=tmp_path)).test_client()
    row = models.features_of(trained, trained.x[0])
    assert client.post("/models/guarded/predict", json=row).status_code == 200
    body = assert_error(
        client.post("/models/guarded/predict", json={**row, "sepal_length": -1.0}),
        422,
        "InferenceError",
    )
    assert "sepal_length must not be negative" in body["error"]


def test_unexpected_exception_is_500_without_details(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = app.extensions["modelserve.handlers"].listing

    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(listing, "health", boom)
    resp = app.test_client().get("/health")
    body = assert_error(resp, 500, "InternalServerError")
    assert "secret" not in resp.get_data(as_text=True)
    assert body["error"] == "Internal server error"


def test_model_that_failed_to_load_is_503(tmp_path: Path) -> None:
    trained = models.iris()
    models.write_model(tmp_path, "iris", trained)
    broken = models.write_model(tmp_path, "broken", trained)
    (broken / "1" / "model.joblib").write_bytes(b"tampered")
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path, default_model="iris"))
    client = app.test_client()
    body = assert_error(client.post("/models/broken/predict", json={}), 503, "ModelNotReady")
    assert "sha256 mismatch" in body["error"]
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["status"] == "unhealthy"
