"""Logging set-up: one place that decides where modelserve's log lines go and how they look."""

from __future__ import annotations

import logging

from .settings import ServerSettings


def configure_logging(settings: ServerSettings) -> None:
    """Send modelserve's logs to stderr at the configured level (the servers capture stderr).

    Idempotent: a second app in the same process (tests, ``validate``) adds no second handler.
    """
    logger = logging.getLogger("modelserve")
    logger.setLevel(settings.log_level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
