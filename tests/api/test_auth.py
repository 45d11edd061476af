"""Authentication over HTTP: 401/403 JSON with WWW-Authenticate, scopes per route, models per
key, revocation while the app runs, JWTs; and a walk over every route of the app."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from modelserve.app import create_app
from modelserve.cli import main
from modelserve.keys import create_key
from modelserve.settings import ServerSettings

from .. import models

SECRET = "j" * 64
ISSUER = "https://login.example"
AUDIENCE = "modelserve"
#: Inference routes end with one of these; everything else that is not a read is admin.
INFERENCE_SUFFIXES = ("/predict", "/predict_batch", "/predict_image", "/predict_image_base64")
READS = {"GET", "HEAD", "OPTIONS"}
PUBLIC = {
    "/health",
    "/v2/health/live",
    "/v2/health/ready",
    "/static/style.css",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/static/style.css",
}


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "keys.toml"
    return {
        "path": path,
        "predict": create_key(path, "predict-all", ["predict"]),
        "iris": create_key(path, "predict-iris", ["predict"], ["iris"]),
        "admin": create_key(path, "ops", ["admin"]),
    }


def _app(repo: Path, **kwargs: Any) -> Flask:
    settings = ServerSettings(profile="testing", model_path=repo, default_model="iris", **kwargs)
    return create_app(settings)


@pytest.fixture
def secured(repo: Path, keys: dict[str, Any]) -> Flask:
    return _app(
        repo, keys_file=keys["path"], jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )


def _key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc", "exp": now + 60, "scope": "predict"}
    claims.update(overrides)
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _row() -> dict[str, float]:
    return models.features_of(models.iris(), models.iris().x[0])


def _assert_error(resp: TestResponse, status: int, type_name: str, challenge: str) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.json
    assert body is not None and set(body) == {"error", "type", "status"}
    assert body["type"] == type_name and body["status"] == "error"
    assert resp.headers["WWW-Authenticate"] == challenge
    message: str = body["error"]
    return message


REALM = 'Bearer realm="modelserve"'
INVALID = f'{REALM}, error="invalid_token"'


def test_anonymous_gets_401_with_a_challenge(secured: Flask) -> None:
    client = secured.test_client()
    message = _assert_error(client.post("/predict", json=_row()), 401, "Unauthenticated", REALM)
    assert "X-API-Key" in message
    assert client.get("/health").status_code == 200  # public
    assert client.get("/v2/health/ready").status_code == 200


def test_a_wrong_key_gets_401_invalid_token(secured: Flask) -> None:
    client = secured.test_client()
    resp = client.post("/predict", json=_row(), headers=_key("ms_not-a-key"))
    assert _assert_error(resp, 401, "Unauthenticated", INVALID) == "Invalid API key"
    resp = client.post("/predict", json=_row(), headers={"Authorization": "Basic eDp5"})
    _assert_error(resp, 401, "Unauthenticated", INVALID)


def test_keys_work_in_either_header(secured: Flask, keys: dict[str, Any]) -> None:
    client = secured.test_client()
    assert client.post("/predict", json=_row(), headers=_key(keys["predict"])).status_code == 200
    assert client.post("/predict", json=_row(), headers=_bearer(keys["predict"])).status_code == 200


def test_wrong_scope_and_wrong_model_get_403(secured: Flask, keys: dict[str, Any]) -> None:
    client = secured.test_client()
    scope_admin = f'{REALM}, error="insufficient_scope", scope="admin"'
    scope_predict = f'{REALM}, error="insufficient_scope", scope="predict"'
    resp = client.post("/v2/repository/models/iris/unload", headers=_key(keys["predict"]))
    assert "lacks the 'admin' scope" in _assert_error(resp, 403, "Forbidden", scope_admin)
    resp = client.post("/predict", json=_row(), headers=_key(keys["admin"]))
    _assert_error(resp, 403, "Forbidden", scope_predict)
    iris = _key(keys["iris"])
    assert client.post("/models/iris/predict", json=_row(), headers=iris).status_code == 200
    assert client.post("/predict", json=_row(), headers=iris).status_code == 200  # default: iris
    resp = client.post("/models/forest/predict", json={}, headers=iris)
    assert "may not use model 'forest'" in _assert_error(resp, 403, "Forbidden", scope_predict)
    _assert_error(
        client.post("/v2/models/forest/infer", json={}, headers=iris),
        403,
        "Forbidden",
        scope_predict,
    )
    _assert_error(client.get("/v2/models/forest", headers=iris), 403, "Forbidden", scope_predict)


def test_a_key_revoked_with_the_cli_stops_working_within_two_seconds(
    secured: Flask, keys: dict[str, Any]
) -> None:
    client = secured.test_client()
    headers = _key(keys["predict"])
    assert client.post("/predict", json=_row(), headers=headers).status_code == 200
    result = CliRunner().invoke(
        main, ["keys", "revoke", "predict-all", "--keys-file", str(keys["path"])]
    )
    assert result.exit_code == 0, result.output
    revoked = time.monotonic()
    while (status := client.post("/predict", json=_row(), headers=headers).status_code) == 200:
        assert time.monotonic() - revoked < 2.0, "the revoked key still works after 2 s"
        time.sleep(0.05)
    assert status == 401
    assert client.post("/predict", json=_row(), headers=_key(keys["iris"])).status_code == 200


def test_a_key_created_with_the_cli_starts_working_without_a_restart(
    secured: Flask, keys: dict[str, Any]
) -> None:
    client = secured.test_client()
    result = CliRunner().invoke(main, ["keys", "create", "new", "--keys-file", str(keys["path"])])
    new = result.stdout.strip()
    deadline = time.monotonic() + 2.0
    while client.post("/predict", json=_row(), headers=_key(new)).status_code != 200:
        assert time.monotonic() < deadline, "a new key was not accepted within 2 s"
        time.sleep(0.05)


def test_jwts_expired_forged_and_scoped(secured: Flask) -> None:
    client = secured.test_client()
    assert client.post("/predict", json=_row(), headers=_bearer(_token())).status_code == 200
    expired = _token(exp=int(time.time()) - 3600)
    message = _assert_error(
        client.post("/predict", json=_row(), headers=_bearer(expired)),
        401,
        "Unauthenticated",
        INVALID,
    )
    assert message == "The token has expired"
    forged = jwt.encode(
        jwt.decode(_token(scope="admin"), options={"verify_signature": False}),
        "f" * 64,
        algorithm="HS256",
    )
    resp = client.post("/v2/repository/index", headers=_bearer(forged))
    assert "signature" in _assert_error(resp, 401, "Unauthenticated", INVALID)
    resp = client.post("/v2/repository/index", headers=_bearer(_token()))
    _assert_error(resp, 403, "Forbidden", f'{REALM}, error="insufficient_scope", scope="admin"')
    admin = _bearer(_token(scope="admin predict"))
    assert client.post("/v2/repository/index", headers=admin).status_code == 200
    wrong_audience = _token(aud="someone-else")
    resp = client.post("/predict", json=_row(), headers=_bearer(wrong_audience))
    assert "aud" in _assert_error(resp, 401, "Unauthenticated", INVALID)


def test_auth_errors_are_never_cached(secured: Flask) -> None:
    resp = secured.test_client().post("/predict", json=_row())
    assert resp.status_code == 401 and resp.headers["Cache-Control"] == "no-store"


def test_unknown_routes_answer_404_before_auth(secured: Flask) -> None:
    client = secured.test_client()
    assert client.get("/nope").status_code == 404
    assert client.get("/v2/repository/index").status_code == 405


def test_public_paths_are_configurable(repo: Path, keys: dict[str, Any]) -> None:
    app = _app(repo, keys_file=keys["path"], public_paths=["/v2/*"])
    client = app.test_client()
    assert client.get("/health").status_code == 401  # no longer public
    assert client.get("/v2/models/iris").status_code == 200
    # An admin route is never public, whatever the setting says.
    resp = client.post("/v2/repository/models/iris/unload")
    _assert_error(resp, 401, "Unauthenticated", REALM)


def test_without_credentials_predict_is_open_and_admin_is_closed(client: FlaskClient) -> None:
    assert client.post("/predict", json=_row()).status_code == 200
    resp = client.post("/v2/repository/models/iris/load")
    message = _assert_error(
        resp, 403, "Forbidden", f'{REALM}, error="insufficient_scope", scope="admin"'
    )
    assert "modelserve keys create" in message
    # A key sent to a server without auth changes nothing: admin stays closed.
    resp = client.post("/v2/repository/models/iris/load", headers=_key("anything"))
    assert resp.status_code == 403


# -- every route x every method x {no credential, predict key, admin key} ---------------------


def _url(rule: Any) -> str:
    values = {"name": "iris", "version": "1", "filename": "style.css", "job_id": "0" * 24}
    url = str(rule.rule)
    for argument in rule.arguments:
        url = re.sub(rf"<(?:[^:<>]+:)?{argument}>", values[argument], url)
    assert "<" not in url, url
    return url


def _routes(app: Flask) -> Iterator[tuple[str, str, str]]:
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods or ()):
            yield rule.endpoint, method, _url(rule)


def _kind(method: str, url: str) -> str:
    if method == "OPTIONS":
        return "options"
    if url in PUBLIC:
        return "public"
    if method in READS or url.endswith(INFERENCE_SUFFIXES) or url.endswith("/infer"):
        return "predict"
    # Batch jobs: submitting one scores like /predict_batch; cancelling touches own jobs only.
    if url.endswith("/jobs") and method == "POST" or "/jobs/" in url and method == "DELETE":
        return "predict"
    return "admin"


def _call(client: FlaskClient, method: str, url: str, headers: dict[str, str]) -> int:
    return client.open(url, method=method, json={}, headers=headers).status_code


def test_every_route_needs_its_scope(repo: Path, keys: dict[str, Any]) -> None:
    """Proves, for every route the app has (not a list kept by hand), that no state-changing
    route is reachable without ``admin`` and that the rest needs ``predict``."""
    app = _app(repo, keys_file=keys["path"])
    client = app.test_client()
    routes = list(_routes(app))
    kinds = {_kind(method, url) for _, method, url in routes}
    assert kinds == {"options", "public", "predict", "admin"}
    admin_endpoints = {ep for ep, method, url in routes if _kind(method, url) == "admin"}
    assert admin_endpoints == {"v2.repository_index", "v2.repository_load", "v2.repository_unload"}
    denied = (401, 403)
    for endpoint, method, url in routes:
        kind = _kind(method, url)
        anonymous = _call(client, method, url, {})
        predict = _call(client, method, url, _key(keys["predict"]))
        admin = _call(client, method, url, _key(keys["admin"]))
        where = f"{method} {url} ({endpoint})"
        if kind in ("options", "public"):
            assert anonymous not in denied and admin not in denied, where
        elif kind == "predict":
            assert anonymous == 401 and predict not in denied and admin == 403, where
        else:
            assert anonymous == 401 and predict == 403 and admin not in denied, where


def test_every_state_changing_route_is_closed_when_auth_is_off(repo: Path) -> None:
    app = _app(repo)
    client = app.test_client()
    for endpoint, method, url in _routes(app):
        status = _call(client, method, url, {})
        kind = _kind(method, url)
        if kind == "admin":
            assert status == 403, f"{method} {url} ({endpoint}) answered {status}"
        else:
            assert status not in (401, 403), f"{method} {url} ({endpoint}) answered {status}"


def test_the_v2_admin_endpoints_need_admin() -> None:
    from modelserve.api.auth import required_scope
    from modelserve.api.v2 import ADMIN_ENDPOINTS

    assert ADMIN_ENDPOINTS
    assert {required_scope(endpoint, "POST") for endpoint in ADMIN_ENDPOINTS} == {"admin"}


def test_a_route_added_later_is_admin_unless_it_only_reads(
    repo: Path, keys: dict[str, Any]
) -> None:
    """Nothing lists the admin routes by hand: a new POST/PUT/DELETE is closed by default."""
    from flask import Blueprint

    app = _app(repo, keys_file=keys["path"])
    extra = Blueprint("extra", __name__)
    extra.add_url_rule(
        "/v2/repository/models/<name>/delete",
        "delete",
        lambda name: "gone",
        methods=["POST", "DELETE", "PUT", "PATCH"],
    )
    extra.add_url_rule("/v2/stats", "stats", lambda: "{}", methods=["GET"])
    app.register_blueprint(extra)
    client = app.test_client()
    for method in ("POST", "DELETE", "PUT", "PATCH"):
        url = "/v2/repository/models/iris/delete"
        assert _call(client, method, url, _key(keys["predict"])) == 403, method
        assert _call(client, method, url, _key(keys["admin"])) == 200, method
    assert _call(client, "GET", "/v2/stats", _key(keys["predict"])) == 200
    assert _call(client, "GET", "/v2/stats", {}) == 401
