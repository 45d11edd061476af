"""The one table from modelserve's exceptions to HTTP statuses and JSON error bodies.

Every error on every API route has the body
``{"error": "<message>", "type": "<ErrorType>", "status": "error", "details": [...]}``;
never a traceback, never an HTML page.
"""

from __future__ import annotations

import logging

from flask import Flask
from flask import Response
from werkzeug.exceptions import HTTPException

from .. import errors
from ._json import json_response

logger = logging.getLogger(__name__)

#: Resolved by walking the exception's MRO, so a subclass inherits its parent's status.
STATUS_BY_ERROR: dict[type[errors.ModelServeError], int] = {
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.ModelNotFound: 404,
    errors.ReferenceNotFound: 404,
    errors.JobNotFound: 404,
    errors.JobConflict: 409,
    errors.PredictionLogOff: 409,
    errors.UnsupportedMediaType: 415,
    errors.PayloadTooLarge: 413,
    errors.InvalidInput: 400,
    errors.InferenceError: 422,
    errors.ModelNotReady: 503,
    errors.ServerBusy: 503,
    # A load through the API that fails is the request's answer, not a server fault (Triton
    # answers 400 too); a load at start never reaches this table.
    errors.ModelLoadError: 400,
    errors.ModelServeError: 500,
}


def status_for(exc: errors.ModelServeError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500  # pragma: no cover - ModelServeError itself is in the table


def error_body(
    message: str, type_name: str, details: list[dict[str, object]] | None = None
) -> dict[str, object]:
    body: dict[str, object] = {"error": message, "type": type_name, "status": "error"}
    if details:
        body["details"] = details
    return body


def handle_modelserve_error(exc: errors.ModelServeError) -> Response:
    status = status_for(exc)
    if status >= 500 and not isinstance(exc, errors.ModelNotReady | errors.ServerBusy):
        logger.error("request failed: %r", exc)
    response = json_response(error_body(exc.message, type(exc).__name__, exc.details), status)
    if isinstance(exc, errors.ServerBusy):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    name = "".join(part.capitalize() for part in (exc.name or "Error").split())
    message = exc.description or exc.name or "HTTP error"
    if status == 413:
        message = "The request body is larger than the limit (MODELSERVE_MAX_CONTENT_LENGTH)"
    response = json_response(error_body(message, name), status)
    # Keep headers the exception carries, such as Allow on a 405.
    for key, value in exc.get_headers():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    logger.exception("unhandled error while serving a request")
    return json_response(error_body("Internal server error", "InternalServerError"), 500)


def init_app(app: Flask) -> None:
    """Register the handlers; every path of the app answers errors in JSON."""
    app.register_error_handler(errors.ModelServeError, handle_modelserve_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
