"""/health, /models, /models/<name>: what operators and client generators read."""

from __future__ import annotations

import fastjsonschema
from flask.testing import FlaskClient

from .. import models


def test_health_lists_models_and_uptime(client: FlaskClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json
    assert body["status"] == "healthy"
    assert {m["name"]: (m["version"], m["loaded"]) for m in body["models"]} == {
        "iris": ("1", True),
        "forest": ("1", True),
    }
    assert body["uptime_seconds"] >= 0
    assert body["default_model"] == "iris"


def test_models_lists_versions(client: FlaskClient) -> None:
    body = client.get("/models").json
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["iris"]["default_version"] == "1"
    assert by_name["iris"]["versions"] == [{"version": "1", "state": "ready"}]
    assert by_name["forest"]["task"] == "classification"


def test_model_metadata_has_a_schema_that_accepts_its_example(client: FlaskClient) -> None:
    for url in ("/models/iris", "/models/iris/versions/1"):
        body = client.get(url).json
        assert body["name"] == "iris" and body["version"] == "1"
        assert [f["name"] for f in body["inputs"]] == list(models.IRIS_FEATURES)
        assert body["classes"] == [0, 1, 2]
        assert body["class_names"] == ["setosa", "versicolor", "virginica"]
        assert body["outputs"] == ["predict", "predict_proba"]
        assert body["runtime"] == {
            "runtime": "sklearn",
            "estimator": "LogisticRegression",
            "preprocessor": "StandardScaler",
        }
        assert set(body["sha256"]) == {"1/model.joblib", "1/scaler.joblib"}
        validate = fastjsonschema.compile(body["input_schema"])
        validate(body["example"])
        assert client.post("/models/iris/predict", json=body["example"]).status_code == 200


def test_index_maps_the_api(client: FlaskClient) -> None:
    body = client.get("/").json
    assert body["models"] == ["forest", "iris"]
    assert body["routes"]["predict"] == "/predict"
