"""Seed-compatible prediction routes, on the default model and per model/version."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from ._json import get_service
from ._json import json_body
from ._json import json_response

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@bp.post("/models/<name>/predict")
@bp.post("/models/<name>/versions/<version>/predict")
def predict(name: str | None = None, version: str | None = None) -> Response:
    """Score one object of named features."""
    return json_response(get_service().predict_one(name, version, json_body()))


@bp.post("/predict_batch")
@bp.post("/models/<name>/predict_batch")
@bp.post("/models/<name>/versions/<version>/predict_batch")
def predict_batch(name: str | None = None, version: str | None = None) -> Response:
    """Score ``{"instances": [...]}``: objects of named features or lists in feature order."""
    return json_response(get_service().predict_batch(name, version, json_body()))
