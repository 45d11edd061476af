"""``GET /openapi.json``: an OpenAPI 3.1 document built from the app's routes and the models
it serves now.

Every rule of ``app.url_map`` becomes a path (HEAD and OPTIONS aside): its parameters from the
rule's converters, its summary from the view's docstring, its answers from
:data:`~.openapi_schemas.ENDPOINT_DOCS`, its security from :mod:`.auth` and its 429 from the
rate limits. A route that addresses a model also gets one path per served model and version
(``/models/iris/versions/1/predict``) whose request body is that version's input JSON Schema;
the templated path stays for any other name. The document is cached per published table
(:attr:`~modelserve.service.InferenceService.generation`), so a load or an unload changes it.

While authentication is on, the document is public (``MODELSERVE_PUBLIC_PATHS``), so that
Swagger UI can show the routes and its Authorize button; the model-specific paths and schemas
are in it only for a caller whose credential has the ``predict`` scope, and only for the
models that credential may use.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import orjson
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from werkzeug.routing import Rule

from .. import __version__
from ..keys import SCOPE_ADMIN
from ..keys import SCOPE_PREDICT
from ..serving import ServedModel
from ..serving import ServedVersion
from ..settings import ServerSettings
from . import auth
from ._handlers import get_handlers
from .limits import ROUTE_CLASSES
from .openapi_schemas import ENDPOINT_DOCS
from .openapi_schemas import ERROR_DESCRIPTIONS
from .openapi_schemas import METHOD_NOT_ALLOWED
from .openapi_schemas import TAG_DESCRIPTIONS
from .openapi_schemas import EndpointDoc
from .openapi_schemas import component_schemas
from .openapi_schemas import ref
from .openapi_schemas import request_body

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
EXTENSION_KEY = "modelserve.openapi"
#: Documents kept per table generation: one per distinct set of visible models.
_CACHE_SIZE = 32

_ARGUMENT = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?"
    r"(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>"
)
_SECURITY: list[dict[str, list[str]]] = [{"ApiKeyAuth": []}, {"BearerAuth": []}]
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
_NOT_SLASH = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "default": _NOT_SLASH,
    "string": _NOT_SLASH,
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "path": {"type": "string", "minLength": 1},
    "uuid": {"type": "string", "format": "uuid"},
}


@bp.get("/openapi.json")
def spec() -> Response:
    """The OpenAPI 3.1 document of this server: every route, each model's input schema."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    # Read before building: a table published meanwhile makes this one stale, not cached
    # under the new generation.
    generation = get_handlers().service.generation
    visible = _visible_models()
    key = (visible is not None, tuple(visible or ()))
    cache: _Cache = app.extensions[EXTENSION_KEY]
    body = cache.get(generation, key)
    if body is None:
        body = orjson.dumps(build_document(app, visible))
        cache.put(generation, key, body)
    return Response(body, mimetype="application/json")


