"""The express lane: the seed's JSON ``POST /predict``, ``/predict_batch`` and
``/predict_image_base64`` and V2's JSON ``infer`` answered without Flask's request
machinery, every other request passed to Flask untouched.

Why: on a one-row prediction, Flask and werkzeug's own work (request and app contexts, the
URL adapter, ``Request`` and ``Response`` objects, hook dispatch, ``get_wsgi_headers``) is
about a quarter of the request, more than the model (BENCHMARKS.md, "#21 checks"). That is
the request most traffic is, so it gets a WSGI entry of its own, in front of Flask; a JSON
batch answered in JSON (no ``?format=``, no table ``Accept``) and a V2 inference in JSON (no
binary tensors, no compressed body) take it too, as do base64 images.

It does what the request pipeline does, with the same functions, in the same order: the
request id and record, the credential and the scope (``auth``), the rate limit (``limits``),
the view's work (``SeedProtocol.predict_one`` or ``predict_batch``, ``V2Protocol.infer``,
``ImageProtocol.classify_base64``), then the limit, security and id headers, the metrics and
the request line (``observe``). The answer is the one Flask would give, byte for byte but the
id and timing headers (``tests/api/test_express.py`` compares the two).

It never answers anything but a 200. A request it cannot answer with one (no or a wrong
credential, over the limit, a body that is not JSON, an unknown model, a failing model, a
session cookie) goes to Flask as it came, the body it read put back, so the error answers,
their headers, lines and counts are Flask's. The one thing it hands over is the rate-limit
count (``limits.COUNTED_KEY``), so such a request is counted once; a model call that failed
runs once more in Flask, and its own error is the answer.

It is off (everything goes to Flask) when the app has work it does not know: any
``before``/``after``/``teardown_request`` function but the pipeline's and the limiter's, a
URL value preprocessor, a receiver of Flask's request signals, another view on the predict
routes, or ``MODELSERVE_EXPRESS=false``. That is decided at the first request, so, as with
Flask, hooks belong to the set-up, before the server takes requests; after the lane's first
answer Flask refuses new ones, as after its own first request.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import orjson
from flask import Flask
from flask import signals
from werkzeug.exceptions import HTTPException

from .. import telemetry
from ..keys import SCOPE_PREDICT
from ..security import authorize
from . import auth
from . import limits
from . import predict
from . import v2
from ._handlers import EXTENSION_KEY as HANDLERS_KEY
from ._handlers import Handlers
from ._json import DUMP_OPTIONS
from .headers import INFERENCE_RESPONSE
from .observe import OBSERVER_KEY
from .observe import REQUEST_ID_HEADER
from .observe import RequestObserver
from .observe import labels_of
from .pipeline import PIPELINE_KEY

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.routing import MapAdapter

#: The endpoints the lane serves (two or three URL rules each: the default model, named,
#: versioned).
ONE, BATCH, INFER = "predict.predict", "predict.predict_batch", "v2.infer"
IMAGE = "predict.predict_image_base64"
ENDPOINTS = (ONE, BATCH, INFER, IMAGE)


def _views() -> dict[str, Callable[..., Any]]:
    """Each endpoint's view: the lane does their work, and no other view's."""
    return {
        ONE: predict.predict,
        BATCH: predict.predict_batch,
        INFER: v2.infer,
        IMAGE: predict.predict_image_base64,
    }


#: ``Accept`` values a JSON batch answer satisfies as Flask's negotiation would (anything
#: else, a table type among them, is Flask's to negotiate).
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})
#: Paths remembered (a path's rule and model, or that it is not the lane's); past this many
#: distinct paths (a client making up model names) the rest are matched each time.
MAX_PATHS = 1024
_OK = "200 OK"
#: Flask's request signals: a receiver of any of them must see every request.
_SIGNALS = (
    signals.request_started,
    signals.request_finished,
    signals.request_tearing_down,
    signals.got_request_exception,
    signals.appcontext_pushed,
    signals.appcontext_popped,
    signals.appcontext_tearing_down,
)


class _Route:
    """What one path is: its rule's labels, and the model and version it names."""

    __slots__ = ("endpoint", "rule", "route", "protocol", "name", "version")

    def __init__(
        self, endpoint: str, rule: str, route: str, protocol: str, args: Mapping[str, Any]
    ) -> None:
        self.endpoint = endpoint
        self.rule = rule
        self.route = route
        self.protocol = protocol
        self.name: str | None = args.get("name")
        self.version: int | None = args.get("version")


