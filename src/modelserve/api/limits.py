"""Rate limits per client and route class (fixed windows); no hook at all when none is set.

Each limited request is counted under ``(client, route class)``: the client is the
authenticated principal's name when the request has one (``auth.current_principal()``), else the
address of the TCP peer (``request.remote_addr``: a ``X-Forwarded-For`` header counts only
behind a configured number of trusted proxy hops, so a spoofed one never resets a limit). The
classes group the endpoints that cost alike, so ``/predict`` and ``/models/<name>/predict``
share one budget. Health probes and read-only descriptions are never limited.

The limits are parsed, and the Redis client built, by :pypi:`limits` (Flask-Limiter's storage
layer), and the counters keep Flask-Limiter's key layout and fixed-window semantics. Counting
is done here rather than through Flask-Limiter's request hooks: those cost more than half of
``/predict``'s throughput (three Redis round trips per request, limits re-resolved on every
request, an in-memory store that re-schedules its expiry on each hit). Here it is one
``before_request`` hook and one Redis round trip (a Lua script), or one dict update under a
lock.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
import weakref
from typing import Any
from typing import Literal
from typing import Protocol

from flask import Flask
from flask import Response
from flask import g
from flask import request
from limits import RateLimitItem
from limits import parse_many
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.storage import storage_from_string
from werkzeug.exceptions import TooManyRequests

from ..errors import ConfigError
from ..errors import ServerBusy
from ..security import Principal
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
    # Reads every worker's metric files, as a scrape does (the web page polls it).
    "observe.model_stats": "admin",
    # Batch jobs: a submission streams a file to disk and a result streams one back; they
    # spend the batch budget. Cancelling is counted with them (it writes to the store).
    "jobs.submit_job": "batch",
    "jobs.job_result": "batch",
    "jobs.job_errors": "batch",
    "jobs.cancel_job": "batch",
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
        # A job's state and the listing are one indexed query: polled, never limited.
        "jobs.get_job",
        "jobs.list_jobs",
        "static",
        # The API's own description: cached per model table, and Swagger UI's files.
        "openapi.spec",
        "docs.index",
        "docs.asset",
    }
)

EXTENSION_KEY = "modelserve.limiter"

#: Prefix of every counter key, so the counters never collide with other data in Redis.
KEY_PREFIX = "modelserve"

#: The start of every counter key: Flask-Limiter's layout
#: (``LIMITS:LIMITER/<prefix>/<client>/<class>/<amount>/<multiples>/<granularity>``), so the
#: counters of a server that still runs Flask-Limiter's hooks are the same counters.
_KEY_HEAD = f"{RedisStorage.PREFIX}:LIMITER/{KEY_PREFIX}/"

#: Seconds between two log lines about an unreachable counter storage.
STORAGE_LOG_INTERVAL = 60.0

#: Seconds the storage is given to answer before a check counts as failed.
_STORAGE_TIMEOUT = 0.5

#: Seconds after a storage failure during which requests do not try the storage again
#: (a refused connection still costs the client's retries: ~0.1 s per request).
STORAGE_RETRY_INTERVAL = 2.0

#: Seconds between two sweeps of the expired windows out of the memory storage.
_SWEEP_INTERVAL = 60.0

#: Counts one request against every limit of a class in one round trip. Like Flask-Limiter,
#: it stops at the first limit the request exceeds (a refused request spends nothing of the
#: longer limits) and a window starts at the client's first request. A counter that somehow
#: has no expiry gets one, so it can never block a client for good.
#:
#: Far from every limit it counts a *lease* of several requests at once (the last two
#: arguments: the most, and the share of the smallest room left): at most 1/16 of what is left
#: in any window, so a lease can never pass a limit, and within 16 requests of a limit every
#: request is counted on its own, exactly as before. It answers the index of the limit the
#: headers describe, that limit's count and milliseconds to its reset, the requests granted,
#: and the milliseconds until the first of the windows resets (when a lease must end).
_SCRIPT = b"""
local n = #KEYS
local grant = tonumber(ARGV[2 * n + 1])
local share = tonumber(ARGV[2 * n + 2])
for i, key in ipairs(KEYS) do
  local room = tonumber(ARGV[2 * i - 1]) - tonumber(redis.call('GET', key) or '0')
  local fits = math.floor(room / share)
  if fits < grant then grant = fits end
