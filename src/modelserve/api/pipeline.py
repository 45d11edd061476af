"""The one request pipeline: a single ``before_request``, ``after_request`` and
``teardown_request`` hook for what every request goes through, decided once per URL rule.

Every request is observed (id, record, metrics, log line), authenticated and authorised,
and answered with the security headers; limited endpoints also get the rate-limit headers.
Each of those used to be a hook of its own, and each hook costs Flask a lookup and a
coroutine check per request, while each re-derived from the endpoint what it needs (scope,
labels, "is this an inference route") on every request. Here the facts of one URL rule and
method are a :class:`_Plan` built at its first request, and the hooks read them.

Order within a request, as before: the record is opened first, so a request refused by
authentication (401/403) or by the rate limit (429, the limiter's own ``before_request``,
registered after this one) still gets an id, a line and its counts; after the view (or the
error handler) the limit headers, the security headers, then the metrics and the line.
Flask's error handling, its other hooks (CORS) and the test client are untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import FunctionType
from types import MethodType
from typing import TYPE_CHECKING
from typing import Any

from flask import Flask
from flask import Request
from flask import Response
from flask import request

from .auth import INFERENCE_ENDPOINTS
from .auth import Access
from .auth import check_access
from .headers import add_security_headers
from .limits import add_headers as add_limit_headers
from .limits import get_limiter
from .observe import OBSERVER_KEY
from .observe import RequestObserver
from .observe import labels_of

if TYPE_CHECKING:  # pragma: no cover
    from werkzeug.routing import Rule

#: The coroutine flag of a code object (``async def``).
_CO_COROUTINE = inspect.CO_COROUTINE
#: Callables whose ``__code__`` is their own: a function, or a method bound to one.
_PLAIN = (FunctionType, MethodType)


class PipelineFlask(Flask):
    """Flask, with a cheaper :meth:`ensure_sync` for plain functions.

    Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request; for a
    plain ``def`` (or a method of one) the code object's flag says the same at a fraction of
    the cost. Anything else (partials, callable objects, ``async def``) takes Flask's path.
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) in _PLAIN and not func.__code__.co_flags & _CO_COROUTINE:
            return func
        return super().ensure_sync(func)


class _Plan:
    """What the pipeline does for one URL rule and method (``rule=None``: no route)."""

    __slots__ = ("route", "protocol", "access", "inference", "limited")

    def __init__(self, app: Flask, rule: Rule | None, method: str) -> None:
        self.route, self.protocol = labels_of(rule)
        #: ``None``: no route matched (the 404/405 answers, which reveal nothing).
        self.access: Access | None = None
        self.inference = False
        self.limited = False
        if rule is not None:
            endpoint = rule.endpoint
            automatic = bool(getattr(rule, "provide_automatic_options", False))
            self.access = Access(endpoint, method, automatic)
            # Answers about one caller's data: no shared cache may keep them (no-store).
            self.inference = endpoint in INFERENCE_ENDPOINTS
            limiter = get_limiter(app)
            self.limited = limiter is not None and limiter.limits(endpoint)


class RequestPipeline:
    """The app's three hooks over its :class:`RequestObserver` and its security settings."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._observer: RequestObserver = app.extensions[OBSERVER_KEY]
        #: One plan per (rule, method), by the rule's id (rules compare by value and are not
        #: hashable; the app's URL map keeps them alive). Bounded: a matched rule's methods
        #: are its own, and every unmatched request shares one plan, whatever its method.
        self._plans: dict[tuple[int, str], _Plan] = {}

    def _plan(self, req: Request) -> _Plan:
        rule = req.url_rule
        method = req.method if rule is not None else ""
        key = (id(rule), method)
        plan = self._plans.get(key)
        if plan is None:
            # Two threads may both build a first plan: the same facts, one kept.
            plan = self._plans[key] = _Plan(self._app, rule, method)
        return plan

    def before(self) -> None:
        """Open the record, then let the request through or raise 401/403."""
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        # The environ, not request.headers: the value the header view would look up.
        self._observer.open(req.environ.get("HTTP_X_REQUEST_ID"))
        access = self._plan(req).access
        if access is not None:
            check_access(access, req)

    def after(self, response: Response) -> Response:
        """The limit and security headers, then the metrics, the id header and the line."""
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        plan = self._plan(req)
        if plan.limited:
            add_limit_headers(response)
        add_security_headers(response, plan.inference)
        self._observer.close(response, req, plan.route, plan.protocol, req.url_rule)
        return response

    def teardown(self, exc: BaseException | None) -> None:
        """Close the request's record, whatever happened."""
        self._observer.forget()


#: ``app.extensions`` key of the app's :class:`RequestPipeline`.
PIPELINE_KEY = "modelserve.pipeline"


def init_app(app: Flask) -> None:
    """Register the pipeline's hooks: before any other ``before_request`` hook (the rate
    limits read the principal that authentication found)."""
    pipeline = app.extensions[PIPELINE_KEY] = RequestPipeline(app)
    app.before_request_funcs.setdefault(None, []).insert(0, pipeline.before)
    app.after_request(pipeline.after)
    app.teardown_request(pipeline.teardown)