class ExpressLane:
    """WSGI middleware answering the successful JSON predictions itself (module doc).

    :param app: the Flask app, fully set up (its hooks, blueprints and extensions).
    :param wsgi: what to call for every other request (the app's WSGI callable as it was).
    """

    def __init__(self, app: Flask, wsgi: WSGIApplication) -> None:
        self.app = app
        self.wsgi = wsgi
        self._on: bool | None = None  # decided at the first request
        self._routes: dict[str, _Route | None] = {}
        self._adapter: MapAdapter | None = None
        handlers: Handlers = app.extensions[HANDLERS_KEY]
        self._seed = handlers.seed
        self._v2 = handlers.v2
        self._images = handlers.images
        self._service = handlers.service
        self._observer: RequestObserver = app.extensions[OBSERVER_KEY]
        self._policy = auth.policy_of(app)
        self._limiter = limits.get_limiter(app)
        self._max_length: int | None = app.config.get("MAX_CONTENT_LENGTH")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or "HTTP_COOKIE" in environ  # a browser's session: Flask's to open and save
            or environ.get("SCRIPT_NAME")
        ):
            return self.wsgi(environ, start_response)
        path: str = environ.get("PATH_INFO") or "/"
        routes = self._routes
        route = routes[path] if path in routes else self._match(path)
        if route is None or not _plain(route.endpoint, environ):
            return self.wsgi(environ, start_response)
        length = environ.get("CONTENT_LENGTH")
        if not length or not length.isdigit():
            return self.wsgi(environ, start_response)  # chunked, or a length werkzeug refuses
        size = int(length)
        if self._max_length is not None and size > self._max_length:
            return self.wsgi(environ, start_response)  # the 413 is Flask's
        return self._serve(environ, start_response, path, route, size)

    def _serve(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        path: str,
        route: _Route,
        size: int,
    ) -> Iterable[bytes]:
        observer = self._observer
        incoming = environ.get("HTTP_X_REQUEST_ID")
        record = observer.open(incoming)
        body = b""
        counted: limits.Counted | None = None
        try:
            body = environ["wsgi.input"].read(size) if size else b""
            if len(body) != size:
                raise _Handover  # the client went away mid-body: werkzeug's 400
            principal = None
            policy = self._policy
            if policy.enabled:
                principal, error = auth.authenticate_environ(policy, environ)
                if not policy.is_public(path):
                    if error is not None:
                        raise _Handover
                    model = route.name or self._service.default_name()
                    authorize(principal, SCOPE_PREDICT, model)
            limiter = self._limiter
            window = None
            if limiter is not None:
                class_limits = limiter.limits_of(route.endpoint)
                if class_limits is not None:
                    counted = limiter.count(
                        class_limits, limits.client_key_of(principal, environ.get("REMOTE_ADDR"))
                    )
                    window, refusal = counted
                    if refusal is not None:
                        raise _Handover
            data, headers = self._answer(route, body)
        except Exception:
            # Flask answers it, as if the lane were not there (module doc): a refusal, bad
            # input, a model's error, and a bug too (Flask's JSON 500 and its traceback).
            return self._hand_over(environ, start_response, record, incoming, body, counted)
        try:
            if window is not None:
                headers += limits.window_headers(window)
            headers += INFERENCE_RESPONSE
            headers.append((REQUEST_ID_HEADER, record.request_id))
            observer.answered(
                record, 200, route.route, route.protocol, "POST", route.rule, "", principal
            )
            start_response(_OK, headers)
        finally:
            observer.forget()
        return [data]

    def _answer(self, route: _Route, body: bytes) -> tuple[bytes, list[tuple[str, str]]]:
        """The view's work: the answer's bytes and its first headers, as the view's
        ``Response`` has them."""
        endpoint = route.endpoint
        if endpoint == ONE:
            one = self._seed.predict_one(route.name, route.version, body)
            data = orjson.dumps(one, option=DUMP_OPTIONS)
        elif endpoint == BATCH:  # JSON in, JSON out (the defaults): a dict
            batch = self._seed.predict_batch(route.name, route.version, body, written=True)
            data = orjson.dumps(batch, option=DUMP_OPTIONS)
        elif endpoint == IMAGE:
            labels = self._images.classify_base64(route.name, route.version, body)
            data = orjson.dumps(labels, option=DUMP_OPTIONS)
        else:
            if route.name is None:  # pragma: no cover - every V2 rule names its model
                raise _Handover
            data, json_length = self._v2.infer(route.name, route.version, body, None)
            if json_length is not None:  # binary outputs asked for in the JSON
                return data, [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Length", str(len(data))),
                    (v2.HEADER_LENGTH, str(json_length)),
                ]
        return data, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]

    def _hand_over(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        record: telemetry.RequestRecord,
        incoming: str | None,
        body: bytes,
        counted: limits.Counted | None,
    ) -> Iterable[bytes]:
        """Pass the request to Flask as it came: its body, the id it was given, its count."""
        self._observer.forget()
        environ["wsgi.input"] = io.BytesIO(body)
        if incoming != record.request_id:
            # The id the lane gave it (lines its model call wrote carry it): Flask keeps it.
            environ["HTTP_X_REQUEST_ID"] = record.request_id
        if counted is not None:
            environ[limits.COUNTED_KEY] = counted
        return self.wsgi(environ, start_response)

    def _match(self, path: str) -> _Route | None:
        """The lane's route for ``path``, or ``None`` (another route, or the lane is off)."""
        if self._on is None:
            self._on = self._eligible()
            if self._on:
                # Flask refuses hooks added after its first request (``setupmethod``); the
                # lane answers requests Flask never sees, so it raises the same flag (private
                # to Flask: tests/api/test_express.py checks that it still works).
                self.app._got_first_request = True
        route = None
        if self._on:
            route = self._route_of(path)
        if len(self._routes) < MAX_PATHS:
            self._routes[path] = route
        return route

    def _route_of(self, path: str) -> _Route | None:
        if self._adapter is None:
            self._adapter = self.app.url_map.bind("localhost")
        try:
            rule, args = self._adapter.match(path, method="POST", return_rule=True)
        except HTTPException:  # 404, 405, a redirect to the slash: Flask answers those
            return None
        if rule.endpoint not in ENDPOINTS:
            return None
        label, protocol = labels_of(rule)
        return _Route(rule.endpoint, rule.rule, label, protocol, args)

    def _eligible(self) -> bool:
        """Whether the app does nothing per request that the lane does not do too; when it
        does, the log says once why every request goes through Flask."""
        why = self._why_off()
        if why is not None:
            logger.info("express lane off: %s; every request goes through Flask", why)
        return why is None

    def _why_off(self) -> str | None:
        app = self.app
        if not self._service.settings.express:
            return "MODELSERVE_EXPRESS=false"
        pipeline = app.extensions[PIPELINE_KEY]
        expected_before = [pipeline.before]
        if self._limiter is not None:
            expected_before.append(self._limiter.check_request)
        tables: list[tuple[str, dict[Any, list[Any]], list[Any]]] = [
            ("before_request", app.before_request_funcs, expected_before),
            ("after_request", app.after_request_funcs, [pipeline.after]),
            ("teardown_request", app.teardown_request_funcs, [pipeline.teardown]),
            ("url_value_preprocessor", app.url_value_preprocessors, []),
        ]
        for kind, table, expected in tables:
            if not _only(table, expected):
                return f"the app has a {kind} function of its own (CORS, an extension)"
        if app.teardown_appcontext_funcs:
            return "the app has a teardown_appcontext function"
        for endpoint, view in _views().items():
            if app.view_functions.get(endpoint) is not view:
                return f"{endpoint} has another view"
        for signal in _SIGNALS:
            if signal.receivers:
                return f"something receives Flask's {signal.name} signal"
        return None


