"""A real gunicorn on loopback, started by the real command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from click.testing import CliRunner

from modelserve.cli import main
from modelserve.demo import train_demo_models

from . import models
from .conftest import LiveServer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_demo_repository_answers_every_route(
    tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    from sklearn.datasets import load_breast_cancer

    train_demo_models(tmp_path)
    server = live_server(
        [str(tmp_path), "--workers", "2", "--threads", "2", "--default-model", "iris"]
        + ["--server", server_name]
    )
    url = server.url
    health = requests.get(url + "/health", timeout=5).json()
    assert health["status"] == "healthy" and len(health["models"]) == 4
    assert [m["name"] for m in requests.get(url + "/models", timeout=5).json()["models"]] == [
        "breast-cancer",
        "digits",
        "digits-onnx",
        "iris",
    ]
    meta = requests.get(url + "/models/breast-cancer", timeout=5).json()
    names = [f["name"] for f in meta["inputs"]]
    data = load_breast_cancer()
    row = dict(zip(names, data.data[10].tolist(), strict=True))
    model = joblib.load(tmp_path / "breast-cancer" / "1" / "model.joblib")
    one = requests.post(url + "/models/breast-cancer/predict", json=row, timeout=5).json()
    assert one["prediction"] == model.predict(data.data[10:11])[0]
    # Served compiled to ONNX (runtime: auto): probabilities agree within its tolerance.
    assert one["probability"] == pytest.approx(model.predict_proba(data.data[10:11])[0], abs=1e-5)
    batch = requests.post(
        url + "/models/breast-cancer/versions/1/predict_batch",
        json={"instances": data.data[:50].tolist()},
        timeout=5,
    ).json()
    assert [p["prediction"] for p in batch["predictions"]] == model.predict(data.data[:50]).tolist()
    iris = requests.post(
        url + "/predict",
        json={"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
        timeout=5,
    ).json()
    assert iris["class_name"] == "virginica"
    bad = requests.post(
        url + "/predict", data="{", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["type"] == "InvalidInput"
    assert requests.get(url + "/predict", timeout=5).status_code == 405
    assert requests.post(url + "/predict", data="x", timeout=5).status_code == 415
    assert requests.get(url + "/models/nope", timeout=5).json()["status"] == "error"
    big = requests.post(
        url + "/predict",
        data=b"[" + b"1," * 9_000_000 + b"1]",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413


def test_single_file_with_separate_scaler(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    trained = models.iris()
    joblib.dump(trained.model, tmp_path / "trained_model.pkl")
    joblib.dump(trained.preprocessor, tmp_path / "scaler.pkl")
    files = [str(tmp_path / "trained_model.pkl"), "--preprocessor", str(tmp_path / "scaler.pkl")]
    # The README's two commands: pin the pickles (production refuses unpinned ones), serve.
    pinned = CliRunner().invoke(main, ["validate", *files, "--write-manifest"])
    assert pinned.exit_code == 0, pinned.output
    server = live_server(files)
    x = trained.x[[5, 75, 145]]
    resp = requests.post(
        server.url + "/predict_batch", json={"instances": x.tolist()}, timeout=5
    ).json()
    labels, proba = trained.expected(x)
    assert [p["prediction"] for p in resp["predictions"]] == labels.tolist()
    probabilities = [p["probability"] for p in resp["predictions"]]
    np.testing.assert_allclose(probabilities, proba, rtol=1e-9, atol=1e-12)
    assert resp["model"] == "trained_model"


def test_hash_mismatch_stops_the_server_with_a_clear_message(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    model_dir = models.write_model(tmp_path, "iris", models.iris())
    (model_dir / "1" / "scaler.joblib").write_bytes(b"swapped")
    server = live_server([str(tmp_path)], ready=False)
    assert server.proc.wait(timeout=60) == 2
    assert "sha256 mismatch for 1/scaler.joblib" in server.output()
