"""Security headers, CORS for an allowlist only, and X-Forwarded-For trusted for N hops only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask import request
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.settings import ServerSettings

from .. import models


def _app(repo: Path, **kwargs: Any) -> Flask:
    return create_app(
        ServerSettings(profile="testing", model_path=repo, default_model="iris", **kwargs)
    )


def _row() -> dict[str, float]:
    return models.features_of(models.iris(), models.iris().x[0])


def test_nosniff_on_every_response(client: FlaskClient) -> None:
    for resp in (
        client.get("/health"),
        client.get("/nope"),
        client.post("/predict", json=_row()),
        client.post("/predict", json={"sepal_length": "x"}),
        client.post("/v2/repository/index"),
    ):
        assert resp.headers["X-Content-Type-Options"] == "nosniff", resp.status


def test_no_store_on_predictions_only(client: FlaskClient) -> None:
    assert client.post("/predict", json=_row()).headers["Cache-Control"] == "no-store"
    infer = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
    assert client.post("/v2/models/iris/infer", json=infer).headers["Cache-Control"] == "no-store"
    assert client.post("/predict", json={}).headers["Cache-Control"] == "no-store"  # errors too
    assert "Cache-Control" not in client.get("/models").headers


def test_csp_on_html_responses(repo: Path) -> None:
    app = _app(repo)
    app.add_url_rule("/page", "page", lambda: "<h1>hi</h1>")  # the web page to come
    client = app.test_client()
    page = client.get("/page")
    assert page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in client.get("/health").headers


def _preflight(client: FlaskClient, origin: str) -> Any:
    return client.options(
        "/predict",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    resp = _preflight(client, "https://app.example")
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = client.post("/predict", json=_row(), headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_cors_answers_only_allowed_origins(repo: Path) -> None:
    app = _app(repo, cors_origins=["https://app.example"], api_key="k" * 32)
    client = app.test_client()
    ok = _preflight(client, "https://app.example")  # a preflight carries no key: not a 401
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "x-api-key" in ok.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in ok.headers
    evil = _preflight(client, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in evil.headers
    resp = client.post(
        "/predict", json=_row(), headers={"Origin": "https://app.example", "X-API-Key": "k" * 32}
    )
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    denied = client.post("/predict", json=_row(), headers={"Origin": "https://app.example"})
    assert denied.status_code == 401
    assert "WWW-Authenticate" in denied.headers["Access-Control-Expose-Headers"]


def _ip_app(repo: Path, **kwargs: Any) -> FlaskClient:
    app = _app(repo, **kwargs)
    app.add_url_rule("/ip", "ip", lambda: request.remote_addr or "")
    return app.test_client()


def test_forwarded_for_is_ignored_without_trusted_proxies(repo: Path) -> None:
    client = _ip_app(repo)
    resp = client.get(
        "/ip", headers={"X-Forwarded-For": "6.6.6.6"}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert resp.get_data(as_text=True) == "10.0.0.9"


def test_forwarded_for_is_trusted_for_the_configured_hops_only(repo: Path) -> None:
    client = _ip_app(repo, proxy_hops=1)
    # The client forged 6.6.6.6; the one trusted proxy appended the address it saw.
    resp = client.get(
        "/ip",
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert resp.get_data(as_text=True) == "203.0.113.7"
    two = _ip_app(repo, proxy_hops=2)
    resp = two.get(
        "/ip",
        headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.4, 10.0.0.2"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert resp.get_data(as_text=True) == "198.51.100.4"
