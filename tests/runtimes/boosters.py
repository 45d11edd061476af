"""Helpers shared by the XGBoost and LightGBM runtime tests: datasets, serving, comparing."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from flask.testing import FlaskClient
from sklearn.datasets import load_breast_cancer
from sklearn.datasets import load_diabetes
from sklearn.datasets import load_iris

from modelserve.app import create_app
from modelserve.floats import widen_float32
from modelserve.runtimes import auto
from modelserve.settings import ServerSettings

#: dataset name -> (features, target); breast cancer is binary, iris has 3 classes.
DATASETS = {"breast-cancer": load_breast_cancer, "iris": load_iris, "diabetes": load_diabetes}


@cache
def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    data = DATASETS[name]()
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target)


def client(model_path: Path, **settings: Any) -> FlaskClient:
    app = create_app(ServerSettings(profile="testing", model_path=model_path, **settings))
    return app.test_client()


def served(
    http: FlaskClient, name: str, x: np.ndarray, features: list[str]
) -> tuple[list[Any], list[Any] | None]:
    """Labels (or values) and probabilities from /predict_batch, after checking that /predict
    answers the same for each of the first rows, sent as objects of named features."""
    rows = [[float(v) for v in row] for row in x]
    batch = http.post(f"/models/{name}/predict_batch", json={"instances": rows})
    assert batch.status_code == 200, batch.json
    items = batch.json["predictions"]
    for row, item in zip(rows[:3], items, strict=False):
        one = http.post(f"/models/{name}/predict", json=dict(zip(features, row, strict=True)))
        assert one.status_code == 200, one.json
        assert one.json["prediction"] == item["prediction"]
        assert one.json["probability"] == item["probability"]
    labels = [item["prediction"] for item in items]
    proba = [item["probability"] for item in items]
    return labels, None if proba[0] is None else proba


def assert_same(
    got: tuple[list[Any], list[Any] | None],
    labels: np.ndarray,
    proba: np.ndarray | None,
    compiled: bool,
    regression: bool = False,
) -> None:
    """Served answers equal the in-process ones: exactly when native (float32 values as their
    shortest float32 digits, as the server writes them), within the compile check's
    tolerance when compiled (labels always exactly)."""
    got_labels, got_proba = got
    if regression:
        expected = widen_float32(np.asarray(labels))
        if compiled:
            atol = auto.PROBA_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(got_labels, expected, rtol=0, atol=atol)
        else:
            assert got_labels == expected.tolist()
        assert got_proba is None
        return
    assert got_labels == np.asarray(labels).tolist()
    assert all(type(label) is int for label in got_labels)
    assert proba is not None and got_proba is not None
    if compiled:
        np.testing.assert_allclose(got_proba, proba, rtol=0, atol=auto.PROBA_TOLERANCE)
    else:
        assert got_proba == widen_float32(np.asarray(proba)).tolist()


def runtime_info(http: FlaskClient, name: str) -> dict[str, Any]:
    response = http.get(f"/models/{name}")
    assert response.status_code == 200, response.json
    info: dict[str, Any] = response.json["runtime"]
    return info
