"""One settings object, read from ``MODELSERVE_*`` environment variables and an optional file.

Precedence, highest first: values passed to the constructor (the CLI's flags), environment
variables, the settings file named by ``MODELSERVE_SETTINGS_FILE`` (TOML or YAML), defaults.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal
from typing import TypeVar

import yaml
from pydantic import Field
from pydantic import SecretStr
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import NoDecode
from pydantic_settings import PydanticBaseSettingsSource
from pydantic_settings import SettingsConfigDict

from .errors import ConfigError
from .threads import default_max_batch_size
from .threads import default_max_latency_ms
from .threads import default_server_threads

Profile = Literal["development", "production", "testing"]

SETTINGS_FILE_ENV = "MODELSERVE_SETTINGS_FILE"

#: The route classes that have a rate limit each (``MODELSERVE_RATE_LIMIT_<CLASS>``).
RATE_LIMIT_CLASSES = ("predict", "batch", "image", "admin")
#: Values of a per-class rate limit that exempt the class from ``MODELSERVE_RATE_LIMIT``.
RATE_LIMIT_OFF = frozenset({"off", "none", ""})


class _FileSource(PydanticBaseSettingsSource):
    """Read settings from the TOML or YAML file named by ``MODELSERVE_SETTINGS_FILE``."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path:
            self._data = _read_settings_file(Path(path))

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def _read_settings_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read settings file {path} ({SETTINGS_FILE_ENV}): {exc}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Settings file {path} is not valid: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Settings file {path} must hold a mapping of setting names to values")
    # A file may nest everything under [modelserve] so it can share a pyproject-like file.
    section = data.get("modelserve", data)
    unknown = sorted(set(section) - set(ServerSettings.model_fields))
    if unknown:
        raise ConfigError(f"Settings file {path} has unknown settings: {', '.join(unknown)}")
    return dict(section)


