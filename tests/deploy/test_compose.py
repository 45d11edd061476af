"""docker-compose.yml: services, images, health checks and settings that agree with each other
and with the Dockerfile, nginx.conf and modelserve's settings (Docker does not run here)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from modelserve.settings import load_settings
from modelserve.workers import DRAIN_SECONDS

from .conftest import DEPLOY
from .conftest import ROOT
from .dockerfile import parse

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_the_services_of_a_scaled_out_deployment() -> None:
    assert set(SERVICES) == {"modelserve", "worker", "nginx", "redis", "postgres"}
    assert SERVICES["worker"]["command"][0] == "worker"  # `modelserve worker` (ENTRYPOINT)
    assert SERVICES["worker"]["image"] == SERVICES["modelserve"]["image"]
    assert SERVICES["modelserve"]["build"] == "."


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_pinned_healthchecked_and_restarted(name: str) -> None:
    service = SERVICES[name]
    image = service["image"]
    assert ":" in image and not image.endswith(":latest"), image
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", test  # exec form, no shell
    assert service["restart"] == "unless-stopped"
    for dependency, condition in service.get("depends_on", {}).items():
        assert dependency in SERVICES
        assert condition == {"condition": "service_healthy"}


def test_only_nginx_is_published_and_it_proxies_to_the_server() -> None:
    published = {name for name, s in SERVICES.items() if s.get("ports")}
    assert published == {"nginx"}
    (mapping,) = SERVICES["nginx"]["ports"]
    assert mapping.split(":")[1] == "80"
    nginx_conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert re.search(r"^\s*listen 80;", nginx_conf, re.M)
    port = parse(ROOT / "Dockerfile")[-1].env()["MODELSERVE_PORT"]
    assert f"server modelserve:{port} " in nginx_conf
    assert SERVICES["modelserve"]["expose"] == [port]
    volumes = SERVICES["nginx"]["volumes"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in volumes


def test_server_healthcheck_is_the_images() -> None:
    (check,) = parse(ROOT / "Dockerfile")[-1].all("HEALTHCHECK")
    assert SERVICES["modelserve"]["healthcheck"]["test"] == ["CMD", *(check.exec_form() or [])]


def test_settings_are_valid_and_point_at_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    env = SERVICES["modelserve"]["environment"]
    assert SERVICES["worker"]["environment"] == env  # one set of settings for both
    for key, value in env.items():
        # ${POSTGRES_PASSWORD:?...} is compose's interpolation: a value for the check.
        monkeypatch.setenv(key, re.sub(r"\$\{[^}]+\}", "secret", str(value)))
    settings = load_settings()  # raises, naming the variable, on a bad value
    assert settings.proxy_hops == 1  # exactly nginx in front
    assert settings.workers > 1 and settings.cache_backend == "redis"
    for url in (settings.redis_url, settings.rate_limit_storage, env["MODELSERVE_JOBS_BROKER_URL"]):
        assert urlsplit(str(url)).hostname == "redis"
    for url in (settings.prediction_log, env["MODELSERVE_JOBS_STORE_URL"]):
        parts = urlsplit(str(url))
        assert parts.hostname == "postgres" and parts.password is None  # it is PGPASSWORD
        postgres = SERVICES["postgres"]["environment"]
        assert parts.username == postgres["POSTGRES_USER"]
        assert parts.path == "/" + postgres["POSTGRES_DB"]
    assert env["PGPASSWORD"] == SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]
    # The keys file is the compose secret, mounted where the setting says.
    assert "modelserve_keys" in SERVICES["modelserve"]["secrets"]
    assert str(settings.keys_file) == "/run/secrets/modelserve_keys"
    assert "modelserve_keys" in COMPOSE["secrets"]
    # Server and worker share the jobs folder.
    jobs_mount = f"jobs:{env['MODELSERVE_JOBS_DIR']}"
    assert jobs_mount in SERVICES["modelserve"]["volumes"]
    assert jobs_mount in SERVICES["worker"]["volumes"]
    # A stop waits for the drain and the graceful timeout.
    grace = _seconds(SERVICES["modelserve"]["stop_grace_period"])
    assert grace > settings.graceful_timeout + DRAIN_SECONDS
