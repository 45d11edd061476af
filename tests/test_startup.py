"""What ``modelserve serve`` prints while it starts: each warning once per server start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import pytest

from . import models
from .conftest import LiveServer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_an_unpinned_artifact_is_reported_once(
    tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """The master's preflight reports it; the workers it forks do not repeat it. (Production
    refuses an unpinned pickle unless told to trust it: the user said so here.)"""
    joblib.dump(models.iris().model, tmp_path / "model.pkl")
    server = live_server(
        [str(tmp_path / "model.pkl"), "--workers", "2", "--threads", "2", "--trust-pickles"]
        + ["--server", server_name]
    )
    output = server.stop()
    assert output.count("model.pkl is not pinned by sha256 in its manifest") == 1, output
