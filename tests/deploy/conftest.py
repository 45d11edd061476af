"""Fixtures for the deployment files' tests: the files themselves and a small demo repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: The deployment files under test (deploy/ and the container files at the repository root).
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture
def small_repo(demo_repo: Path, tmp_path: Path) -> Path:
    """iris (scikit-learn, compiled at load) and digits-onnx (images): the demo models that
    load in milliseconds, copied so a test may change them."""
    root = tmp_path / "models"
    for name in ("iris", "digits-onnx"):
        shutil.copytree(demo_repo / name, root / name)
    return root
