"""Rate limits per client and route class (Flask-Limiter); no hook at all when none is set.

Each limited request is counted under ``(client, route class)``: the client is the
authenticated principal's name when the request has one (``flask.g.principal``), else the
address of the TCP peer (``request.remote_addr``: a ``X-Forwarded-For`` header counts only
behind a configured number of trusted proxy hops, so a spoofed one never resets a limit). The
classes group the endpoints that cost alike, so ``/predict`` and ``/models/<name>/predict``
share one budget. Health probes and read-only descriptions are never limited.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from typing import Literal

from flask import Flask
from flask import Response
from flask import request
from flask_limiter import Limit
from flask_limiter import Limiter
from flask_limiter import RateLimitExceeded
from limits.errors import StorageError

from ..errors import ConfigError
from ..errors import ServerBusy
from ..settings import ServerSettings
from .auth import current_principal

logger = logging.getLogger(__name__)

RouteClass = Literal["predict", "batch", "image", "admin"]

#: Every rate-limited endpoint and its class. An endpoint of the app is either here or in
#: :data:`UNLIMITED` (``tests/api/test_limits.py`` checks that none is forgotten).
ROUTE_CLASSES: dict[str, RouteClass] = {
    "predict.predict": "predict",
    "v2.infer": "predict",
    "predict.predict_batch": "batch",
    "predict.predict_image": "image",
    "predict.predict_image_base64": "image",
    "v2.repository_index": "admin",
    "v2.repository_load": "admin",
    "v2.repository_unload": "admin",
    # Reads the prediction log: a database query per call, budgeted like the admin routes.
    "drift.model_drift": "admin",
}

#: Endpoints that are never limited: health probes must answer whatever clients do, and the
#: read-only descriptions cost less than counting them would.
UNLIMITED = frozenset(
    {
        "ops.health",
        "v2.live",
        "v2.ready",
        "ops.index",
        "ops.list_models",
        "ops.model_metadata",
        "v2.server_metadata",
        "v2.model_metadata",
        "v2.model_ready",
        "observe.metrics",
        "static",
    }
)

EXTENSION_KEY = "modelserve.limiter"

#: Prefix of every counter key, so the counters never collide with other data in Redis.
KEY_PREFIX = "modelserve"

#: Seconds between two log lines about an unreachable counter storage.
STORAGE_LOG_INTERVAL = 60.0

#: Seconds the storage is given to answer before a check counts as failed.
_STORAGE_TIMEOUT = 0.5

#: Seconds after a storage failure during which requests do not try the storage again
#: (a refused connection still costs the client's retries: ~0.1 s per request).
STORAGE_RETRY_INTERVAL = 2.0


def route_class(endpoint: str | None) -> RouteClass | None:
    """The rate-limit class of ``endpoint``, or ``None`` when it is never limited."""
    return ROUTE_CLASSES.get(endpoint or "")


def client_key() -> str:
    """Whose budget a request spends: its principal's name, else its peer address."""
    principal = current_principal()
    name = principal.name if principal is not None else None
    if isinstance(name, str) and name:
        return f"key:{name}"
    return f"ip:{request.remote_addr or 'unknown'}"


