"""Metrics in one process: what a request, a cache lookup, a model load and a refusal record,
and ``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from modelserve import metrics
from modelserve.api.observe import METRICS_ENDPOINT
from modelserve.app import create_app
from modelserve.settings import ServerSettings

from . import models
from .conftest import SRC

ROW = models.features_of(models.iris(), models.iris().x[0])


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def request_labels(
    route: str, status: str, model: str = "iris", version: str = "1"
) -> dict[str, str]:
    protocol = "seed" if route.startswith(("/predict", "/models/<name>/predict")) else "ops"
    return {
        "route": route,
        "model": model,
        "version": version,
        "protocol": protocol,
        "status": status,
    }


def test_requests_are_counted_by_route_model_version_protocol_status(client: FlaskClient) -> None:
    ok = request_labels("/predict", "200")
    bad = request_labels("/predict", "400")
    health = request_labels("/health", "200", model="", version="")
    v2 = {
        "route": "/v2/models/<name>/infer",
        "model": "iris",
        "version": "1",
        "protocol": "v2",
        "status": "200",
    }
    before = {
        k: value("modelserve_requests_total", **v)
        for k, v in {"ok": ok, "bad": bad, "health": health, "v2": v2}.items()
    }
    rows_before = value("modelserve_request_rows_sum", model="iris", version="1")
    latency_before = value(
        "modelserve_request_duration_seconds_count", route="/predict", model="iris", version="1"
    )
    for _ in range(3):
        assert client.post("/predict", json=ROW).status_code == 200
    assert client.post("/predict", json={"nope": 1}).status_code == 400
    assert client.get("/health").status_code == 200
    tensor = {
        "name": "input",
        "shape": [2, 4],
        "datatype": "FP64",
        "data": [list(ROW.values())] * 2,
    }
    resp = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert resp.status_code == 200, resp.json
    assert value("modelserve_requests_total", **ok) - before["ok"] == 3
    assert value("modelserve_requests_total", **bad) - before["bad"] == 1
    assert value("modelserve_requests_total", **health) - before["health"] == 1
    assert value("modelserve_requests_total", **v2) - before["v2"] == 1
    assert value("modelserve_request_rows_sum", model="iris", version="1") - rows_before == 5
    assert (
        value(
            "modelserve_request_duration_seconds_count", route="/predict", model="iris", version="1"
        )
        - latency_before
        == 4
    )
    assert value("modelserve_requests_in_flight") == 0


def test_model_call_batch_and_queue_are_observed(settings: ServerSettings) -> None:
    # Batched (every model batches at a zero cost threshold): the batcher reports the wait.
    app = create_app(settings.model_copy(update={"batch_min_cost_ms": 0.0}))
    labels = {"model": "iris", "version": "1"}
    names = (
        "modelserve_model_call_seconds_count",
        "modelserve_queue_wait_seconds_count",
        "modelserve_batch_size_count",
    )
    before = {n: value(n, **labels) for n in names}
    batch_rows_before = value("modelserve_batch_size_sum", **labels)
    assert (
        app.test_client().post("/predict_batch", json={"instances": [ROW, ROW]}).status_code == 200
    )
    assert {n: value(n, **labels) - before[n] for n in names} == dict.fromkeys(names, 1.0)
    assert value("modelserve_batch_size_sum", **labels) - batch_rows_before == 2
    assert value("modelserve_model_call_seconds_bucket", le="10.0", **labels) >= 1


def test_cache_hits_and_misses(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris(), manifest={"cache": {"ttl_seconds": 60}})
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path))
    labels = {"model": "iris", "version": "1"}
    hits, misses = (
        value("modelserve_cache_hits_total", **labels),
        value("modelserve_cache_misses_total", **labels),
    )
    client = app.test_client()
    for _ in range(3):
        assert client.post("/predict", json=ROW).status_code == 200
    assert value("modelserve_cache_misses_total", **labels) - misses == 1
    assert value("modelserve_cache_hits_total", **labels) - hits == 2


def test_model_loads_failures_and_served_versions(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris())
    models.write_model(tmp_path, "broken", models.iris(), pin=False)
    (tmp_path / "broken" / "1" / "model.joblib").write_bytes(b"not a model")
    loads = value("modelserve_model_load_seconds_count", model="iris")
    failures = value("modelserve_model_load_failures_total", model="broken")
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path, default_model="iris"))
    assert value("modelserve_model_load_seconds_count", model="iris") - loads == 1
    assert value("modelserve_model_load_failures_total", model="broken") - failures == 1
    assert value("modelserve_model_version_loaded", model="iris", version="1") == 1
    # Retired and idle, the version is released (on a thread of its own): the gauge says so.
    app.extensions["modelserve"].resolve("iris").retire()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if value("modelserve_model_version_loaded", model="iris", version="1") == 0:
            break
        time.sleep(0.02)
    assert value("modelserve_model_version_loaded", model="iris", version="1") == 0


def test_refusals_are_counted() -> None:
    limited, unauthenticated = (
        value("modelserve_rate_limited_total"),
        value("modelserve_unauthenticated_total"),
    )
    metrics.count_refused("rate_limited")
    metrics.count_refused("unauthenticated")
    metrics.count_refused("unauthenticated")
    assert value("modelserve_rate_limited_total") - limited == 1
    assert value("modelserve_unauthenticated_total") - unauthenticated == 2


def test_metrics_route_answers_the_prometheus_text_format(client: FlaskClient) -> None:
    client.post("/predict", json=ROW)
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    expected = {
        "modelserve_requests": "counter",
        "modelserve_request_duration_seconds": "histogram",
        "modelserve_requests_in_flight": "gauge",
        "modelserve_queue_wait_seconds": "histogram",
        "modelserve_model_call_seconds": "histogram",
        "modelserve_batch_size": "histogram",
        "modelserve_request_rows": "histogram",
        "modelserve_cache_hits": "counter",
        "modelserve_cache_misses": "counter",
        "modelserve_model_load_seconds": "histogram",
        "modelserve_model_load_failures": "counter",
        "modelserve_model_version_loaded": "gauge",
        "modelserve_rate_limited": "counter",
        "modelserve_unauthenticated": "counter",
    }
    assert {name: families[name].type for name in expected} == expected
    # The scrape being answered is the one request in flight.
    (in_flight,) = families["modelserve_requests_in_flight"].samples
    assert in_flight.value == 1
    buckets = [
        s.labels["le"]
        for s in families["modelserve_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert "0.0001" in buckets and "0.0005" in buckets


@pytest.mark.parametrize("public", [True, False])
def test_metrics_route_is_public_by_setting(settings: ServerSettings, public: bool) -> None:
    """With a key configured, a scrape without one answers only when the setting says so."""
    app = create_app(
        settings.model_copy(update={"metrics_public": public, "api_key": SecretStr("k" * 32)})
    )
    assert app.url_map.bind("x").match("/metrics", "GET")[0] == METRICS_ENDPOINT
    client = app.test_client()
    assert client.get("/metrics").status_code == (200 if public else 401)
    assert client.get("/metrics", headers={"X-API-Key": "k" * 32}).status_code == 200


def test_importing_the_app_does_not_import_prometheus_client() -> None:
    """The server's main process imports these before it prepared the multiprocess folder."""
    code = (
        "import sys, modelserve, modelserve.cli, modelserve.server, modelserve.app\n"
        "print('prometheus_client' in sys.modules, 'modelserve.metrics' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.split() == ["False", "False"], out.stderr
