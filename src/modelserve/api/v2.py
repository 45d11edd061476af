"""Open Inference Protocol: /v2, /v2/health/*, /v2/models/<name>/..., /v2/repository/*."""

from __future__ import annotations

import zlib

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import request

from .. import __version__
from .. import workers
from ..codecs.v2 import EXTENSIONS
from ..errors import InvalidInput
from ..errors import PayloadTooLarge
from ..errors import UnsupportedMediaType
from ._handlers import get_handlers
from ._json import json_response
from ._json import request_body

bp = Blueprint("v2", __name__, url_prefix="/v2")

HEADER_LENGTH = "Inference-Header-Content-Length"

#: Endpoints that change what the server serves. ``api/auth.py`` requires the ``admin`` scope
#: of them, and of every other endpoint that is neither a read nor an inference.
ADMIN_ENDPOINTS = frozenset({"v2.repository_load", "v2.repository_unload"})


def _flag(ok: bool, body: dict[str, object]) -> Response:
    """The protocol answers yes/no questions with 200 for true and a 4xx for false."""
    return json_response({**body, "ready": ok}, 200 if ok else 400)


@bp.get("")
def server_metadata() -> Response:
    return json_response({"name": "modelserve", "version": __version__, "extensions": EXTENSIONS})


@bp.get("/health/live")
def live() -> Response:
    return json_response({"live": True})


@bp.get("/health/ready")
def ready() -> Response:
    # A stopping worker (SIGTERM) is not ready: 503, not the protocol's 400 for "not yet".
    if workers.draining():
        return json_response({"ready": False}, 503)
    return _flag(get_handlers().v2.server_ready(), {})


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<int:version>")
def model_metadata(name: str, version: int | None = None) -> Response:
    return json_response(get_handlers().v2.model_metadata(name, version))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<int:version>/ready")
def model_ready(name: str, version: int | None = None) -> Response:
    return _flag(get_handlers().v2.model_ready(name, version), {"name": name})


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<int:version>/infer")
def infer(name: str, version: int | None = None) -> Response:
    """Inference; the body is JSON, or a JSON header plus binary tensors whose split point is
    the ``Inference-Header-Content-Length`` header. Any content type is accepted, as
    tritonclient sends none."""
    raw_length = request.headers.get(HEADER_LENGTH)
    header_length = None
    if raw_length is not None:
        try:
            header_length = int(raw_length)
        except ValueError:
            raise InvalidInput(f"{HEADER_LENGTH} must be an integer") from None
    body, json_length = get_handlers().v2.infer(name, version, _body(), header_length)
    if json_length is None:
        return Response(body, mimetype="application/json")
    response = Response(body, mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(json_length)
    return response


def _body() -> bytes:
    """The request body, inflated when the client compressed it (tritonclient's
    ``request_compression_algorithm``); the inflated size is capped like a plain body."""
    raw = request_body()
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding == "identity":
        return raw
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding} is not supported (gzip, deflate)")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"The {encoding} body is corrupt: {exc}") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(
            "The inflated request body is larger than the limit (MODELSERVE_MAX_CONTENT_LENGTH)"
        )
    return body


@bp.post("/repository/index")
def repository_index() -> Response:
    return json_response(get_handlers().admin.index())


@bp.post("/repository/models/<name>/load")
def repository_load(name: str) -> Response:
    get_handlers().admin.load(name)
    return json_response({})


@bp.post("/repository/models/<name>/unload")
def repository_unload(name: str) -> Response:
    get_handlers().admin.unload(name)
    return json_response({})
