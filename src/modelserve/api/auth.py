"""Authentication and authorisation on every route: one ``before_request`` hook, and the
``WWW-Authenticate`` answers of 401 and 403.

Which scope a route needs is decided here, from the endpoint and the method, so a route added
later is covered without being listed: reads (GET, HEAD) and the inference POSTs in
:data:`INFERENCE_ENDPOINTS` need ``predict``; **every other method on every other endpoint
needs ``admin``** (the repository's load, unload and index, and whatever changes state next).
The paths of ``MODELSERVE_PUBLIC_PATHS`` (health, metrics, static files) need nothing, nor
does the web page's HTML at ``/`` (a browser's ``Accept: text/html``; JSON at ``/`` still
needs ``predict``); an admin route is never public. With no credential configured, the
``predict`` routes are open and the admin routes answer 403.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import Request
from flask import Response
from flask import current_app
from flask import g
from flask import request

from .. import errors
from ..keys import SCOPE_ADMIN
from ..keys import SCOPE_PREDICT
from ..security import Authenticator
from ..security import Principal
from ..security import authorize
from ..security import credential_from_headers
from ..settings import ServerSettings
from ..web.page import PAGE_ENDPOINTS
from ..web.page import is_page_request
from ._handlers import get_handlers
from .errors import handle_modelserve_error

EXTENSION_KEY = "modelserve.auth"

#: The POST endpoints that score a request: ``predict`` scope, not ``admin``.
INFERENCE_ENDPOINTS = frozenset(
    {
        "predict.predict",
        "predict.predict_batch",
        "predict.predict_image",
        "predict.predict_image_base64",
        "v2.infer",
        # A batch job scores like /predict_batch, for the model it names (or the default).
        "jobs.submit_job",
    }
)

#: Endpoints that change only the caller's own data, so ``predict`` is enough: cancelling a
#: job (which the view looks up among the caller's own jobs).
OWNER_ENDPOINTS = frozenset({"jobs.cancel_job"})

#: Methods that must not change state (RFC 9110 "safe"); they need ``predict`` at most.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_REALM = 'Bearer realm="modelserve"'


def required_scope(endpoint: str, method: str) -> str:
    """The scope a request to ``endpoint`` with ``method`` needs: ``predict`` or ``admin``."""
    if method in SAFE_METHODS or endpoint in INFERENCE_ENDPOINTS or endpoint in OWNER_ENDPOINTS:
        return SCOPE_PREDICT
    return SCOPE_ADMIN


class _Policy:
    """One app's authenticator and public paths."""

    def __init__(self, settings: ServerSettings) -> None:
        self.authenticator = Authenticator(settings)
        self.enabled = self.authenticator.enabled
        # MODELSERVE_METRICS_PUBLIC=false takes /metrics out of the public paths.
        public = [p for p in settings.public_paths if settings.metrics_public or p != "/metrics"]
        self._exact = frozenset(p for p in public if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in public if p.endswith("*"))

    def is_public(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)


def _policy() -> _Policy:
    return policy_of(current_app)


def policy_of(app: Flask) -> _Policy:
    """``app``'s authentication policy (its authenticator and public paths)."""
    policy: _Policy = app.extensions[EXTENSION_KEY]
    return policy


def authentication_enabled() -> bool:
    """Whether this app checks credentials (any key, keys file or JWT issuer is configured)."""
    return _policy().enabled


def is_public_path(path: str) -> bool:
    """Whether ``path`` is one of ``MODELSERVE_PUBLIC_PATHS`` (no credential needed to read)."""
    return _policy().is_public(path)


def current_principal() -> Principal | None:
    """The authenticated caller of this request, or ``None`` (anonymous, or a credential that
    did not verify, or authentication off). Never raises; the result is kept for the request,
    so calling it from another hook (rate limits) costs one check per request in all."""
    return _authenticate()[0]