end
if grant < 1 then grant = 1 end
local first
local soonest
for i, key in ipairs(KEYS) do
  local count = redis.call('INCRBY', key, grant)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    ttl = tonumber(ARGV[2 * i])
    redis.call('PEXPIRE', key, ttl)
  end
  if count > tonumber(ARGV[2 * i - 1]) then
    return {i - 1, count, ttl, 1, ttl}
  end
  if soonest == nil or ttl < soonest then soonest = ttl end
  if i == 1 then
    first = {0, count, ttl}
  end
end
return {first[1], first[2], first[3], grant, soonest}
"""

#: The most requests one lease counts, and the share of the smallest room left it may take.
LEASE_MAX = 64
LEASE_SHARE = 16


def route_class(endpoint: str | None) -> RouteClass | None:
    """The rate-limit class of ``endpoint``, or ``None`` when it is never limited."""
    return ROUTE_CLASSES.get(endpoint or "")


def client_key() -> str:
    """Whose budget a request spends: its principal's name, else its peer address."""
    return client_key_of(current_principal(), request.remote_addr)


def client_key_of(principal: Principal | None, remote_addr: str | None) -> str:
    """:func:`client_key` from its two facts (the express lane has no Flask request)."""
    name = principal.name if principal is not None else None
    if isinstance(name, str) and name:
        return f"key:{name}"
    return f"ip:{remote_addr or 'unknown'}"


class ClassLimits:
    """The limits of one route class, parsed once, with the fixed parts of their keys.

    :param name: the route class.
    :param setting: the limit as configured (``"100/minute;2000/hour"``).
    """

    def __init__(self, name: str, setting: str) -> None:
        self.name = name
        self.setting = setting
        # Flask-Limiter's order: shortest granularity first, the first one gives the headers.
        items: list[RateLimitItem] = sorted(parse_many(setting))
        self.amounts = tuple(item.amount for item in items)
        self.seconds = tuple(item.get_expiry() for item in items)
        #: ``/<class>/<amount>/<multiples>/<granularity>`` of each limit's key.
        self.key_tails = tuple(item.key_for(name)[len(item.namespace) :] for item in items)
        self.message = (
            f"Rate limit exceeded: {setting} per client on {name} routes "
            f"(MODELSERVE_RATE_LIMIT_{name.upper()} / MODELSERVE_RATE_LIMIT)"
        )

    def keys_for(self, client: str) -> list[str]:
        """The counter keys of ``client``, one per limit."""
        head = _KEY_HEAD + client
        return [head + tail for tail in self.key_tails]

    def __repr__(self) -> str:
        return f"ClassLimits({self.name!r}, {self.setting!r})"


#: What a storage answers for a counted request: the index of the limit the headers describe
#: (the exceeded one, else the first), its count including this request, and the seconds
#: until its window resets.
Window = tuple[int, int, float]


class Counters(Protocol):
    """Where the counters live."""

    #: The exceptions that mean "the storage cannot answer" (fail open or closed).
    errors: tuple[type[BaseException], ...]

    def incr(self, limits: ClassLimits, client: str) -> Window:
        """Count one request of ``client`` against every limit of ``limits``."""
        ...  # pragma: no cover


class _Slot:
    __slots__ = ("count", "ends")

    def __init__(self, ends: float) -> None:
        self.count = 0
        self.ends = ends


class MemoryCounters:
    """The counters of one process: a dict under a lock; old windows expire lazily.

    An expired window is restarted when its client comes back, and the ones nobody comes back
    to are swept out once a minute, so memory holds only the clients of the current windows.
    """

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._sweep_at = time.monotonic() + _SWEEP_INTERVAL

    def incr(self, limits: ClassLimits, client: str) -> Window:
        keys = limits.keys_for(client)
        first: Window = (0, 0, 0.0)  # replaced by the first limit's (a class has at least one)
        with self._lock:
            now = time.monotonic()
            if now >= self._sweep_at:
                self._sweep(now)
            for i, key in enumerate(keys):
                slot = self._slots.get(key)
                if slot is None or slot.ends <= now:
                    slot = self._slots[key] = _Slot(now + limits.seconds[i])
                slot.count += 1
                if slot.count > limits.amounts[i]:
                    return i, slot.count, slot.ends - now
                if i == 0:
                    first = (0, slot.count, slot.ends - now)
        return first

    def _sweep(self, now: float) -> None:
        expired = [key for key, slot in self._slots.items() if slot.ends <= now]
        for key in expired:
            del self._slots[key]
        self._sweep_at = now + _SWEEP_INTERVAL

    def __len__(self) -> int:
        return len(self._slots)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _Lease:
    """Requests of one client and class counted in Redis ahead of time, spent here."""

    __slots__ = ("tokens", "count", "ends", "resets")

    def __init__(self, tokens: int, count: int, ends: float, resets: float) -> None:
        self.tokens = tokens  # counted in Redis, not yet spent by a request
        self.count = count  # the first limit's count as of the last request spent
        self.ends = ends  # monotonic time the first of the windows resets: the lease with it
        self.resets = resets  # monotonic time the first limit's window resets (the headers)


