"""Operational routes: health, the model list and per-model metadata."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from .. import __version__
from .. import workers
from ..web.page import render_page
from ..web.page import wants_html
from ._handlers import get_handlers
from ._json import json_response

bp = Blueprint("ops", __name__)


@bp.get("/")
def index() -> Response:
    """The web page for a browser (``Accept: text/html``), else a machine-readable map of the
    API; ``Vary: Accept`` tells caches that the two differ."""
    response = render_page() if wants_html(request) else _api_map()
    response.vary.add("Accept")
    return response


def _api_map() -> Response:
    service = get_handlers().service
    return json_response(
        {
            "name": "modelserve",
            "version": __version__,
            "models": service.names(),
            "default_model": service.default_name(),
            "routes": {
                "health": "/health",
                "models": "/models",
                "predict": "/predict",
                "predict_batch": "/predict_batch",
                "predict_image": "/predict_image",
                "predict_image_base64": "/predict_image_base64",
                "per_model": "/models/<name>[/versions/<int:version>]/"
                "{predict,predict_batch,predict_image,predict_image_base64}",
                "v2": "/v2 (Open Inference Protocol: /v2/models/<name>[/versions/<v>]/infer)",
                "openapi": "/openapi.json",
                "docs": "/docs",
            },
        }
    )


@bp.get("/health")
def health() -> Response:
    """200 when every model has a loaded version, else 503 (load balancers stop routing)."""
    body, ready = get_handlers().listing.health()
    if workers.draining():  # stopping (SIGTERM): take this worker out of rotation
        body, ready = {**body, "status": "draining"}, False
    return json_response(body, 200 if ready else 503)


@bp.get("/models")
def list_models() -> Response:
    return json_response({"models": get_handlers().listing.models()})


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<int:version>")
def model_metadata(name: str, version: int | None = None) -> Response:
    return json_response(get_handlers().listing.metadata(name, version))
