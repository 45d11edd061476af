"""One settings object, read from ``MODELSERVE_*`` environment variables and an optional file.

Precedence, highest first: values passed to the constructor (the CLI's flags), environment
variables, the settings file named by ``MODELSERVE_SETTINGS_FILE`` (TOML or YAML), defaults.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any
from typing import Literal
from typing import TypeVar

import yaml
from pydantic import Field
from pydantic import SecretStr
from pydantic import ValidationError
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import PydanticBaseSettingsSource
from pydantic_settings import SettingsConfigDict

from .errors import ConfigError

Profile = Literal["development", "production", "testing"]

#: The secret key every non-production profile gets; production refuses to run with it.
DEFAULT_SECRET_KEY = "modelserve-insecure-development-key"
SETTINGS_FILE_ENV = "MODELSERVE_SETTINGS_FILE"


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

    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    """Flask's secret key (signs sessions, later tokens). Production requires your own."""

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
    """Server processes. Each loads its own copy of every model."""

    threads: int = Field(default=32, ge=1)
    """Threads per worker process. Requests waiting on a shared (batched) model call hold a
    thread each, so more threads mean larger batches under load, not more CPU."""

    timeout: int = Field(default=30, ge=1)
    """Seconds a worker may spend on one request before it is restarted."""

    graceful_timeout: int = Field(default=30, ge=1)
    """Seconds a stopping server (SIGTERM) gives the requests it accepted to finish; workers
    still running then are killed. Readiness answers 503 from the signal on."""

    model_threads: int | None = Field(default=None, ge=1)
    """Threads one model call may use (BLAS, OpenMP, onnxruntime, torch). Default: the CPUs
    divided by ``workers``, so the workers together never oversubscribe the cores."""

    max_batch_size: int = Field(default=64, ge=1)
    """Adaptive batching: most rows merged into one model call; ``1`` turns batching off."""

    batch_min_cost_ms: float = Field(default=0.5, ge=0)
    """Batch a model only when one warm single-row call costs at least this much: sharing a
    call saves its fixed cost but hands the request to another thread (~0.1-0.2 ms), which
    a compiled model answering in microseconds never earns back. ``0`` batches every model.
    A manifest's ``batching:`` section always wins."""

    max_latency_ms: float = Field(default=5.0, ge=0)
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

    @model_validator(mode="after")
    def _profile_defaults(self) -> ServerSettings:
        if self.profile == "development" and "debug" not in self.model_fields_set:
            self.debug = True
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

        :raises ConfigError: in production with debug on or with the default secret key.
        """
        if self.profile != "production":
            return
        if self.debug:
            raise ConfigError(
                "Refusing to start: debug mode is on in the production profile. "
                "Unset MODELSERVE_DEBUG (or set it to false)."
            )
        if self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
            raise ConfigError(
                "Refusing to start: the production profile needs its own secret key. "
                "Set MODELSERVE_SECRET_KEY, e.g. "
                "`export MODELSERVE_SECRET_KEY=$(python -c "
                "'import secrets; print(secrets.token_hex(32))')`, "
                "or run with --dev / MODELSERVE_PROFILE=development for local use."
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
