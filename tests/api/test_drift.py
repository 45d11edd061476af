"""GET /models/<name>[/versions/<v>]/drift: traffic logged through the app against the
reference profile `modelserve validate --reference` wrote, and the errors naming what is
missing."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from modelserve.api._handlers import EXTENSION_KEY
from modelserve.app import create_app
from modelserve.cli import main
from modelserve.drift import drift_report
from modelserve.settings import ServerSettings

from .. import models

IRIS = models.iris()
ROWS = [models.features_of(IRIS, x) for x in IRIS.x]


def write_csv(path: Path) -> Path:
    """The iris training data with its label column (which the profile ignores)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*models.IRIS_FEATURES, "species"])
        for x, label in zip(IRIS.x, IRIS.expected()[0], strict=True):
            out.writerow([*x.tolist(), label])
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two copies of iris, each with a reference profile built from the training data."""
    root = tmp_path / "models"
    for name in ("calm", "shifted"):
        models.write_model(root, name, IRIS)
    data = write_csv(tmp_path / "iris.csv")
    runner = CliRunner()
    for name in ("calm", "shifted"):
        result = runner.invoke(
            main, ["validate", str(root), "--reference", str(data), "--model", name]
        )
        assert result.exit_code == 0, result.output
        assert f"wrote {root / name / '1' / 'reference.json'}" in result.output
    return root


@pytest.fixture
def app(repo: Path, tmp_path: Path) -> Iterator[Flask]:
    settings = ServerSettings(
        profile="testing",
        model_path=repo,
        default_model="calm",
        prediction_log=f"sqlite:///{tmp_path / 'log.db'}",
        prediction_log_flush_seconds=0.01,
    )
    app = create_app(settings)
    yield app
    app.extensions[EXTENSION_KEY].log.close()


def send_traffic(client: FlaskClient, app: Flask) -> None:
    """calm: the training data itself, through /predict_batch and V2; shifted: the same rows
    with sepal_width 2 cm wider, one /predict each."""
    assert (
        client.post("/models/calm/predict_batch", json={"instances": ROWS[:100]}).status_code == 200
    )
    x = IRIS.x[100:]
    body = {
        "inputs": [
            {"name": "input", "shape": list(x.shape), "datatype": "FP64", "data": x.tolist()}
        ]
    }
    assert client.post("/v2/models/calm/infer", json=body).status_code == 200
    for row in ROWS:
        wider = {**row, "sepal_width": row["sepal_width"] + 2.0}
        assert client.post("/models/shifted/predict", json=wider).status_code == 200
    assert app.extensions[EXTENSION_KEY].log.flush(timeout=30)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in report["features"]}


def test_drift_flags_the_shifted_feature_and_not_the_others(
    client: FlaskClient, app: Flask, repo: Path
) -> None:
    send_traffic(client, app)

    calm = client.get("/models/calm/drift?window=3600")
    assert calm.status_code == 200, calm.json
    report = calm.json
    assert report is not None
    assert (report["model"], report["version"], report["window_seconds"]) == ("calm", "1", 3600)
    assert (report["rows"], report["records"], report["truncated"]) == (150, 2, False)
    assert report["drifted"] == [] and report["predictions_drifted"] is False
    reference = json.loads((repo / "calm" / "1" / "reference.json").read_text())
    assert report["reference"]["rows"] == 150 and report["reference"]["matches_model"] is True
    for feature, profile in zip(report["features"], reference["features"], strict=True):
        assert feature["name"] == profile["name"]
        # The histograms a page draws: the reference's bins and this window's counts in them.
        assert feature["edges"] == profile["edges"]
        assert feature["reference"] == profile["counts"]
        assert len(feature["current"]) == len(feature["edges"]) + 1
        assert sum(feature["current"]) == 150
        assert feature["psi"] < 0.01 and feature["drifted"] is False
    assert report["predictions"]["psi"] < 0.01
    assert sum(report["predictions"]["current"]) == 150

    shifted = client.get("/models/shifted/versions/1/drift")  # default window: an hour
    assert shifted.status_code == 200
    report = shifted.json
    assert report is not None
    assert report["window_seconds"] == 3600
    assert (report["rows"], report["records"]) == (150, 150)
    assert report["drifted"] == ["sepal_width"]
    features = by_name(report)
    assert features["sepal_width"]["psi"] > 1 and features["sepal_width"]["drifted"]
    for name in ("sepal_length", "petal_length", "petal_width"):
        assert features[name]["psi"] < 0.01 and not features[name]["drifted"]
    assert features["sepal_width"]["current"][-1] == 150  # all above the reference's deciles


def test_drift_counts_only_the_window(client: FlaskClient, app: Flask) -> None:
    send_traffic(client, app)
    log = app.extensions[EXTENSION_KEY].log
    sv = app.extensions["modelserve"].resolve("shifted")
    later = drift_report(sv.model, log.store, window=60, threshold=0.2, now=time.time() + 120)
    assert (later["rows"], later["records"], later["drifted"]) == (0, 0, [])
    assert all(f["psi"] is None for f in later["features"])


def test_drift_threshold_is_a_setting(repo: Path, tmp_path: Path) -> None:
    settings = ServerSettings(
        profile="testing",
        model_path=repo,
        prediction_log=str(tmp_path / "log.db"),
        prediction_log_flush_seconds=0.01,
        drift_psi_threshold=1000.0,
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        send_traffic(client, app)
        report = client.get("/models/shifted/drift").json
        assert report is not None
        assert report["threshold"] == 1000.0 and report["drifted"] == []
    finally:
        app.extensions[EXTENSION_KEY].log.close()


def test_drift_errors_name_what_is_missing(repo: Path, client: FlaskClient) -> None:
    (repo / "shifted" / "1" / "reference.json").unlink()
    missing = client.get("/models/shifted/drift")
    assert missing.status_code == 404
    assert missing.json is not None and missing.json["type"] == "ReferenceNotFound"
    assert "--reference" in missing.json["error"]

    unknown = client.get("/models/nope/drift")
    assert unknown.status_code == 404 and unknown.json["type"] == "ModelNotFound"  # type: ignore[index]

    for bad in ("0", "-5", "soon", "nan", "1e12"):
        answer = client.get(f"/models/calm/drift?window={bad}")
        assert answer.status_code == 400, bad
        assert answer.json["details"][0]["path"] == "window"  # type: ignore[index]


def test_drift_without_a_prediction_log_is_a_409(repo: Path) -> None:
    client = create_app(ServerSettings(profile="testing", model_path=repo)).test_client()
    answer = client.get("/models/calm/drift")
    assert answer.status_code == 409
    assert answer.json is not None and answer.json["type"] == "PredictionLogOff"
    assert "MODELSERVE_PREDICTION_LOG" in answer.json["error"]
