"""Every MODELSERVE_* name the deployment files use is a setting modelserve reads."""

from __future__ import annotations

import re
from pathlib import Path

from modelserve.settings import SETTINGS_FILE_ENV
from modelserve.settings import SETTINGS_JSON_ENV
from modelserve.settings import ServerSettings

from .conftest import DEPLOY
from .conftest import ROOT

_NAME = re.compile(r"\bMODELSERVE_[A-Z0-9_]*[A-Z0-9]\b")


def setting_names() -> set[str]:
    """The variables modelserve reads: one per ServerSettings field, and the two files."""
    names = {f"MODELSERVE_{name.upper()}" for name in ServerSettings.model_fields}
    return names | {SETTINGS_FILE_ENV, SETTINGS_JSON_ENV}


def deployment_files() -> list[Path]:
    files = [ROOT / "Dockerfile", ROOT / ".dockerignore", ROOT / "docker-compose.yml"]
    files += sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def readme_deploying_section() -> str:
    """README's "Deploying" and "Scaling out" sections (up to the next level-2 heading)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    parts = re.findall(r"^## (?:Deploying|Scaling out).*?(?=^## )", text, re.S | re.M)
    assert len(parts) == 2, "README lost its Deploying or Scaling out section"
    return "".join(parts)


def test_deployment_files_name_only_real_settings() -> None:
    known = setting_names()
    unknown = {}
    for path in deployment_files():
        names = set(_NAME.findall(path.read_text(encoding="utf-8"))) - known
        if names:
            unknown[str(path.relative_to(ROOT))] = sorted(names)
    names = set(_NAME.findall(readme_deploying_section())) - known
    if names:
        unknown["README.md (Deploying, Scaling out)"] = sorted(names)
    assert unknown == {}


def test_the_check_sees_the_names() -> None:
    # What the scan finds is what the files hold: the compose file sets a dozen settings.
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    found = set(_NAME.findall(compose))
    assert {"MODELSERVE_PROXY_HOPS", "MODELSERVE_PREDICTION_LOG"} <= found
    assert "MODELSERVE_PROXY_HOP" not in setting_names()  # a misspelling would be caught