class _StorageAlarm:
    """Log an unreachable storage at most once per interval, and its recovery once."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_logged = 0.0
        self._failures = 0

    def failed(self, exc: BaseException, fail_open: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._down_since is not None and now - self._last_logged < self.interval:
                return
            first = self._down_since is None
            if first:
                self._down_since = now
            failures, self._failures = self._failures, 0
            self._last_logged = now
        what = "letting requests through" if fail_open else "answering 503"
        if first:
            logger.error(
                "rate limit storage unreachable (%s: %s): %s", type(exc).__name__, exc, what
            )
        else:
            logger.error(
                "rate limit storage still unreachable (%s: %s): %s; %d failed check(s) since "
                "the last report",
                type(exc).__name__,
                exc,
                what,
                failures,
            )

    def ok(self) -> None:
        if self._down_since is None:  # the common case: no lock on the hot path
            return
        with self._lock:
            if self._down_since is None:
                return
            down = time.monotonic() - self._down_since
            self._down_since = None
            self._failures = 0
        logger.warning("rate limit storage reachable again after %.0f s", down)


class RateLimiter(Limiter):
    """Flask-Limiter, where a storage failure never becomes a 500.

    Flask-Limiter either raises the storage error (a 500) or swallows it with a traceback in
    the log on every request. Here the check and the header values are read in one place:
    on a failure the request goes through (fail open) or gets a 503 with ``Retry-After``
    (fail closed), and the log says so at most once a minute.
    """

    def __init__(self, settings: ServerSettings, classes: dict[str, str]) -> None:
        self._classes = classes
        self._fail_open = settings.rate_limit_fail_open
        self._alarm = _StorageAlarm(STORAGE_LOG_INTERVAL)
        storage = settings.rate_limit_storage or "memory://"
        options: dict[str, Any] = {}
        if not storage.startswith("memory://"):
            # Redis: never let an unreachable server hold a request for long.
            options = {
                "socket_timeout": _STORAGE_TIMEOUT,
                "socket_connect_timeout": _STORAGE_TIMEOUT,
            }
        super().__init__(
            client_key,
            default_limits=[
                Limit(
                    self._limit_of_request,
                    scope=self._scope_of,
                    shared=True,
                    error_message=self._message,
                )
            ],
            storage_uri=storage,
            storage_options=options,
            strategy="fixed-window",
            headers_enabled=True,
            swallow_errors=False,
            key_prefix=KEY_PREFIX,
        )
        self._errors: tuple[type[BaseException], ...] = (StorageError, OSError)
        self._retry_at = 0.0

    def init_app(self, app: Flask) -> None:
        try:
            super().init_app(app)
        except Exception as exc:  # a storage URL limits cannot use
            raise ConfigError(
                f"MODELSERVE_RATE_LIMIT_STORAGE: cannot use {self._storage_uri!r}: {exc}"
            ) from exc
        base = self.storage.base_exceptions
        extra = base if isinstance(base, tuple) else (base,)
        self._errors = (StorageError, OSError, *extra)
        # Only the classes that have a limit are counted; every other request (health,
        # metadata, exempt classes) skips the limiter before it touches the storage.
        self.request_filter(lambda: route_class(request.endpoint) not in self._classes)

    def _limit_of_request(self) -> str:
        return self._classes.get(route_class(request.endpoint) or "", "")

    @staticmethod
    def _scope_of(endpoint: str) -> str:
        return route_class(endpoint) or endpoint

    def _message(self) -> str:
        cls = route_class(request.endpoint) or "?"
        return (
            f"Rate limit exceeded: {self._classes.get(cls)} per client on {cls} routes "
            f"(MODELSERVE_RATE_LIMIT_{cls.upper()} / MODELSERVE_RATE_LIMIT)"
        )

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if self._retry_at and time.monotonic() < self._retry_at:
            # The storage failed a moment ago: decide without waiting for it again (the
            # filter has not run: health and unlimited classes still pass untouched).
            if route_class(request.endpoint) in self._classes:
                self._storage_failed(None)
            return
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except RateLimitExceeded:
            self._read_window()
            raise
        except self._errors as exc:
            self._storage_failed(exc)
        else:
            self._read_window()

    def _read_window(self) -> None:
        """Read the header values now: Flask-Limiter would read them in its after-request
        hook, where a storage failure could only become a 500."""
        current = self.context.view_rate_limit
        if current is None:
            return
        try:
            current.window  # noqa: B018 - cached on the object for the headers
        except self._errors as exc:
            self._storage_failed(exc)
        else:
            self._retry_at = 0.0
            self._alarm.ok()

    def _storage_failed(self, exc: BaseException | None) -> None:
        """Let the request through or refuse it with a 503; ``exc`` is ``None`` while the
        storage is skipped after a recent failure."""
        self.context.reset()  # nothing half-evaluated reaches the response headers
        if exc is not None:
            self._retry_at = time.monotonic() + STORAGE_RETRY_INTERVAL
            self._alarm.failed(exc, self._fail_open)
        if not self._fail_open:
            raise ServerBusy(
                "The rate limit storage is unreachable and MODELSERVE_RATE_LIMIT_FAIL_OPEN "
                "is off: retry later",
                retry_after=5.0,
            ) from None


def _retry_after_only_when_refused(response: Response) -> Response:
    # Flask-Limiter writes Retry-After on every limited response; it means "come back
    # later", so a success keeps only the X-RateLimit-* headers.
    if response.status_code < 400:
        response.headers.pop("Retry-After", None)
    return response


def init_app(app: Flask, settings: ServerSettings) -> None:
    """Rate-limit the app's route classes; registers nothing at all when no limit is set.

    Call it after any hook that sets ``g.principal`` (authentication), so that clients with
    a key are counted by key.

    :raises ConfigError: when the storage URL cannot be used.
    """
    classes = settings.rate_limits()
    if not classes:
        return
    # Registered before Flask-Limiter's own after-request hook, so it runs after it.
    app.after_request(_retry_after_only_when_refused)
    limiter = RateLimiter(settings, dict(classes))
    limiter.init_app(app)
    app.extensions[EXTENSION_KEY] = limiter


def get_limiter(app: Flask) -> RateLimiter | None:
    """The app's :class:`RateLimiter`, or ``None`` when limits are off."""
    limiter: RateLimiter | None = app.extensions.get(EXTENSION_KEY)
    return limiter