class RedisCounters:
    """Counters in Redis, shared by every worker and replica: one ``EVALSHA`` per request, or
    per lease of requests while the client is far from its limits.

    The client (URL forms, TLS, password, database, timeouts) is the one :pypi:`limits` builds.
    Each request thread keeps one connection of its own and sends a command whose fixed parts
    were encoded once: redis-py's command path (pool checkout, argument encoding, retries)
    costs more CPU than the round trip itself.

    Leases (:data:`_SCRIPT`): a client far from its limits has up to :data:`LEASE_MAX` requests
    counted at once, and this process lets them through without asking Redis again until they
    are spent or the first window resets. No limit is ever passed: a lease is at most
    1/:data:`LEASE_SHARE` of the room left, and near a limit each request is counted alone. What
    a lease changes: requests counted in one process's lease and not yet sent are counted
    already, so a client spread over several workers can be refused up to those few requests
    early, and ``X-RateLimit-Remaining`` does not see the other processes' requests until the
    next lease.

    :param uri: ``redis://`` or ``rediss://`` URL.
    """

    def __init__(self, uri: str) -> None:
        storage = storage_from_string(
            uri, socket_timeout=_STORAGE_TIMEOUT, socket_connect_timeout=_STORAGE_TIMEOUT
        )
        if not isinstance(storage, RedisStorage):
            raise ConfigError(f"MODELSERVE_RATE_LIMIT_STORAGE: not a Redis URL: {uri!r}")
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError

        client: Any = storage.get_connection()
        self._pool = client.connection_pool
        self._no_script = NoScriptError
        self._connection_error = RedisConnectionError
        base = storage.base_exceptions
        self.errors = (StorageError, OSError, *(base if isinstance(base, tuple) else (base,)))
        self._sha = hashlib.sha1(_SCRIPT).hexdigest().encode()
        self._local = threading.local()
        self._commands: dict[str, tuple[bytes, tuple[bytes, ...], bytes]] = {}
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._lease_lock = threading.Lock()
        self._sweep_at = time.monotonic() + _SWEEP_INTERVAL
        _REDIS_COUNTERS.add(self)

    def forget_connections(self) -> None:
        """Open new connections from now on and drop every lease (in a forked child: the
        parent's connections and leased requests are its own, and spending them in two
        processes would let twice the lease through)."""
        self._local = threading.local()
        self._lease_lock = threading.Lock()
        self._leases = {}

    def prepare(self, limits: ClassLimits) -> None:
        """Encode the parts of ``limits``' command that do not depend on the client."""
        n = len(limits.amounts)
        # EVALSHA, the sha, n, n keys, 2n limit arguments, the lease's most and share.
        head = b"*%d\r\n" % (5 + 3 * n) + _bulk(b"EVALSHA") + _bulk(self._sha)
        head += _bulk(b"%d" % n) + b"$"
        tails = tuple(tail.encode() for tail in limits.key_tails)
        argv = b"".join(
            _bulk(b"%d" % amount) + _bulk(b"%d" % (seconds * 1000))
            for amount, seconds in zip(limits.amounts, limits.seconds, strict=True)
        )
        argv += _bulk(b"%d" % LEASE_MAX) + _bulk(b"%d" % LEASE_SHARE)
        self._commands[limits.name] = (head, tails, argv)

    def incr(self, limits: ClassLimits, client: str) -> Window:
        lease_key = (limits.name, client)
        now = time.monotonic()
        with self._lease_lock:
            lease = self._leases.get(lease_key)
            if lease is not None and lease.tokens > 0 and now < lease.ends:
                lease.tokens -= 1
                lease.count += 1
                return 0, lease.count, lease.resets - now
        index, count, reset_in, granted, ends_in = self._count(limits, client)
        if granted <= 1:
            return index, count, reset_in
        mine = count - granted + 1  # this request is the first of the lease
        tokens = granted - 1
        with self._lease_lock:
            if now >= self._sweep_at:
                self._sweep(now)
            # Another thread took a lease meanwhile: keep its requests too (they are counted).
            other = self._leases.get(lease_key)
            if other is not None and other.tokens > 0 and now < other.ends:
                tokens += other.tokens
            self._leases[lease_key] = _Lease(tokens, mine, now + ends_in, now + reset_in)
        return index, mine, reset_in

    def _sweep(self, now: float) -> None:
        """Drop the leases whose windows are over (called under the lease lock)."""
        self._leases = {k: lease for k, lease in self._leases.items() if lease.ends > now}
        self._sweep_at = now + _SWEEP_INTERVAL

    def _count(self, limits: ClassLimits, client: str) -> tuple[int, int, float, int, float]:
        """One round trip: (index, count, seconds to reset, requests granted, seconds until
        the lease must end)."""
        head, tails, argv = self._commands[limits.name]
        prefix = (_KEY_HEAD + client).encode()
        keys = b"$".join(
            b"%d\r\n%s%s\r\n" % (len(prefix) + len(tail), prefix, tail) for tail in tails
        )
        command = head + keys + argv
        # redis-py's Connection: its send/read methods are not annotated.
        conn: Any = self._local.__dict__.get("conn")
        if conn is None:
            conn = self._local.conn = self._pool.make_connection()
        try:
            try:
                reply = self._call(conn, command)
            except self._connection_error:
                # Redis restarted, or closed an idle connection: once more on a new one, as
                # redis-py's client does. (Should the first reply alone have been lost, the
                # request is counted twice: strict, never more than the limit.)
                conn.disconnect()
                reply = self._call(conn, command)
        except BaseException:
            conn.disconnect()  # never reuse a connection that may hold half a reply
            raise
        index, count, ttl_ms, granted, ends_ms = reply
        return int(index), int(count), int(ttl_ms) / 1000, int(granted), int(ends_ms) / 1000

    def _call(self, conn: Any, command: bytes) -> list[int]:
        conn.send_packed_command((command,), check_health=False)
        try:
            reply: list[int] = conn.read_response()
        except self._no_script:  # a fresh (or flushed) Redis: load the script, once more
            conn.send_packed_command(conn.pack_command("SCRIPT", "LOAD", _SCRIPT))
            conn.read_response()
            conn.send_packed_command((command,), check_health=False)
            reply = conn.read_response()
        return reply


