"""``/openapi.json``: a valid OpenAPI 3.1 document of every route and every served model,
that follows loads and unloads and shows anonymous callers no model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from modelserve.api.openapi_schemas import ENDPOINT_DOCS
from modelserve.api.openapi_schemas import to_openapi
from modelserve.app import create_app
from modelserve.codecs import tables
from modelserve.codecs.schema import array_schema
from modelserve.codecs.schema import object_schema
from modelserve.keys import create_key
from modelserve.settings import ServerSettings

ADMIN_KEY = "a" * 40


def _document(client: FlaskClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = client.get("/openapi.json", headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body: dict[str, Any] = resp.get_json()
    return body


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every Schema Object of a document: the values of ``schema`` keys and the components."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                found.append(value)
            else:
                found += _schemas(value)
    elif isinstance(node, list):
        for item in node:
            found += _schemas(item)
    return found


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    doc = _document(client)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the 3.1 schema
    # OpenAPI 3.1 schemas are JSON Schema 2020-12 (the validator above does not look inside
    # them): no draft-07 tuple ``items: [...]``, no ``$schema`` of another draft.
    schemas = _schemas(doc["paths"]) + list(doc["components"]["schemas"].values())
    assert len(schemas) > 100
    for schema in schemas:
        Draft202012Validator.check_schema(schema)
        assert "$schema" not in schema and not isinstance(schema.get("items"), list)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_rule_of_the_app_is_a_path_with_its_methods(app: Flask, client: FlaskClient) -> None:
    doc = _document(client)
    # One path may have several rules (GET /jobs lists, POST /jobs submits).
    wanted: dict[str, dict[str, str]] = {}
    for rule in app.url_map.iter_rules():
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        wanted.setdefault(_openapi_path(rule.rule), {}).update(
            dict.fromkeys(methods, rule.endpoint)
        )
    for path, endpoints in wanted.items():
        assert path in doc["paths"], path
        assert set(doc["paths"][path]) == set(endpoints), path
        for method, operation in doc["paths"][path].items():
            assert operation["x-modelserve-endpoint"] == endpoints[method], (path, method)


def test_every_endpoint_is_described(app: Flask) -> None:
    """A new route must say what it answers (api/openapi_schemas.py ENDPOINT_DOCS)."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints - set(ENDPOINT_DOCS) == set()
    assert set(ENDPOINT_DOCS) <= endpoints  # no stale entry


def test_each_model_route_has_the_models_own_input_schema(
    app: Flask, client: FlaskClient, settings: ServerSettings
) -> None:
    doc = _document(client)
    sv = app.extensions["modelserve.handlers"].service.resolve("iris")
    longest = settings.max_string_length
    one = to_openapi(object_schema(sv.signature, settings.allow_extra_fields, longest))
    row = to_openapi(array_schema(sv.signature, longest))
    assert "$schema" not in one and row["prefixItems"] and row["items"] is False
    for path in ("/models/iris/predict", "/models/iris/versions/1/predict", "/predict"):
        assert _body_schema(doc, path) == one, path
    batch = _body_schema(doc, "/models/iris/predict_batch")["properties"]["instances"]
    assert batch["items"] == {"anyOf": [one, row]}
    assert batch["maxItems"] == settings.max_batch_rows
    forest = _body_schema(doc, "/models/forest/predict")
    forest_sig = app.extensions["modelserve.handlers"].service.resolve("forest").signature
    assert forest != one and forest["required"] == forest_sig.feature_names
    # The templated route takes any model: no one model's schema.
    assert "properties" not in _body_schema(doc, "/models/{name}/predict")
    infer = _body_schema(doc, "/v2/models/iris/infer")
    assert infer["properties"]["inputs"]["items"]["properties"]["name"]["enum"] == ["input"]


