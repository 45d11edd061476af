"""Settings from env vars and files; production refuses unsafe values and names the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelserve.errors import ConfigError
from modelserve.settings import ServerSettings
from modelserve.settings import load_settings


def test_defaults_are_production() -> None:
    s = load_settings()
    assert s.profile == "production" and s.debug is False
    assert s.max_content_length == 16 * 1024 * 1024


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELSERVE_PORT", "9001")
    monkeypatch.setenv("MODELSERVE_MODEL_PATH", str(tmp_path))
    monkeypatch.setenv("MODELSERVE_ALLOW_EXTRA_FIELDS", "true")
    s = load_settings()
    assert s.port == 9001 and s.model_path == tmp_path and s.allow_extra_fields is True


def test_overrides_beat_env_and_none_does_not_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_PORT", "9001")
    assert load_settings(port=9002).port == 9002
    assert load_settings(port=None).port == 9001


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_WORKERS", "many")
    with pytest.raises(ConfigError, match="MODELSERVE_WORKERS"):
        load_settings()


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_settings_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"modelserve{suffix}"
    path.write_text(
        "port = 7000\nthreads = 2\n" if suffix == ".toml" else "port: 7000\nthreads: 2\n"
    )
    monkeypatch.setenv("MODELSERVE_SETTINGS_FILE", str(path))
    monkeypatch.setenv("MODELSERVE_THREADS", "3")  # env beats the file
    s = load_settings()
    assert (s.port, s.threads) == (7000, 3)


def test_settings_file_rejects_unknown_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[modelserve]\nprot = 1\n")
    monkeypatch.setenv("MODELSERVE_SETTINGS_FILE", str(path))
    with pytest.raises(ConfigError, match="unknown settings: prot"):
        load_settings()


def test_development_turns_debug_on() -> None:
    assert ServerSettings(profile="development").debug is True
    assert ServerSettings(profile="development", debug=False).debug is False


def test_production_needs_no_secret_key() -> None:
    """Nothing a prediction answers is signed: the README's first command must start."""
    s = ServerSettings(profile="production")
    assert s.secret_key is None
    s.check_safe()
    ServerSettings(profile="production", secret_key="x" * 32).check_safe()  # type: ignore[arg-type]


def test_security_lists_read_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELSERVE_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("MODELSERVE_PUBLIC_PATHS", "/health")
    monkeypatch.setenv("MODELSERVE_JWT_ALGORITHMS", "RS256,ES256")
    s = load_settings()
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.public_paths == ["/health"]
    assert s.jwt_algorithms == ["RS256", "ES256"]
    assert load_settings(cors_origins=["https://c.example"]).cors_origins == ["https://c.example"]


def test_security_defaults() -> None:
    s = load_settings()
    assert s.api_key is None and s.keys_file is None and s.jwt_secret is None
    assert s.public_paths == [
        "/health",
        "/v2/health/*",
        "/metrics",
        "/static/*",
        "/openapi.json",
        "/docs",
        "/docs/static/*",
    ]
    assert s.cors_origins == [] and s.proxy_hops == 0


def test_production_refuses_debug() -> None:
    with pytest.raises(ConfigError, match="MODELSERVE_DEBUG"):
        ServerSettings(profile="production", debug=True, secret_key="s" * 32).check_safe()


def test_create_app_refuses_unsafe_production(repo: Path) -> None:
    from modelserve.app import create_app

    with pytest.raises(ConfigError, match="MODELSERVE_DEBUG"):
        create_app(ServerSettings(model_path=repo, debug=True))


def test_create_app_without_a_secret_key_makes_a_random_one(repo: Path) -> None:
    from modelserve.app import create_app

    first = create_app(ServerSettings(model_path=repo)).config["SECRET_KEY"]
    second = create_app(ServerSettings(model_path=repo)).config["SECRET_KEY"]
    assert len(first) >= 32 and first != second


def test_model_threads_share_the_cpus_between_workers(repo: Path) -> None:
    from threadpoolctl import threadpool_info

    from modelserve import threads
    from modelserve.app import create_app

    cpus = len(os.sched_getaffinity(0))
    assert threads.default_model_threads(1) == cpus
    assert threads.default_model_threads(cpus * 4) == 1
    create_app(ServerSettings(profile="testing", model_path=repo, model_threads=1))
    assert threads.model_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())


def test_settings_json_round_trip_keeps_every_field_type(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What granian's workers rebuild is what the server checked: Path, SecretStr, Literal,
    float, int, bool and None survive, and no environment variable is read again."""
    from modelserve.settings import settings_from_json
    from modelserve.settings import settings_to_json

    original = ServerSettings(
        profile="testing",
        secret_key="s3cret with spaces",  # type: ignore[arg-type]
        model_path=tmp_path / "models",
        preprocessor=None,
        server="gunicorn",
        poll_interval=0.25,
        max_latency_ms=2.5,
        graceful_timeout=7,
        access_log=True,
        log_level="DEBUG",
    )
    monkeypatch.setenv("MODELSERVE_PORT", "9999")  # must not leak into the rebuilt copy
    rebuilt = settings_from_json(settings_to_json(original), ServerSettings)
    assert rebuilt == original
    assert rebuilt.secret_key is not None
    assert rebuilt.secret_key.get_secret_value() == "s3cret with spaces"
    assert isinstance(rebuilt.model_path, Path) and rebuilt.preprocessor is None
    assert rebuilt.port == 8000 and rebuilt.debug is False


def test_settings_json_round_trip_keeps_lists_and_mappings() -> None:
    """No setting holds a list or a mapping yet; the hand-off must not break when one does
    (one ``str(value)`` variable per field would)."""
    from pydantic import Field

    from modelserve.settings import settings_from_json
    from modelserve.settings import settings_to_json

    class WithContainers(ServerSettings):
        origins: list[str] = Field(default_factory=list)
        weights: dict[str, float] = Field(default_factory=dict)

    original = WithContainers(
        profile="testing",
        origins=["https://a.example", "b, with comma"],
        weights={"x": 0.5, "y": 2.0},
        secret_key="k",  # type: ignore[arg-type]
    )
    rebuilt = settings_from_json(settings_to_json(original), WithContainers)
    assert rebuilt.origins == ["https://a.example", "b, with comma"]
    assert rebuilt.weights == {"x": 0.5, "y": 2.0}
    assert rebuilt.secret_key is not None
    assert rebuilt.secret_key.get_secret_value() == "k"
    assert rebuilt == original


def test_graceful_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().graceful_timeout == 30
    monkeypatch.setenv("MODELSERVE_GRACEFUL_TIMEOUT", "5")
    assert load_settings().graceful_timeout == 5
    monkeypatch.setenv("MODELSERVE_GRACEFUL_TIMEOUT", "0")
    with pytest.raises(ConfigError, match="MODELSERVE_GRACEFUL_TIMEOUT"):
        load_settings()