#: Every Redis counter set of the process, so that a forked child never shares a parent's
#: connection (a server that builds its app before forking its workers).
_REDIS_COUNTERS: weakref.WeakSet[RedisCounters] = weakref.WeakSet()


def _forget_connections() -> None:
    for counters in list(_REDIS_COUNTERS):
        counters.forget_connections()


os.register_at_fork(after_in_child=_forget_connections)


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


class RateLimiter:
    """Count each limited request once, before its view; a storage failure is never a 500.

    On a failure the request goes through (fail open) or gets a 503 with ``Retry-After``
    (fail closed), the log says so at most once a minute, and for
    :data:`STORAGE_RETRY_INTERVAL` seconds requests do not wait for the storage again.

    :param settings: the rate-limit settings (at least one class limited).
    :raises ConfigError: when the storage URL cannot be used.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self._fail_open = settings.rate_limit_fail_open
        self._alarm = _StorageAlarm(STORAGE_LOG_INTERVAL)
        self._retry_at = 0.0
        uri = settings.rate_limit_storage or "memory://"
        self.classes = {
            name: ClassLimits(name, value) for name, value in settings.rate_limits().items()
        }
        self.storage: Counters
        if uri.startswith("memory://"):
            self.storage = MemoryCounters()
        else:
            try:
                redis_counters = RedisCounters(uri)
            except ConfigError:
                raise
            except Exception as exc:  # a storage URL limits cannot use
                raise ConfigError(
                    f"MODELSERVE_RATE_LIMIT_STORAGE: cannot use {uri!r}: {exc}"
                ) from exc
            for limits in self.classes.values():
                redis_counters.prepare(limits)
            self.storage = redis_counters
        #: Only the endpoints whose class has a limit: every other request (health, metadata,
        #: exempt classes) costs one dict lookup.
        self._by_endpoint = {
            endpoint: self.classes[cls]
            for endpoint, cls in ROUTE_CLASSES.items()
            if cls in self.classes
        }

    def init_app(self, app: Flask) -> None:
        app.before_request(self.check_request)  # after the pipeline's (authentication)

    def limits(self, endpoint: str) -> bool:
        """Whether requests to ``endpoint`` are counted (and get the limit headers)."""
        return endpoint in self._by_endpoint

    def limits_of(self, endpoint: str) -> ClassLimits | None:
        """The limits requests to ``endpoint`` count against (``None``: not limited)."""
        return self._by_endpoint.get(endpoint)

    def check_request(self) -> None:
        """Count the request; raise 429 past its limit, or 503 when failing closed."""
        # The express lane counted this request already and handed it over: its verdict.
        counted: Counted | None = request.environ.pop(COUNTED_KEY, None)
        if counted is None:
            limits = self._by_endpoint.get(request.endpoint)  # type: ignore[arg-type]
            if limits is None:
                return
            counted = self.count(limits, client_key())
        window, refusal = counted
        if window is not None:
            g.modelserve_rate_limit = window
        if refusal is not None:
            raise refusal

    def count(self, limits: ClassLimits, key: str) -> Counted:
        """Count one request of client ``key``: its window for the headers (``None`` when the
        storage is down), and the refusal to answer it with (``None``: let it through), a 429
        past the limit or a 503 when the storage is down and the limit fails closed."""
        if self._retry_at:
            if time.monotonic() < self._retry_at:
                # The storage failed a moment ago: decide without waiting for it again.
                return None, self._storage_failed(None)
        try:
            index, count, reset_in = self.storage.incr(limits, key)
        except self.storage.errors as exc:
            return None, self._storage_failed(exc)
        if self._retry_at:
            self._retry_at = 0.0
            self._alarm.ok()
        amount = limits.amounts[index]
        window = (amount, max(0, amount - count), math.ceil(time.time() + reset_in))
        if count > amount:
            return window, TooManyRequests(limits.message, retry_after=max(1, math.ceil(reset_in)))
        return window, None

    def _storage_failed(self, exc: BaseException | None) -> ServerBusy | None:
        """The 503 to refuse the request with, or ``None`` to let it through; ``exc`` is
        ``None`` while the storage is skipped after a recent failure."""
        if exc is not None:
            self._retry_at = time.monotonic() + STORAGE_RETRY_INTERVAL
            self._alarm.failed(exc, self._fail_open)
        if self._fail_open:
            return None
        return ServerBusy(
            "The rate limit storage is unreachable and MODELSERVE_RATE_LIMIT_FAIL_OPEN "
            "is off: retry later",
            retry_after=5.0,
        )


#: One counted request's ``X-RateLimit-*`` values: limit, remaining, reset (epoch seconds).
LimitValues = tuple[int, int, int]
#: What counting one request decided: its window (``None``: the storage is down) and the
#: refusal to answer it with (``None``: let it through).
Counted = tuple[LimitValues | None, "TooManyRequests | ServerBusy | None"]
#: The environ key under which the express lane hands a request it counted to Flask.
COUNTED_KEY = "modelserve.rate_limit.counted"


def add_headers(response: Response) -> Response:
    """The ``X-RateLimit-*`` headers of a counted request (the request pipeline calls it)."""
    window = g.get("modelserve_rate_limit")
    if window is not None:
        # add, not set: the response has none of these yet, and set scans every header.
        add = response.headers.add
        for name, value in window_headers(window):
            add(name, value)
    return response


def window_headers(window: LimitValues) -> list[tuple[str, str]]:
    """The ``X-RateLimit-*`` headers of one counted window."""
    limit, remaining, reset = window
    return [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(reset)),
    ]


def init_app(app: Flask, settings: ServerSettings) -> None:
    """Rate-limit the app's route classes; registers nothing at all when no limit is set.

    Call it after the authentication hook (``auth.current_principal``), so that clients with
    a key are counted by key.

    :raises ConfigError: when the storage URL cannot be used.
    """
    if not settings.rate_limits():
        return
    limiter = RateLimiter(settings)
    limiter.init_app(app)
    app.extensions[EXTENSION_KEY] = limiter


def get_limiter(app: Flask) -> RateLimiter | None:
    """The app's :class:`RateLimiter`, or ``None`` when limits are off."""
    limiter: RateLimiter | None = app.extensions.get(EXTENSION_KEY)
    return limiter
