"""The one request pipeline: refusals are observed like answers, and plans stay bounded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelserve import metrics
from modelserve.api.pipeline import PIPELINE_KEY
from modelserve.api.pipeline import RequestPipeline
from modelserve.app import create_app
from modelserve.logging import REQUEST_LOGGER
from modelserve.settings import ServerSettings

from .. import models

KEY = "ms_pipeline-test-key-0123456789abcdefghij"


def test_a_401_gets_its_id_its_line_and_its_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models.write_model(tmp_path, "iris", models.iris())
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path, api_key=SecretStr(KEY)))
    client = app.test_client()
    before = metrics.REGISTRY.get_sample_value("modelserve_unauthenticated_total") or 0.0
    with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
        refused = client.post("/predict", json={}, headers={"X-Request-ID": "no-key-1"})
        answered = client.get("/models", headers={"X-API-Key": KEY})
    assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "no-key-1"
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert answered.status_code == 200 and answered.headers["X-Request-ID"]
    after = metrics.REGISTRY.get_sample_value("modelserve_unauthenticated_total") or 0.0
    assert after - before == 1
    lines = [r.__dict__["fields"] for r in caplog.records if r.name == REQUEST_LOGGER]
    assert [(f["request_id"], f["status"], f["client"]) for f in lines[:1]] == [
        ("no-key-1", 401, None)
    ]
    assert lines[1]["status"] == 200 and lines[1]["client"] == "MODELSERVE_API_KEY"


def test_unmatched_requests_share_one_plan_whatever_their_method(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris())
    app = create_app(ServerSettings(profile="testing", model_path=tmp_path))
    client = app.test_client()
    pipeline = app.extensions[PIPELINE_KEY]
    assert isinstance(pipeline, RequestPipeline)
    assert app.before_request_funcs[None][0] == pipeline.before  # first of the hooks
    for method in ("BREW", "WHEN", "PURGE", "GET"):
        assert client.open("/no/such/path", method=method).status_code in (404, 405)
    assert client.open("/health", method="BREW").status_code == 405
    assert len(pipeline._plans) == 1  # one plan: every unmatched request, whatever its method