class _Cache:
    """The serialised documents of the current table generation, by visible models."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._bodies: dict[tuple[bool, tuple[str, ...]], bytes] = {}

    def get(self, generation: int, key: tuple[bool, tuple[str, ...]]) -> bytes | None:
        with self._lock:
            if generation != self._generation:
                return None
            return self._bodies.get(key)

    def put(self, generation: int, key: tuple[bool, tuple[str, ...]], body: bytes) -> None:
        with self._lock:
            if generation < self._generation:
                return  # built from a table that was replaced while it was being built
            if generation != self._generation or len(self._bodies) >= _CACHE_SIZE:
                self._generation, self._bodies = generation, {}
            self._bodies[key] = body


def _visible_models() -> list[str] | None:
    """The models whose paths and schemas this caller may see; ``None``: none at all (an
    anonymous caller while authentication is on)."""
    names = get_handlers().service.names()
    if not auth.authentication_enabled():
        return names
    principal = auth.current_principal()
    if principal is None or SCOPE_PREDICT not in principal.scopes:
        return None
    return [n for n in names if principal.allows(SCOPE_PREDICT, n)]


def build_document(app: Flask, visible: Iterable[str] | None) -> dict[str, Any]:
    """The OpenAPI document of ``app``.

    :param visible: the models to describe one by one (their paths, their schemas);
        ``None`` describes only the templated routes.
    """
    handlers = get_handlers()
    service = handlers.service
    settings = service.settings
    shown = set(visible) if visible is not None else set()
    models = [m for m in service.models() if m.name in shown]
    default_name = service.default_name()
    default = None
    if default_name in shown:
        found = service.find_model(default_name) if default_name else None
        default = found.default if found is not None else None
    builder = _Builder(app, settings)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        builder.add_rule(rule, models, default)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "modelserve",
            "version": __version__,
            "description": _DESCRIPTION,
        },
        "tags": builder.tags(),
        "paths": builder.paths,
        "components": {
            "schemas": component_schemas(),
            "responses": {"MethodNotAllowed": METHOD_NOT_ALLOWED},
            "securitySchemes": {
                "ApiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "An API key (MODELSERVE_API_KEY, or a key of "
                    "MODELSERVE_KEYS_FILE) with the predict or admin scope",
                },
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "API key or JWT",
                    "description": "Authorization: Bearer <API key or JWT>; a JWT's scopes "
                    f"are read from its {settings.jwt_scopes_claim!r} claim",
                },
            },
        },
    }


_DESCRIPTION = (
    "Model serving: the seed routes (/predict, /predict_batch, /predict_image...), the Open "
    "Inference Protocol (/v2) and the repository API. Paths under `/models/{name}` are listed "
    "once per served model and version, with that model's input schema as the request body, "
    "and once templated for any name.\n\n"
    "Every error has the body of the Error schema. Scopes: reads and inference need "
    "`predict`, the repository API `admin` (x-modelserve-scope on each operation). Every path "
    "answers 405 (MethodNotAllowed, with an Allow header) for a method it does not serve."
)


class _Builder:
    """Collects the paths of one document."""

    def __init__(self, app: Flask, settings: ServerSettings) -> None:
        self._app = app
        self._settings = settings
        self._limited = set(settings.rate_limits())
        self._auth_on = auth.authentication_enabled()
        self._used_ids: set[str] = set()
        self._tags: dict[str, str] = {}
        self.paths: dict[str, dict[str, Any]] = {}

    def tags(self) -> list[dict[str, str]]:
        """The tags in use: the blueprints' in :data:`TAG_DESCRIPTIONS` order, the models'
        after ``ops``, then any other."""
        order = list(TAG_DESCRIPTIONS)
        models = sorted(t for t in self._tags if t.startswith("model: "))
        order[1:1] = models
        order += sorted(t for t in self._tags if t not in order)
        return [{"name": t, "description": self._tags[t]} for t in order if t in self._tags]

    def add_rule(
        self, rule: Rule, models: list[ServedModel], default: ServedVersion | None
    ) -> None:
        """Add the rule's operations: templated, then one path per model (and version) of
        a kind the route serves."""
        endpoint = rule.endpoint
        doc = ENDPOINT_DOCS.get(endpoint, EndpointDoc(ok={"description": "Success"}))
        path, parameters = _openapi_path(rule.rule)
        methods = sorted((rule.methods or set()) - _IGNORED_METHODS)
        group = endpoint.rpartition(".")[0] or endpoint
        self._tags.setdefault(group, TAG_DESCRIPTIONS.get(group, f"The {group} routes"))
        has_name = "name" in rule.arguments
        sv = default if not has_name else None
        for method in methods:
            self._add(path, method, rule, doc, parameters, sv, group)
        if not has_name or not doc.kinds:
            return
        by_version = "version" in rule.arguments
        kept = [p for p in parameters if p["name"] not in ("name", "version")]
        for model in models:
            if by_version:
                chosen = [model.versions[n] for n in sorted(model.versions)]
            else:
                chosen = [model.default] if model.default is not None else []
            tag = f"model: {model.name}"
            for sv in chosen:
                if sv.signature.kind not in doc.kinds:
                    continue
                self._tags.setdefault(tag, f"The routes of model {model.name}, with its schemas")
                concrete = path.replace("{name}", quote(model.name, safe=""))
                concrete = concrete.replace("{version}", str(sv.version))
                for method in methods:
                    self._add(concrete, method, rule, doc, kept, sv, tag)

    def _add(
        self,
        path: str,
        method: str,
        rule: Rule,
        doc: EndpointDoc,
        parameters: list[dict[str, Any]],
        sv: ServedVersion | None,
        tag: str,
    ) -> None:
        endpoint = rule.endpoint
        summary, description = _docstring(self._app, endpoint)
        summary = summary or doc.ok.get("description", endpoint)
        scope = auth.required_scope(endpoint, method)
        operation: dict[str, Any] = {
            "tags": [tag],
            "operationId": self._operation_id(method, path),
            "summary": summary,
            "x-modelserve-scope": scope,
            "x-modelserve-endpoint": endpoint,
        }
        if description:
            operation["description"] = description
        params = [*parameters, *doc.query]
        if doc.body == "v2_infer":
            params.append(
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "description": "With a binary body: the length of its JSON header",
                    "schema": {"type": "integer", "minimum": 0},
                }
            )
        if params:
            operation["parameters"] = params
        if doc.body is not None and method not in auth.SAFE_METHODS:
            operation["requestBody"] = request_body(doc.body, sv, self._settings)
        statuses = set(doc.errors)
        secured = scope == SCOPE_ADMIN or (self._auth_on and not auth.is_public_path(path))
        if secured:
            operation["security"] = _SECURITY
            statuses.add(403)
            if self._auth_on:
                statuses.add(401)
        if ROUTE_CLASSES.get(endpoint) in self._limited:
            statuses.update((429, 503))  # 503: limits fail closed and the storage is down
        responses: dict[str, Any] = {str(doc.status): doc.ok}
        for status in sorted(statuses | set(doc.others)):
            responses[str(status)] = doc.others.get(status) or _error_response(status)
        operation["responses"] = responses
        self.paths.setdefault(path, {})[method.lower()] = operation

    def _operation_id(self, method: str, path: str) -> str:
        base = method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_")
        candidate, n = base, 1
        while candidate in self._used_ids:
            n += 1
            candidate = f"{base}_{n}"
        self._used_ids.add(candidate)
        return candidate


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}
        }
    elif status in (401, 403):
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "How to authenticate",
                "schema": {"type": "string"},
            }
        }
    return response


def _openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """``/models/<name>/versions/<int:version>`` as an OpenAPI path, and its parameters."""
    parameters: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        converter = match.group("converter") or "default"
        name = match.group("name")
        schema = _CONVERTER_SCHEMAS.get(converter, {"type": "string"})
        if converter == "any" and match.group("args"):
            schema = {"enum": [a.strip(" '\"") for a in match.group("args").split(",")]}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _ARGUMENT.sub(replace, rule), parameters


def _docstring(app: Flask, endpoint: str) -> tuple[str, str]:
    """The view's docstring as a summary (its first paragraph, as plain text) and a
    description (the rest, as Markdown: reST's double backticks become single ones)."""
    view = app.view_functions.get(endpoint)
    text = inspect.cleandoc(view.__doc__ or "") if view is not None else ""
    head, _, rest = text.partition("\n\n")
    return " ".join(head.replace("``", "").split()), rest.strip().replace("``", "`")


def init_app(app: Flask) -> None:
    """Serve the document; its cache lives with the app."""
    app.extensions[EXTENSION_KEY] = _Cache()
    app.register_blueprint(bp)