def _plain(endpoint: str, environ: WSGIEnvironment) -> bool:
    """Whether the request is the plain JSON form of ``endpoint`` the lane answers."""
    content_type = environ.get("CONTENT_TYPE")
    if endpoint == INFER:
        # Any content type, as the view (tritonclient sends none); binary tensors and
        # compressed bodies are Flask's.
        return (
            "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" not in environ
            and environ.get("HTTP_CONTENT_ENCODING", "identity").lower() == "identity"
        )
    if content_type != "application/json":
        return False
    # A batch asking for ?format= or for an answer to negotiate (a table type) is Flask's.
    return endpoint != BATCH or (
        not environ.get("QUERY_STRING") and environ.get("HTTP_ACCEPT", "") in _JSON_ACCEPTS
    )


class _Handover(Exception):
    """This request is Flask's to answer."""


def _only(table: dict[Any, list[Any]], expected: list[Any]) -> bool:
    """Whether a Flask function table holds exactly ``expected``, app-wide, and nothing else
    (no blueprint's own functions either)."""
    entries = {key: funcs for key, funcs in table.items() if funcs}
    if not expected:
        return not entries
    return list(entries) == [None] and entries[None] == expected


def init_app(app: Flask) -> None:
    """Put the express lane in front of the app's WSGI callable (after every other wrapper
    but the proxy fix, which must run first: the limit counts by the fixed address)."""
    app.wsgi_app = ExpressLane(app, app.wsgi_app)  # type: ignore[method-assign]
