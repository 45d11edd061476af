"""The drift report route: ``/models/<name>[/versions/<v>]/drift``."""

from __future__ import annotations

import math

from flask import Blueprint
from flask import Response
from flask import request

from ..drift import drift_report
from ..errors import InvalidInput
from ..errors import PredictionLogOff
from ._handlers import get_handlers
from ._json import json_response

bp = Blueprint("drift", __name__)

#: The window a report covers when the request names none: the last hour.
DEFAULT_WINDOW = 3600.0
#: The longest window a report may cover (a year).
MAX_WINDOW = 366 * 24 * 3600.0


@bp.get("/models/<name>/drift")
@bp.get("/models/<name>/versions/<int:version>/drift")
def model_drift(name: str, version: int | None = None) -> Response:
    """Compare the inputs logged in the last ``window`` seconds with the version's reference
    profile: population stability index, histograms and flags per feature and for the
    predictions."""
    handlers = get_handlers()
    window = _window(request.args.get("window"))
    sv = handlers.service.resolve(name, version)
    if handlers.log is None:
        raise PredictionLogOff()
    threshold = handlers.service.settings.drift_psi_threshold
    return json_response(drift_report(sv.model, handlers.log.store, window, threshold))


def _window(text: str | None) -> float:
    if text is None:
        return DEFAULT_WINDOW
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_WINDOW):
        raise InvalidInput(
            f"window must be a number of seconds, more than 0 and at most {MAX_WINDOW:.0f}",
            [{"path": "window", "message": f"{text!r} is not a valid window"}],
        )
    return value