def _authenticate(
    policy: _Policy | None = None,
) -> tuple[Principal | None, errors.Unauthenticated | None]:
    cached: tuple[Principal | None, errors.Unauthenticated | None] | None = g.get("modelserve_auth")
    if cached is not None:
        return cached
    # The environ, not request.headers: the same two values, without the header view.
    result = authenticate_environ(policy or _policy(), request.environ)
    g.modelserve_auth = result
    return result


def authenticate_environ(
    policy: _Policy, environ: dict[str, Any]
) -> tuple[Principal | None, errors.Unauthenticated | None]:
    """Who sent the request with this WSGI ``environ``: its principal, or the reason it has
    none (``(None, None)``: no credential sent, or authentication off). Never raises."""
    if not policy.enabled:
        return None, None
    try:
        credential = credential_from_headers(
            environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_API_KEY")
        )
        if credential is None:
            return None, None
        return policy.authenticator.authenticate(credential), None
    except errors.Unauthenticated as exc:
        return None, exc


class Access:
    """What one (URL rule, method) needs, decided once, at its first request.

    :param endpoint: the rule's endpoint.
    :param method: the request method.
    :param automatic_options: Flask answers this OPTIONS itself (no view runs): no check.
    """

    __slots__ = ("scope", "skip", "page", "default_model")

    def __init__(self, endpoint: str, method: str, automatic_options: bool) -> None:
        self.scope = required_scope(endpoint, method)
        #: No view runs (Flask's own OPTIONS answer, the Allow header, CORS preflight).
        self.skip = method == "OPTIONS" and automatic_options
        #: A page endpoint read with GET/HEAD: public when the client negotiates HTML.
        self.page = endpoint in PAGE_ENDPOINTS and method in ("GET", "HEAD")
        #: An inference POST that names no model is for the default model.
        self.default_model = endpoint in INFERENCE_ENDPOINTS and self.scope == SCOPE_PREDICT


def check_access(access: Access, req: Request) -> None:
    """Let the request through, or raise 401/403 (the pipeline's first check).

    :param access: what the request's rule and method need (decided once per rule).
    :param req: the request (not the proxy: one lookup for every attribute read here).
    """
    if access.skip:
        return
    scope = access.scope
    policy = _policy()
    if not policy.enabled:
        if scope == SCOPE_ADMIN:
            authorize(None, scope, None, enabled=False)
        return
    if scope != SCOPE_ADMIN and (
        policy.is_public(req.path) or (access.page and is_page_request(req))
    ):
        return  # the web page's HTML holds no data: its scripts call the API with the key
    principal, error = _authenticate(policy)
    if error is not None:
        raise error
    authorize(principal, scope, _model_of_request(access, req) if scope == SCOPE_PREDICT else None)


def _model_of_request(access: Access, req: Request) -> str | None:
    """The model the request names, or the default model that serves it when it names none."""
    args = req.view_args
    name = args.get("name") if args else None
    if isinstance(name, str):
        return name
    if access.default_model:
        return get_handlers().service.default_name()
    return None


def challenge(exc: errors.Unauthenticated | errors.Forbidden) -> str:
    """The ``WWW-Authenticate`` value of a 401 or 403 (RFC 6750, section 3)."""
    if isinstance(exc, errors.Forbidden):
        return f'{_REALM}, error="insufficient_scope", scope="{exc.scope}"'
    if exc.token_sent:
        return f'{_REALM}, error="invalid_token"'
    return _REALM


def handle_auth_error(exc: errors.Unauthenticated | errors.Forbidden) -> Response:
    """The table's JSON answer, with the challenge that says how to authenticate."""
    response = handle_modelserve_error(exc)
    response.headers["WWW-Authenticate"] = challenge(exc)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, settings: ServerSettings) -> None:
    """Build this app's authenticator and guard every route.

    :raises ConfigError: for a missing or invalid keys file, or bad JWT settings.
    """
    app.extensions[EXTENSION_KEY] = _Policy(settings)
    # The check itself runs in the request pipeline (check_access), before the rate limits,
    # which read current_principal().
    app.register_error_handler(errors.Unauthenticated, handle_auth_error)
    app.register_error_handler(errors.Forbidden, handle_auth_error)
