"""Thread counts: the default request threads per worker start granian without a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve.server import _ThreadCountNotice
from modelserve.settings import ServerSettings

from . import models
from .conftest import LiveServer


def test_only_granians_thread_count_notice_is_dropped() -> None:
    notice = _ThreadCountNotice()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("_granian", logging.WARNING, __file__, 1, message, None, None)

    assert not notice.filter(
        record(
            "Configuration allows spawning up to 32 Python threads, which seems quite high "
            "compared to the number of CPU cores available."
        )
    )
    assert notice.filter(record("Unexpected exit from worker-1"))


@pytest.mark.e2e
def test_granian_does_not_warn_about_the_default_thread_count(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    """The default (32, more than 2 x CPUs + 1 on this machine) through the real command."""
    models.write_model(tmp_path / "models", "iris", models.iris())
    server = live_server([str(tmp_path / "models")])
    output = server.stop()
    threads = ServerSettings().threads
    assert f"1 worker(s) x {threads} thread(s), granian" in output
    assert "Python threads" not in output and "quite high" not in output
