"""Request limits end to end in one process: each a clear 4xx with the JSON error body."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.settings import ServerSettings

from .. import models


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/predict", b'{"sepal_length": ' + nested(40) + b"}"),
        ("/predict_batch", b'{"instances": ' + nested(40) + b"}"),
        ("/predict_batch", b'{"instances": ' + nested(5000) + b"}"),  # past orjson's own
        ("/predict_image_base64", b'{"image": ' + nested(40) + b"}"),
        ("/v2/models/iris/infer", b'{"inputs": ' + nested(40) + b"}"),
    ],
)
def test_deep_json_is_400(client: FlaskClient, url: str, body: bytes) -> None:
    resp = client.post(url, data=body, content_type="application/json")
    assert resp.status_code == 400, resp.json
    assert resp.json["type"] == "InvalidInput"
    assert "MODELSERVE_MAX_JSON_DEPTH" in resp.json["error"]


def test_the_depth_limit_is_a_setting(repo: Path) -> None:
    settings = ServerSettings(profile="testing", model_path=repo, max_json_depth=3)
    client = create_app(settings).test_client()
    row = dict.fromkeys(models.IRIS_FEATURES, 1.0)
    assert client.post("/models/iris/predict_batch", json={"instances": [row]}).status_code == 200
    resp = client.post("/models/iris/predict_batch", json={"instances": [[[1, 2, 3, 4]]]})  # 4
    assert resp.status_code == 400 and "deeper than 3 levels" in resp.json["error"]


def test_long_string_features_are_400(tmp_path: Path) -> None:
    root = tmp_path / "models"
    inputs = [
        {"name": "feature1", "type": "number"},
        {"name": "feature2", "type": "number"},
        {"name": "feature3", "type": "string"},
    ]
    models.write_model(root, "tutorial", models.tutorial(), manifest={"inputs": inputs})
    settings = ServerSettings(profile="testing", model_path=root, max_string_length=8)
    client = create_app(settings).test_client()
    row = {"feature1": 5.0, "feature2": 0.1, "feature3": "B"}
    assert client.post("/predict", json=row).status_code == 200
    resp = client.post("/predict", json={**row, "feature3": "B" * 9})
    assert resp.status_code == 400 and resp.json["type"] == "InvalidInput"
    assert resp.json["details"] == [
        {
            "path": "feature3",
            "message": "is longer than 8 characters (MODELSERVE_MAX_STRING_LENGTH)",
        }
    ]
    schema = client.get("/models/tutorial").json["input_schema"]
    assert schema["properties"]["feature3"]["maxLength"] == 8
    v2 = {
        "inputs": [
            {"name": "input", "shape": [1, 3], "datatype": "BYTES", "data": ["5.0", "0.1", "B" * 9]}
        ]
    }
    resp = client.post("/v2/models/tutorial/infer", json=v2)
    assert resp.status_code == 400 and "MODELSERVE_MAX_STRING_LENGTH" in resp.json["error"]
