"""GET /models/<name>/stats: a model's inference requests and latency, for the web page."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.keys import create_key
from modelserve.metrics import quantile
from modelserve.settings import ServerSettings

GOOD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _stats(client: FlaskClient, name: str = "iris", **headers: str) -> dict[str, Any]:
    resp = client.get(f"/models/{name}/stats", headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json
    return body


def test_counts_the_models_inference_requests_by_status_and_version(client: FlaskClient) -> None:
    # The metrics live in the process (every app of a test session shares them): deltas.
    before = _stats(client)
    for _ in range(3):
        assert client.post("/models/iris/predict", json=GOOD).status_code == 200
    assert client.post("/predict", json=GOOD).status_code == 200  # the default model: iris
    assert client.post("/models/iris/predict", json={"sepal_length": "x"}).status_code == 400
    batch = {"instances": [GOOD, GOOD]}
    assert client.post("/models/iris/predict_batch", json=batch).status_code == 200
    client.get("/models/iris")  # a read of the metadata is no inference request
    client.post("/models/forest/predict_batch", json={"instances": [[1, 2, 3, 4]]})
    after = _stats(client)

    def grew(key: str, sub: str | None = None) -> int:
        new, old = after[key], before[key]
        if sub is not None:
            new, old = new.get(sub, 0), old.get(sub, 0)
        return int(new - old)

    assert after["model"] == "iris"
    assert grew("requests") == 6 and grew("errors") == 1
    assert grew("by_status", "200") == 5 and grew("by_status", "400") == 1
    assert grew("by_version", "1") == 6
    latency = after["latency"]
    assert latency["count"] - before["latency"]["count"] == 6
    buckets = latency["buckets"]
    assert buckets[-1]["le"] is None and buckets[-1]["count"] == latency["count"]
    bounds = [b["le"] for b in buckets[:-1]]
    assert bounds == sorted(bounds) and bounds[0] == 0.0001
    counts = [b["count"] for b in buckets]
    assert counts == sorted(counts)  # cumulative
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert latency["mean_ms"] > 0
    assert after["ts"] > before["ts"]


def test_an_unknown_model_is_a_404(client: FlaskClient) -> None:
    resp = client.get("/models/nope/stats")
    assert resp.status_code == 404 and resp.json["type"] == "ModelNotFound"


def test_needs_a_predict_key_for_that_model(tmp_path: Path, repo: Path) -> None:
    keys = tmp_path / "keys.toml"
    iris_only = create_key(keys, "iris-only", ["predict"], ["iris"])
    admin_only = create_key(keys, "ops", ["admin"])
    settings = ServerSettings(profile="testing", model_path=repo, keys_file=keys)
    client = create_app(settings).test_client()
    assert client.get("/models/iris/stats").status_code == 401
    assert _stats(client, **{"X-API-Key": iris_only})["model"] == "iris"
    forbidden = client.get("/models/forest/stats", headers={"X-API-Key": iris_only})
    assert forbidden.status_code == 403 and forbidden.json["type"] == "Forbidden"
    assert client.get("/models/iris/stats", headers={"X-API-Key": admin_only}).status_code == 403


def test_is_rate_limited_with_the_admin_routes(repo: Path) -> None:
    settings = ServerSettings(
        profile="testing",
        model_path=repo,
        rate_limit_admin="2/minute",
        rate_limit_storage="memory://",
    )
    client = create_app(settings).test_client()
    assert [client.get("/models/iris/stats").status_code for _ in range(3)] == [200, 200, 429]
    assert client.post("/models/iris/predict", json=GOOD).status_code == 200  # another budget


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.001, 0.0), (0.01, 10.0), (math.inf, 10.0)], 0.0055),
        (0.75, [(0.001, 4.0), (0.01, 4.0), (math.inf, 8.0)], 0.01),  # in +Inf: the last bound
        (0.25, [(0.002, 4.0), (math.inf, 4.0)], 0.0005),  # the lowest bucket starts at 0
        (0.99, [(0.001, 5.0), (0.01, 10.0), (math.inf, 20.0)], 0.01),
        (0.5, [], None),
        (0.5, [(0.001, 0.0), (math.inf, 0.0)], None),
    ],
)
def test_quantile_interpolates_like_histogram_quantile(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    got = quantile(q, buckets)
    assert got == pytest.approx(expected) if expected is not None else got is None