def test_the_error_answers_have_the_error_body(client: FlaskClient) -> None:
    doc = _document(client)
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "type", "status"]
    predict = doc["paths"]["/models/iris/predict"]["post"]["responses"]
    assert set(predict) == {"200", "400", "404", "413", "415", "422", "503"}
    for status in ("400", "404", "413", "415", "422", "503"):
        assert predict[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    # A real error matches the schema's required keys.
    resp = client.post("/models/iris/predict", json={"sepal_length": "x"})
    assert resp.status_code == 400 and set(error["required"]) <= set(resp.get_json())
    # Admin routes answer 403 even with authentication off (no credential could open them).
    load = doc["paths"]["/v2/repository/models/{name}/load"]["post"]
    assert load["x-modelserve-scope"] == "admin" and "403" in load["responses"]
    assert load["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    # Predict routes need nothing while authentication is off.
    assert "security" not in doc["paths"]["/predict"]["post"]
    assert "MethodNotAllowed" in doc["components"]["responses"]


def test_summaries_come_from_the_view_docstrings(client: FlaskClient) -> None:
    doc = _document(client)
    assert doc["paths"]["/predict"]["post"]["summary"] == "Score one object of named features."
    assert doc["paths"]["/v2/models/{name}/infer"]["post"]["summary"].startswith(
        "Inference; the body is JSON, or a JSON header plus binary tensors"
    )
    image = doc["paths"]["/predict_image"]["post"]
    assert image["summary"].startswith("Classify the image file(s)")
    assert image["description"].startswith("A raw body with an `image/*` content type")
    # A view without a docstring is summed up by its answer.
    assert doc["paths"]["/models"]["get"]["summary"] == "Every model and its versions"
    tags = [t["name"] for t in doc["tags"]]
    assert tags[:3] == ["ops", "model: forest", "model: iris"] and "static" in tags


def test_the_document_follows_unloads_and_loads(repo: Path) -> None:
    app = create_app(
        ServerSettings(profile="testing", model_path=repo, default_model="iris", api_key=ADMIN_KEY)
    )
    client = app.test_client()
    key = {"X-API-Key": ADMIN_KEY}
    before = _document(client, key)
    assert "/models/forest/predict" in before["paths"]
    assert (
        client.get("/openapi.json", headers=key).data
        == client.get("/openapi.json", headers=key).data
    )  # cached, byte for byte
    assert client.post("/v2/repository/models/forest/unload", headers=key).status_code == 200
    after = _document(client, key)
    assert not [p for p in after["paths"] if p.startswith(("/models/forest", "/v2/models/forest"))]
    assert "/models/iris/predict" in after["paths"]
    assert "/models/{name}/predict" in after["paths"]  # the templated route stays
    assert client.post("/v2/repository/models/forest/load", headers=key).status_code == 200
    assert "/models/forest/predict" in _document(client, key)["paths"]


@pytest.fixture
def secured(repo: Path, tmp_path: Path) -> tuple[FlaskClient, dict[str, str]]:
    path = tmp_path / "keys.toml"
    keys = {
        "all": create_key(path, "all", ["predict"]),
        "iris": create_key(path, "iris-only", ["predict"], ["iris"]),
        "admin": create_key(path, "ops", ["admin"]),
    }
    app = create_app(
        ServerSettings(profile="testing", model_path=repo, default_model="iris", keys_file=path)
    )
    return app.test_client(), keys


def _model_paths(doc: dict[str, Any]) -> set[str]:
    return {p for p in doc["paths"] if re.match(r"^(/v2)?/models/[^{]", p)}


def test_with_auth_on_the_document_shows_each_caller_its_models(
    secured: tuple[FlaskClient, dict[str, str]],
) -> None:
    client, keys = secured
    anonymous = _document(client)  # public: Swagger UI needs it before Authorize
    validate(anonymous)
    assert _model_paths(anonymous) == set()
    assert "properties" not in _body_schema(anonymous, "/predict")  # not even the default's
    predict = anonymous["paths"]["/models/{name}/predict"]["post"]
    assert predict["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert {"401", "403"} <= set(predict["responses"])
    assert "security" not in anonymous["paths"]["/health"]["get"]  # public
    schemes = anonymous["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKeyAuth"]["description"],
    }
    assert schemes["BearerAuth"]["scheme"] == "bearer"

    every = _model_paths(_document(client, {"X-API-Key": keys["all"]}))
    assert "/models/forest/predict" in every and "/models/iris/predict" in every
    iris_only = _model_paths(_document(client, {"Authorization": f"Bearer {keys['iris']}"}))
    assert iris_only and all("iris" in p for p in iris_only)
    assert _model_paths(_document(client, {"X-API-Key": keys["admin"]})) == set()
    # A wrong key on a public path is not an error, but shows nothing either.
    assert _model_paths(_document(client, {"X-API-Key": "wrong"})) == set()


def test_rate_limited_routes_list_429(repo: Path) -> None:
    app = create_app(
        ServerSettings(
            profile="testing", model_path=repo, default_model="iris", rate_limit="5/second"
        )
    )
    doc = _document(app.test_client())
    assert "429" in doc["paths"]["/predict"]["post"]["responses"]
    assert "Retry-After" in doc["paths"]["/predict"]["post"]["responses"]["429"]["headers"]
    assert "429" not in doc["paths"]["/health"]["get"]["responses"]


def test_a_document_of_a_replaced_table_is_not_cached_as_the_new_one() -> None:
    from modelserve.api.openapi import _Cache

    cache = _Cache()
    key = (True, ("iris",))
    cache.put(2, key, b"new")
    cache.put(1, key, b"old")  # finished building after generation 2 was cached
    assert cache.get(2, key) == b"new" and cache.get(1, key) is None
    cache.put(3, key, b"newer")
    assert cache.get(2, key) is None and cache.get(3, key) == b"newer"


BATCH_PATHS = (
    "/predict_batch",
    "/models/iris/predict_batch",
    "/models/iris/versions/1/predict_batch",
)


def test_the_batch_routes_document_their_table_formats(client: FlaskClient) -> None:
    """Table bodies and answers, ``?format=`` and the columns answer, as api/predict.py serves
    them: the real rows and columns answers validate against the documented schema."""
    doc = _document(client)
    row = [5.1, 3.5, 1.4, 0.2]
    for path in BATCH_PATHS:
        operation = doc["paths"][path]["post"]
        body = operation["requestBody"]["content"]
        assert set(body) == {"application/json", *tables.TABLE_TYPES}, path
        for media in tables.TABLE_TYPES:
            assert body[media]["schema"] == {"type": "string", "format": "binary"}
        assert body["application/json"]["schema"]["properties"]["format"]["enum"] == [
            "rows",
            "columns",
        ]
        (fmt,) = [p for p in operation["parameters"] if p["name"] == "format"]
        assert fmt["in"] == "query" and fmt["schema"] == {"enum": ["rows", "columns"]}
        answers = operation["responses"]
        assert set(answers["200"]["content"]) == set(tables.ANSWER_TYPES), path
        assert "415" in answers
        schema = {
            **answers["200"]["content"]["application/json"]["schema"],
            "components": doc["components"],
        }
        validator = Draft202012Validator(schema)
        for query in ("", "?format=columns"):
            resp = client.post(path + query, json={"instances": [row, row]})
            assert resp.status_code == 200
            validator.validate(resp.get_json())
        columns = client.post(path, json={"instances": [row], "format": "columns"}).get_json()
        assert columns["format"] == "columns"
        validator.validate(columns)
        for bad in ({"format": "wide"}, {"predictions": [{"instance_id": 0}]}):
            assert not validator.is_valid({**columns, **bad})
        resp = client.post(path, data=b"1,2,3,4", content_type="text/csv")
        assert resp.status_code == 415 and resp.mimetype == "application/json"
        for media in tables.ANSWER_TYPES[1:]:
            resp = client.post(path, json={"instances": [row]}, headers={"Accept": media})
            assert resp.status_code == 200 and resp.mimetype == media
