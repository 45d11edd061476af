"""Fast JSON for Flask: an orjson provider, plus request/response helpers used by every route."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Request
from flask import Response
from flask import current_app
from flask import request
from flask.json.provider import JSONProvider

from ..errors import UnsupportedMediaType

DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(JSONProvider):
    """Flask JSON provider backed by orjson (numpy arrays serialise without Python loops)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=DUMP_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return current_app.response_class(
            orjson.dumps(obj, option=DUMP_OPTIONS), mimetype="application/json"
        )


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=DUMP_OPTIONS), status=status, mimetype="application/json"
    )


def json_body() -> bytes:
    """The raw body of a JSON request.

    :raises UnsupportedMediaType: unless the content type is JSON (``application/json`` or
        ``application/*+json``).
    """
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    # The usual header, exactly: no need to parse it into a mimetype and options.
    if req.environ.get("CONTENT_TYPE") != "application/json":
        mimetype = req.mimetype
        if mimetype != "application/json" and not (
            mimetype.startswith("application/") and mimetype.endswith("+json")
        ):
            shown = mimetype or "none"
            raise UnsupportedMediaType(
                f"Content-Type must be application/json (got {shown})",
                [{"path": "Content-Type", "message": f"{shown} is not supported here"}],
            )
    return request_body(req)


def request_body(req: Request | None = None) -> bytes:
    """The whole body of the request (uncached: it is read once).

    werkzeug's ``get_data`` reads a stream to its end through ``RawIOBase.readall``, 8 KiB
    at a time in Python: 3.3 ms for a 2.4 MB table, more than parsing it. With a
    Content-Length, reads of the bytes still missing take 0.1 ms. The stream is werkzeug's
    own either way (limited to the length, refused over ``MAX_CONTENT_LENGTH``, a client
    that stops early raises its ``ClientDisconnected``), so nothing else changes.
    """
    if req is None:
        req = request._get_current_object()  # type: ignore[attr-defined]
    length = req.content_length
    if not length:  # chunked (no length), or empty: werkzeug's own read
        data: bytes = req.get_data(cache=False)
        return data
    stream = req.stream
    parts: list[bytes] = []
    missing = length
    while missing > 0:  # once, unless the server hands the body out in pieces
        part: bytes = stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)
