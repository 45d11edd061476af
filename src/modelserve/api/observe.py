"""Request ids, the one log line per request, the request metrics, ``GET /metrics`` and each
model's statistics (``GET /models/<name>/stats``).

The request pipeline (:mod:`modelserve.api.pipeline`) calls :class:`RequestObserver`: first
it keeps a sane incoming ``X-Request-ID`` (or makes one) and opens the request's
:class:`~modelserve.telemetry.RequestRecord`, which the core fills in; after the view it
echoes the id, records the metrics and writes the line; at teardown it closes the record,
whatever happened.
"""

from __future__ import annotations

import logging
import re
from time import perf_counter
from typing import TYPE_CHECKING
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Request
from flask import Response

from .. import telemetry
from ..errors import ModelNotFound
from ..logging import REQUEST_LOGGER
from ..security import Principal
from ..settings import ServerSettings
from ._handlers import get_handlers
from ._json import json_response
from .auth import current_principal

if TYPE_CHECKING:  # pragma: no cover
    from werkzeug.routing import Rule

    from ..metrics import RefusedKind

bp = Blueprint("observe", __name__)

REQUEST_ID_HEADER = "X-Request-ID"
#: An incoming id is kept only when it is this: short, and nothing a log or header could
#: misread (no spaces, quotes, control characters). Anything else gets a fresh id.
_SANE_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")

METRICS_ENDPOINT = "observe.metrics"

#: The label for requests that matched no route: never the raw path (unbounded values).
UNMATCHED = "(unmatched)"
#: The ``protocol`` label of each blueprint; others are labelled by their blueprint's name.
_PROTOCOLS = {"predict": "seed", "v2": "v2"}

_request_log = logging.getLogger(REQUEST_LOGGER)

#: Refusals the security layer makes, counted on their own (``modelserve_*_total``).
_REFUSED_BY_STATUS: dict[int, RefusedKind] = {401: "unauthenticated", 429: "rate_limited"}


def request_id(incoming: str | None) -> str:
    """The id of this request: the client's, when sane, else a fresh one."""
    if incoming is not None and _SANE_ID.fullmatch(incoming):
        return incoming
    return telemetry.new_request_id()


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, every worker's counts summed (public by default:
    ``MODELSERVE_METRICS_PUBLIC``)."""
    from .. import metrics as _metrics

    body, content_type = _metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/models/<name>/stats")
def model_stats(name: str) -> Response:
    """The model's inference requests by status and version, and its latency histogram, every
    worker's, since the server started (the web page's charts; needs ``predict``)."""
    from .. import metrics as _metrics

    if get_handlers().service.find_model(name) is None:
        raise ModelNotFound(name)
    return json_response(_metrics.model_stats(name))


def init_metrics() -> None:
    """Start recording model events; the app factory calls it before the models load."""
    from .. import metrics as _metrics

    _metrics.install()


def init_app(app: Flask, settings: ServerSettings) -> None:
    """Register ``/metrics`` and build the app's :class:`RequestObserver`."""
    # Imported here, not at the top: the server's main process imports the app module, and
    # must not import prometheus_client before it prepared the multiprocess folder.
    from .. import metrics as _metrics

    app.register_blueprint(bp)
    observer = RequestObserver(_metrics)
    app.extensions[OBSERVER_KEY] = observer


#: ``app.extensions`` key of the app's :class:`RequestObserver` (the request pipeline calls it).
OBSERVER_KEY = "modelserve.observer"


class RequestObserver:
    """What every request records: its id and record (:meth:`open`), the metrics, the id
    header and the log line (:meth:`close`), and the end of the record (:meth:`forget`).

    Called by the one request pipeline (:mod:`modelserve.api.pipeline`), not registered as
    hooks of its own: one hook of each kind for the whole pipeline costs less.

    :param metrics: :mod:`modelserve.metrics`, imported by the caller (see :func:`init_app`).
    """

    def __init__(self, metrics: Any) -> None:
        self._request_started = metrics.request_started
        self._request_finished = metrics.request_finished
        self._request_closed = metrics.request_closed
        self._count_refused = metrics.count_refused

    def open(self, incoming_id: str | None) -> telemetry.RequestRecord:
        """Open the request's record, under the client's id when sane."""
        record = telemetry.begin(request_id(incoming_id))
        self._request_started()
        return record

    def close(
        self, response: Response, req: Request, route: str, protocol: str, rule: Rule | None
    ) -> None:
        """Count the answered request, echo its id and write its line."""
        record = telemetry.current()
        if record is None:  # pragma: no cover - the pipeline opens a record first
            return
        # add, not set: the response has no request id yet, and set scans every header.
        response.headers.add(REQUEST_ID_HEADER, record.request_id)
        self.answered(
            record,
            response.status_code,
            route,
            protocol,
            req.method,
            rule.rule if rule is not None else None,
            req.path if rule is None else "",  # only an unmatched request's line has it
            current_principal(),
        )

    def answered(
        self,
        record: telemetry.RequestRecord,
        status: int,
        route: str,
        protocol: str,
        method: str,
        rule: str | None,
        path: str,
        principal: Principal | None,
    ) -> None:
        """Count the request ``record`` describes and write its line (:meth:`close` without
        Flask: the express lane calls it with the same facts)."""
        seconds = perf_counter() - record.started
        self._request_finished(route, protocol, status, record, seconds)
        if status in _REFUSED_BY_STATUS:
            self._count_refused(_REFUSED_BY_STATUS[status])
        if _request_log.isEnabledFor(logging.INFO):
            log_request(method, rule, path, principal, route, status, seconds, record)

    def forget(self) -> None:
        """Close the record, whatever happened to the request."""
        if telemetry.current() is not None:
            self._request_closed()
            telemetry.end()


def labels_of(rule: Rule | None) -> tuple[str, str]:
    """The ``route`` and ``protocol`` labels of a request that matched ``rule``."""
    if rule is None:
        return UNMATCHED, "none"
    blueprint = rule.endpoint.rpartition(".")[0]
    return rule.rule, _PROTOCOLS.get(blueprint, blueprint or "none")


def log_request(
    method: str,
    rule: str | None,
    path: str,
    principal: Principal | None,
    route: str,
    status: int,
    seconds: float,
    record: telemetry.RequestRecord,
) -> None:
    """Write the request's one line (``modelserve.request``, INFO).

    :param rule: the URL rule it matched (``None``: no route; the path is logged instead).
    :param principal: who sent it (``None``: anonymous).
    """
    fields = {
        "request_id": record.request_id,
        "method": method,
        "route": rule,
        "model": record.model,
        "version": record.version,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
        "rows": record.rows,
        "batch_size": record.batch_size,
        "cache_hit": record.cache_hit,
        "client": getattr(principal, "name", None),
    }
    if rule is None:
        fields["path"] = path[:256]
    # The record built directly: Logger.info would walk the stack for the caller's file
    # and line (findCaller), a sizeable share of the line's cost, for a value no
    # formatter of this logger prints: every request line comes from here.
    line = _request_log.makeRecord(
        REQUEST_LOGGER,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.2f ms",
        # The field's own rounded value: the message and the field never disagree.
        (method, route, status, fields["latency_ms"]),
        None,
        "close_record",
        {"fields": fields},
    )
    _request_log.handle(line)
