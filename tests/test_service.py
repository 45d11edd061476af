"""The service with batching on: concurrent mixed requests, failure isolation, busy answers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from flask import Flask

from modelserve.app import create_app
from modelserve.errors import ServerBusy
from modelserve.settings import ServerSettings

from . import models
from .conftest import LiveServer


def close(got: Any, expected: Any) -> None:
    """Equal up to float round-off: a batched matrix product may differ in the last ulp."""
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-12, atol=1e-15)


def mixed_requests(n: int) -> list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], None]]]:
    """(url, body, check) triples over two models, single rows and batches."""
    iris, forest = models.iris(), models.forest()
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        if i % 3 == 0:
            row = iris.x[int(rng.integers(150))]
            labels, proba = iris.expected(row[None, :])

            def check(body: dict[str, Any], labels: Any = labels, proba: Any = proba) -> None:
                assert body["prediction"] == labels[0]
                close(body["probability"], proba[0])

            out.append(("/models/iris/predict", models.features_of(iris, row), check))
        elif i % 3 == 1:
            row = forest.x[int(rng.integers(569))]
            labels, proba = forest.expected(row[None, :])

            def check(body: dict[str, Any], labels: Any = labels, proba: Any = proba) -> None:
                assert body["prediction"] == labels[0]
                close(body["probability"], proba[0])

            out.append(("/models/forest/predict", models.features_of(forest, row), check))
        else:
            idx = rng.integers(569, size=int(rng.integers(2, 9)))
            labels, proba = forest.expected(forest.x[idx])

            def check(body: dict[str, Any], labels: Any = labels, proba: Any = proba) -> None:
                assert [p["prediction"] for p in body["predictions"]] == labels.tolist()
                close([p["probability"] for p in body["predictions"]], proba)

            out.append(
                ("/models/forest/predict_batch", {"instances": forest.x[idx].tolist()}, check)
            )
    return out


def test_200_concurrent_mixed_requests_get_their_own_answers(repo: Path) -> None:
    settings = ServerSettings(profile="testing", model_path=repo, batch_min_cost_ms=0)
    app = create_app(settings)
    service = app.extensions["modelserve"]
    batchers = [sv.batcher for model in service.models() for sv in model.versions.values()]
    assert all(batchers) and len(batchers) == 2, "every model is batched with batch_min_cost_ms=0"
    work = mixed_requests(200)

    def call(item: tuple[str, dict[str, Any], Callable[[dict[str, Any]], None]]) -> None:
        url, body, check = item
        resp = app.test_client().post(url, json=body)
        assert resp.status_code == 200, resp.json
        check(resp.json)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(call, work))
    served = sum(b.batched_calls for b in batchers if b is not None)
    batches = sum(b.batches for b in batchers if b is not None)
    assert served == 200 and batches <= served


def test_one_bad_row_fails_only_its_own_request(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    trained = models.iris()
    strict = FunctionTransformer(models.reject_negative_sepal, validate=True).fit(trained.x)
    models.write_model(
        tmp_path, "guarded", models.Trained(trained.model, trained.x, strict, trained.feature_names)
    )
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path, batch_min_cost_ms=0))
    assert app.extensions["modelserve"].resolve("guarded").batcher is not None
    good = models.features_of(trained, trained.x[0])
    bodies = [good if i % 10 else {**good, "sepal_length": -1.0} for i in range(100)]

    def call(body: dict[str, Any]) -> int:
        return int(app.test_client().post("/predict", json=body).status_code)

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, bodies))
    assert statuses == [200 if i % 10 else 422 for i in range(100)]


def test_batching_off_calls_the_runtime_directly(repo: Path) -> None:
    app = create_app(ServerSettings(profile="testing", model_path=repo, max_batch_size=1))
    service = app.extensions["modelserve"]
    assert [sv.batcher for model in service.models() for sv in model.versions.values()] == [
        None,
        None,
    ]
    row = models.features_of(models.iris(), models.iris().x[0])
    assert app.test_client().post("/models/iris/predict", json=row).status_code == 200


def test_manifest_can_turn_batching_off_per_model(tmp_path: Path) -> None:
    models.write_model(
        tmp_path, "iris", models.iris(), manifest={"batching": {"max_batch_size": 1}}
    )
    models.write_model(tmp_path, "forest", models.forest())
    service = create_app(
        ServerSettings(profile="testing", model_path=tmp_path, batch_min_cost_ms=0)
    ).extensions["modelserve"]
    batched = {m.name for m in service.models() if m.default and m.default.batcher}
    assert batched == {"forest"}


def test_only_costly_models_are_batched_unless_the_manifest_says(tmp_path: Path) -> None:
    """A call cheaper than batch_min_cost_ms is not worth a thread hand-off."""
    models.write_model(tmp_path, "cheap", models.iris())
    models.write_model(
        tmp_path, "forced", models.iris(), manifest={"batching": {"max_latency_ms": 2}}
    )
    service = create_app(
        ServerSettings(profile="testing", model_path=tmp_path, batch_min_cost_ms=1000.0)
    ).extensions["modelserve"]
    cheap, forced = service.resolve("cheap"), service.resolve("forced")
    assert cheap.model.call_ms is not None and cheap.model.call_ms < 1000.0
    assert cheap.batcher is None
    assert forced.batcher is not None


def test_server_busy_is_503_with_retry_after(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = app.extensions["modelserve.handlers"].seed

    def busy(*args: object) -> None:
        raise ServerBusy("Model iris has 256 requests waiting; retry shortly", retry_after=2)

    monkeypatch.setattr(seed, "predict_one", busy)
    resp = app.test_client().post("/predict", json={})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert resp.json["type"] == "ServerBusy"


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_concurrent_mixed_requests_over_a_real_server(
    repo: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    server = live_server(
        [str(repo), "--workers", "2", "--threads", "16", "--server", server_name],
        env={"MODELSERVE_BATCH_MIN_COST_MS": "0"},  # batch every model, so batching is tested
    )
    work = mixed_requests(200)

    def call(item: tuple[str, dict[str, Any], Callable[[dict[str, Any]], None]]) -> None:
        url, body, check = item
        resp = requests.post(server.url + url, json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        check(resp.json())

    with ThreadPoolExecutor(48) as pool:
        list(pool.map(call, work))
