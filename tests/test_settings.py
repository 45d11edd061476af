"""Settings from env vars and files; production refuses unsafe values and names the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelserve.errors import ConfigError
from modelserve.settings import DEFAULT_SECRET_KEY
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


def test_production_refuses_default_secret() -> None:
    s = ServerSettings(profile="production")
    assert s.secret_key.get_secret_value() == DEFAULT_SECRET_KEY
    with pytest.raises(ConfigError, match="MODELSERVE_SECRET_KEY"):
        s.check_safe()
    ServerSettings(profile="production", secret_key="x" * 32).check_safe()


def test_production_refuses_debug() -> None:
    with pytest.raises(ConfigError, match="MODELSERVE_DEBUG"):
        ServerSettings(profile="production", debug=True, secret_key="s" * 32).check_safe()


def test_create_app_refuses_unsafe_production(repo: Path) -> None:
    from modelserve.app import create_app

    with pytest.raises(ConfigError, match="MODELSERVE_SECRET_KEY"):
        create_app(ServerSettings(model_path=repo))


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