class ServerSettings(BaseSettings):
    """Everything the server reads at start-up. Each field is also ``MODELSERVE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="MODELSERVE_",
        extra="forbid",
        validate_default=True,
        protected_namespaces=(),
    )

    profile: Profile = "production"
    """``development`` (debug, reloader), ``production`` (safe defaults), ``testing``."""

    debug: bool = False
    """Flask debug mode. Refused in production: it exposes an interactive debugger."""

    secret_key: SecretStr | None = None
    """Flask's secret key: it signs session cookies (the web page), nothing a prediction
    needs. Unset: the server makes a random one at start, shared by its workers, so signed
    sessions do not survive a restart; set it when they must."""

    model_path: Path | None = None
    """A model repository folder, one model folder, or one model file."""

    preprocessor: Path | None = None
    """Single-file mode only: a fitted transformer applied before the model (``scaler.pkl``)."""

    default_model: str | None = None
    """The model ``/predict`` serves; needed only when the repository holds several."""

    max_content_length: int = Field(default=16 * 1024 * 1024, ge=1)
    """Largest request body in bytes; larger bodies get 413."""

    max_batch_rows: int = Field(default=10_000, ge=1)
    """Most rows one ``/predict_batch`` request may carry; more get 413."""

    allow_extra_fields: bool = False
    """Accept (and ignore) JSON fields that are not model features, instead of a 400."""

    max_image_pixels: int = Field(default=40_000_000, ge=1)
    """Largest width x height an uploaded image may declare; larger ones get 413 before
    any pixel is decoded (a small PNG can claim gigapixels: a decompression bomb)."""

    max_images_per_request: int = Field(default=64, ge=1)
    """Most images one ``/predict_image`` request may carry; more get 413."""

    require_sha256: bool = False
    """Refuse to load an artifact whose sha256 is not pinned in its manifest."""

    server: Literal["gunicorn", "granian"] = "granian"
    """The production WSGI server: granian (HTTP in Rust, faster in BENCHMARKS.md) or
    gunicorn (gthread workers)."""
    poll_interval: float = Field(default=5.0, ge=0)
    """Seconds between scans of the model repository for new or changed versions (hot
    reload, in every worker); ``0`` turns polling off (SIGHUP and the load API still work)."""

    state_file: Path | None = None
    """Where the workers of one server share repository state (models unloaded through the
    API). Set by the server for its workers; rarely set by hand."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    """Server processes. Each holds every model; with ``preload`` the fork-safe ones are one
    copy shared by all of them."""

    threads: int = Field(
        default_factory=lambda data: default_server_threads(data.get("workers", 1)),
        ge=1,
    )
    """Threads per worker process. Requests waiting on a shared (batched) model call hold a
    thread each, so more threads mean larger batches under load, not more CPU. Default: from
    the CPUs of the worker's share (affinity and container quota, ``threads.py``), measured in
    BENCHMARKS.md ("Defaults from the machine")."""

    timeout: int = Field(default=30, ge=1)
    """Seconds a worker may spend on one request before it is restarted."""

    graceful_timeout: int = Field(default=30, ge=1)
    """Seconds a stopping server (SIGTERM) gives the requests it accepted to finish; workers
    still running then are killed. Readiness answers 503 from the signal on."""

    express: bool = True
    """Answer the JSON prediction requests (``/predict``, ``/predict_batch``,
    ``/predict_image_base64``, V2 ``infer``) through the express lane, a WSGI entry in front
    of Flask that does the same checks, headers, metrics and line with less work; anything it
    cannot answer with a 200 goes to Flask (``api/express.py``). Off: every request goes
    through Flask."""

    preload: bool = True
    """Load the models that are safe to share (``runtime: sklearn``) in the main process,
    before the workers are forked, so the workers share their memory copy-on-write. Runtimes
    with native thread pools (ONNX, torch, the boosters, ``auto``'s compiled graph) always load
    in each worker, after the fork."""

    max_requests: int = Field(default=0, ge=0)
    """Recycle a worker after this many requests (a fresh one starts first, the old one
    finishes what it accepted); ``0`` never recycles for this reason."""

    max_requests_jitter: int = Field(default=0, ge=0)
    """Each worker's limit is ``max_requests`` plus a random 0..jitter, so the workers of one
    server are not all recycled at the same moment."""

    max_worker_rss_mb: int = Field(default=0, ge=0)
    """Recycle a worker whose resident memory is above this many MiB (checked every second;
    set it well above a fresh worker's); ``0`` never recycles for this reason."""

    model_threads: int | None = Field(default=None, ge=1)
    """Threads one model call may use (BLAS, OpenMP, onnxruntime, torch). Default: the CPUs
    divided by ``workers``, so the workers together never oversubscribe the cores."""

    max_batch_size: int = Field(
        default_factory=lambda data: default_max_batch_size(data.get("workers", 1)),
        ge=1,
    )
    """Adaptive batching: most rows merged into one model call; ``1`` turns batching off.
    Default: the default request threads (each waiting request holds one, so a larger batch
    could not fill)."""

    batch_min_cost_ms: float = Field(default=0.5, ge=0)
    """Batch a model only when one warm single-row call costs at least this much: sharing a
    call saves its fixed cost but hands the request to another thread (~0.1-0.2 ms), which
    a compiled model answering in microseconds never earns back. ``0`` batches every model.
    A manifest's ``batching:`` section always wins."""

    max_latency_ms: float = Field(
        default_factory=lambda data: default_max_latency_ms(data.get("workers", 1)),
        ge=0,
    )
    """Longest a request waits for others to share its model call (only while others are
    on their way in: a lone request is never held back)."""

    max_queue: int = Field(default=256, ge=1)
    """Most requests waiting per model version; more get 503 with Retry-After."""

    cache_backend: Literal["local", "redis"] = "local"
    """Where models with ``cache:`` in their manifest keep answers: per worker, or Redis."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """The Redis server for the shared prediction cache."""

    keepalive: int = Field(default=5, ge=0)
    """Seconds an idle keep-alive connection stays open."""

    access_log: bool = False
    """The server's own access log (granian's or gunicorn's), off by default: modelserve
    logs every request itself (``log_requests``), with more fields."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    prediction_log: str | None = None
    """Log sampled predictions (inputs, outputs, version, latency, request id) to a database:
    ``sqlite:///PATH.db`` or a plain file path (SQLite, one file per server), or
    ``postgresql://USER@HOST/DB`` (several replicas). Unset: off. Needs the ``predlog`` extra."""

    prediction_log_sample: float = Field(default=1.0, ge=0, le=1)
    """Share of answered requests the prediction log keeps (``0.1`` = one in ten)."""

    prediction_log_queue: int = Field(default=10_000, ge=1)
    """Most records waiting per worker for the log's writer; more are dropped and counted,
    so a slow database never slows or fails a request."""

    prediction_log_table: str = "modelserve_predictions"
    """The prediction log's table (created if missing)."""

    prediction_log_flush_seconds: float = Field(default=1.0, gt=0)
    """Longest the writer gathers records into one insert (bigger: fewer transactions)."""

    drift_psi_threshold: float = Field(default=0.2, gt=0)
    """Population stability index above which the drift report flags a feature (0.1: a
    moderate shift, 0.2: a significant one, by the usual rule of thumb)."""

    # -- rate limits, safe loading, request limits (issue 16) -------------------------------

    rate_limit: str | None = None
    """Requests each client may send to every rate-limited route class, in Flask-Limiter's
    notation (``100/minute``, ``10/second;1000/hour``). Unset (the default): no limit, and
    no per-request cost at all. Clients are told apart by API key, else by IP address."""

    rate_limit_predict: str | None = None
    """Overrides ``rate_limit`` for single predictions (``/predict``, V2 ``infer``);
    ``off`` exempts them."""

    rate_limit_batch: str | None = None
    """Overrides ``rate_limit`` for ``/predict_batch``; ``off`` exempts it."""

    rate_limit_image: str | None = None
    """Overrides ``rate_limit`` for ``/predict_image`` and ``/predict_image_base64``."""

    rate_limit_admin: str | None = None
    """Overrides ``rate_limit`` for the repository API (index, load, unload)."""

    rate_limit_storage: str | None = None
    """Where the counters live: ``memory://`` (each process its own) or ``redis://host:port/db``
    (shared by every worker and replica). Default: ``redis_url`` when the server has several
    workers and Redis is configured (``MODELSERVE_REDIS_URL`` set, or the Redis cache),
    else ``memory://``."""

    rate_limit_fail_open: bool = True
    """When the counter storage cannot be reached: let requests through (``true``) or answer
    503 (``false``). Either way it is logged, at most once a minute, and never a 500."""

    trust_pickles: bool = False
    """Production: load pickle/joblib artifacts whose sha256 is not pinned (they run code
    when loaded). Without it they are refused; development and testing load them with a
    warning. ``trust: true`` in a manifest trusts that model only."""

    max_json_depth: int = Field(default=32, ge=1, le=1000)
    """Deepest nesting of arrays and objects a JSON body may have; deeper ones get 400."""

    max_string_length: int = Field(default=4096, ge=1)
    """Longest value of a string feature, in characters; longer ones get 400."""

    @field_validator(
        "rate_limit",
        "rate_limit_predict",
        "rate_limit_batch",
        "rate_limit_image",
        "rate_limit_admin",
    )
    @classmethod
    def _rate_limit_syntax(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in RATE_LIMIT_OFF:
            return value
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit: write e.g. 100/minute or 10/second;1000/hour"
            ) from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory:// or a redis:// (rediss://) URL")
        return value

    def rate_limits(self) -> dict[str, str]:
        """The limit of each rate-limited route class that has one (empty: limits are off)."""
        out = {}
        for name in RATE_LIMIT_CLASSES:
            value = getattr(self, f"rate_limit_{name}")
            if value is None:
                value = self.rate_limit
            if value is not None and value.strip().lower() not in RATE_LIMIT_OFF:
                out[name] = value
        return out

    def rate_limits_per_process(self) -> bool:
        """Whether limits are on but counted by each worker alone, so that N workers let up
        to N times the limit through."""
        storage = self.rate_limit_storage or "memory://"
        return self.workers > 1 and bool(self.rate_limits()) and storage.startswith("memory://")

    # --- Security: authentication, authorisation, headers (#16) -------------------------
    api_key: SecretStr | None = None
    """One API key with the ``admin`` and ``predict`` scopes (``X-API-Key: <key>`` or
    ``Authorization: Bearer <key>``). Setting it turns authentication on."""

    keys_file: Path | None = None
    """The TOML file of named, hashed API keys that ``modelserve keys`` manages. Setting it
    turns authentication on (a file without keys lets no one in); every worker re-reads it
    within about a second of a change, so a revoked key stops working without a restart."""

    public_paths: Annotated[list[str], NoDecode] = [
        "/health",
        "/v2/health/*",
        "/metrics",
        "/static/*",
        "/openapi.json",
        "/docs",
        "/docs/static/*",
    ]
    """Paths anyone may call while authentication is on (comma-separated; a trailing ``*``
    matches any rest of the path): health checks, metrics scrapes, the web page's static
    files, the API docs (``/openapi.json`` shows an anonymous caller the routes only, not the
    models). Admin routes can never be made public."""

    jwt_issuer: str | None = None
    """The ``iss`` every JWT must carry. Required once a JWT key is configured."""

    jwt_audience: str | None = None
    """The ``aud`` every JWT must include (this server). Required once a JWT key is
    configured, so that tokens the same issuer minted for other services are refused."""

    jwt_secret: SecretStr | None = None
    """HS256 (HMAC) secret shared with the token issuer. Setting a JWT key (this, a public key
    file or a JWKS file) turns authentication on."""

    jwt_public_key_file: Path | None = None
    """A PEM public key (RSA or EC) that verifies RS256 / ES256 tokens."""

    jwt_jwks_file: Path | None = None
    """A JWKS document (``{"keys": [...]}``) on disk; the token's ``kid`` picks the key. It is
    re-read when it changes (key rotation without a restart)."""

    jwt_algorithms: Annotated[list[str], NoDecode] = []
    """Accepted signing algorithms (comma-separated). Default: HS256 for a secret, RS256 or
    ES256 (by key type) for a public key, RS256 and ES256 for a JWKS file. ``none`` and
    algorithms of the other key family are always refused."""

    jwt_scopes_claim: str = "scope"
    """The claim holding the token's scopes: a space-separated string (``scope``) or a list
    (``scp``, ``scopes``). Scopes modelserve knows: ``predict``, ``admin``."""

    jwt_leeway: float = Field(default=10.0, ge=0)
    """Seconds of clock skew allowed when checking ``exp`` and ``nbf``."""

    cors_origins: Annotated[list[str], NoDecode] = []
    """Origins (``https://app.example.com``, comma-separated) whose browser pages may call the
    API; empty (the default) sends no CORS headers, so browsers refuse cross-origin calls."""

    proxy_hops: int = Field(default=0, ge=0)
    """How many reverse proxies in front of the server to trust for ``X-Forwarded-For`` and
    ``X-Forwarded-Proto``; ``0`` ignores those headers (a client could forge them)."""

    @field_validator("public_paths", "jwt_algorithms", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # Environment variables hold "a, b"; files and the JSON hand-off hold real lists.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    # -- logs and metrics (issue 17) --------------------------------------------------------

    log_format: Literal["json", "text"] | None = None
    """``json`` (one object per line) or ``text``; default: text in the development profile,
    JSON otherwise. The servers' own lines use it too."""

    log_requests: bool = True
    """One line per request at INFO: request id, method, route, model, version, status,
    latency, rows, batch size, cache hit, client key name."""

    log_file: Path | None = None
    """Also write the log to this file, rotated by size (safe with several workers)."""

    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    """Rotate the log file before it passes this size; ``0`` never rotates."""

    log_backups: int = Field(default=5, ge=0)
    """Rotated log files kept (``file.1`` ... ``file.N``)."""

    metrics_public: bool = True
    """``GET /metrics`` answers without an API key; ``false`` puts it behind the API keys."""

    # -- batch jobs (issue 19) ---------------------------------------------------------------

    jobs_backend: Literal["embedded", "celery"] = "embedded"
    """Who runs batch jobs: ``embedded`` (threads in each server process, nothing else to
    run) or ``celery`` (``modelserve worker`` processes on any machines, through a broker)."""

    jobs_dir: Path | None = None
    """The jobs' data folder (uploads, result chunks, error lists; the SQLite store unless
    ``jobs_store_url`` is set). Default: ``$XDG_DATA_HOME/modelserve/jobs``
    (``~/.local/share/modelserve/jobs``). With Celery on several machines it must be a
    folder they all mount."""

    jobs_store_url: str | None = None
    """Where job state lives: ``sqlite:///PATH.db`` or ``postgresql://USER@HOST/DB`` (shared
    by every server and worker). Default: ``jobs.db`` in ``jobs_dir``."""

    jobs_table: str = "modelserve_jobs"
    """The store's table (created if missing)."""

    jobs_broker_url: str | None = None
    """The Celery broker: ``redis://HOST:PORT/DB`` or ``amqp://USER:PASS@HOST//`` (RabbitMQ).
    Default: ``redis_url``."""

    jobs_queue: str = "modelserve-jobs"
    """The Celery queue jobs are sent to and ``modelserve worker`` consumes."""

    jobs_chunk_rows: int = Field(default=50_000, ge=1)
    """Rows read, scored and committed at once: the memory a job needs, and the work a
    retried job may redo."""

    jobs_error_budget: float = Field(default=0.1, ge=0, le=1)
    """Largest share of a job's rows that may be rejected (listed under ``/errors``) before
    the job fails; ``0`` fails a job on its first invalid row."""

    jobs_result_ttl: float = Field(default=86_400.0, gt=0)
    """Seconds a finished job (its state, result and error files) is kept, then removed."""

    jobs_max_upload: int = Field(default=10 * 1024**3, ge=1)
    """Largest job upload in bytes (``max_content_length`` does not apply to job uploads,
    which are streamed to disk); larger get 413."""

    jobs_workers: int = Field(default=1, ge=1)
    """Embedded backend: jobs each server process runs at once. Celery: threads of each
    ``modelserve worker`` (``--concurrency``)."""

    jobs_lease_seconds: float = Field(default=30.0, gt=0)
    """How long a running job's claim lasts without a heartbeat: a job whose worker died is
    taken over (from its last committed chunk) that long after the last heartbeat."""

    jobs_max_attempts: int = Field(default=5, ge=1)
    """Times a job is started before a job whose workers keep dying fails."""

    @field_validator("jobs_table")
    @classmethod
    def _jobs_table_name(cls, value: str) -> str:
        if not value.replace("_", "a").isalnum() or not value[:1].isalpha() or len(value) > 50:
            raise ValueError("must be a plain table name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _profile_defaults(self) -> ServerSettings:
        if self.profile == "development" and "debug" not in self.model_fields_set:
            self.debug = True
        if self.rate_limit_storage is None:
            # Resolved once, where the server reads its settings; the workers get the result.
            redis_configured = "redis_url" in self.model_fields_set or self.cache_backend == "redis"
            shared = self.workers > 1 and redis_configured
            self.rate_limit_storage = self.redis_url if shared else "memory://"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_source = _FileSource(settings_cls, os.environ.get(SETTINGS_FILE_ENV))
        return (init_settings, env_settings, file_source)

    def check_safe(self) -> None:
        """Refuse settings that are unsafe for the profile, naming the variable to change.

        No secret key is needed: nothing a prediction answers is signed, and an unset key is
        replaced by a random one at start (:attr:`secret_key`).

        :raises ConfigError: in production with debug on.
        """
        if self.profile != "production":
            return
        if self.debug:
            raise ConfigError(
                "Refusing to start: debug mode is on in the production profile. "
                "Unset MODELSERVE_DEBUG (or set it to false)."
            )


#: The variable that hands a server's settings to workers that start by importing a target.
SETTINGS_JSON_ENV = "MODELSERVE_SETTINGS_JSON"

_S = TypeVar("_S", bound=BaseSettings)


def settings_to_json(settings: BaseSettings) -> str:
    """Serialise ``settings`` losslessly, secrets revealed, for :func:`settings_from_json`.

    granian's workers build their app by importing a target, so they cannot inherit the
    settings object; one JSON document carries every field type (lists and mappings too),
    where one ``str(value)`` variable per field would not. Secrets are revealed where they are
    fields of their own (``SecretStr``), which is the only way settings hold them.
    """
    data = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):  # model_dump masks secrets as "**********"
            data[name] = value.get_secret_value()
    return json.dumps(data)


def settings_from_json(text: str, cls: type[_S]) -> _S:
    """Rebuild the settings :func:`settings_to_json` wrote, as they were: no environment
    variable or settings file is read again, so the worker serves what the server checked."""
    return cls.model_validate(json.loads(text))


def load_settings(**overrides: Any) -> ServerSettings:
    """Build settings from the environment and the settings file, with ``overrides`` on top.

    ``None`` overrides are dropped so that unset CLI flags do not mask the environment.

    :raises ConfigError: naming the bad variable when a value does not validate.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ServerSettings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"MODELSERVE_{name.upper()}: {err['msg']}")
        raise ConfigError("Invalid settings: " + "; ".join(problems)) from exc
