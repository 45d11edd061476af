"""Logging set-up: one place that decides where modelserve's log lines go and how they look.

Production writes one JSON object per line; development writes readable text (by profile,
``MODELSERVE_LOG_FORMAT`` overrides). The same formatter and handlers serve modelserve's own
loggers and the servers' (granian's through :func:`granian_log_config`, gunicorn's through
:func:`apply_handlers`), so every line of a server has one shape. A line logged while a
request is served carries its request id; structured fields travel in ``extra={"fields":
{...}}``.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import time
from typing import Any
from typing import Literal

import orjson

from . import telemetry
from .settings import ServerSettings

LogFormat = Literal["json", "text"]

#: The logger of the one line per request (``modelserve.api.observe`` writes it).
REQUEST_LOGGER = "modelserve.request"

#: The handlers :func:`apply_handlers` installed, per logger, so a second call replaces them.
_installed: dict[str, list[logging.Handler]] = {}


def log_format(settings: ServerSettings) -> LogFormat:
    """The format in effect: the setting, else text in development and JSON otherwise."""
    if settings.log_format is not None:
        return settings.log_format
    return "text" if settings.profile == "development" else "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``pid``, ``message``, the
    request id of the request being served, the record's ``fields``, and ``traceback``."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        # strftime is most of a line's cost; one call per second is enough.
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        current = telemetry.current()
        if current is not None:
            data["request_id"] = current.request_id
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        current = telemetry.current()
        if current is not None:
            fields.setdefault("request_id", current.request_id)
        extras = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return f"{line} {extras}" if extras else line


def create_formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log file that several worker processes write at once.

    Each process has its own handler on the same path. The rotation is decided on the size of
    the file on disk, under an exclusive lock on ``<file>.lock``; a handler whose file another
    process rotated away reopens the path before it writes. (The stdlib handler decides on its
    own stream's size, so with several workers each one rotates the others' lines away.)

    :param filename: the log file.
    :param max_bytes: rotate before the file would pass this size; ``0`` never rotates.
    :param backups: rotated files kept (``file.1`` ... ``file.N``).
    """

    def __init__(self, filename: str, max_bytes: int, backups: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._lock_fd = -1
        self._lock_pid = -1

    def _lock(self) -> int:
        # One lock descriptor per process: a descriptor inherited through a fork is the same
        # open file, and flock does not keep a parent and its children apart on it.
        if self._lock_pid != os.getpid():
            self._lock_fd = os.open(self.baseFilename + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
            self._lock_pid = os.getpid()
        return self._lock_fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            fcntl.flock(self._lock(), fcntl.LOCK_EX)
            try:
                size = self._size_following_rotation()
                # size > 0: a line longer than max_bytes must not rotate an empty file.
                if self.maxBytes > 0 and size > 0 and size + len(text) > self.maxBytes:
                    self.doRollover()
                stream = self.stream or self._open()
                self.stream = stream
                stream.write(text)
                stream.flush()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)

    def _size_following_rotation(self) -> int:
        """The size of the file at the path, reopened first when another process rotated
        the one this handler holds."""
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        stream = self.stream or self._open()
        held = os.fstat(stream.fileno())
        if on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (held.st_ino, held.st_dev):
            stream.close()
            stream = self._open()
            held = os.fstat(stream.fileno())
        self.stream = stream
        return held.st_size

    def close(self) -> None:
        super().close()
        if self._lock_pid == os.getpid():
            os.close(self._lock_fd)
        self._lock_fd = self._lock_pid = -1


def create_console_handler(log_format: LogFormat) -> logging.Handler:
    """stderr, which both servers pass on (and containers collect)."""
    handler = logging.StreamHandler()
    handler.setFormatter(create_formatter(log_format))
    return handler


def create_file_handler(
    log_format: LogFormat, filename: str, max_bytes: int, backups: int
) -> logging.Handler:
    handler = SharedRotatingFileHandler(filename, max_bytes, backups)
    handler.setFormatter(create_formatter(log_format))
    return handler


def create_handlers(settings: ServerSettings) -> list[logging.Handler]:
    """stderr, plus the rotating file when ``log_file`` is set."""
    fmt = log_format(settings)
    handlers = [create_console_handler(fmt)]
    if settings.log_file is not None:
        handlers.append(
            create_file_handler(
                fmt, str(settings.log_file), settings.log_max_bytes, settings.log_backups
            )
        )
    return handlers


def apply_handlers(logger: logging.Logger, settings: ServerSettings) -> None:
    """Replace the handlers :func:`configure_logging` gave ``logger`` before, if any."""
    for old in _installed.pop(logger.name, []):
        logger.removeHandler(old)
        old.close()
    handlers = _installed[logger.name] = create_handlers(settings)
    for handler in handlers:
        logger.addHandler(handler)


def configure_logging(settings: ServerSettings) -> None:
    """Send modelserve's logs to stderr (and the log file) at the configured level.

    Idempotent: a second app in the same process (tests, ``validate``) replaces the handlers
    of the first instead of adding more.
    """
    logger = logging.getLogger("modelserve")
    logger.setLevel(settings.log_level)
    apply_handlers(logger, settings)
    # Request lines off: one level above INFO, so the hook's isEnabledFor check skips them.
    request_logger = logging.getLogger(REQUEST_LOGGER)
    request_logger.setLevel(logging.NOTSET if settings.log_requests else logging.WARNING)


def granian_log_config(settings: ServerSettings) -> dict[str, Any]:
    """granian's ``log_dictconfig``: its own loggers through modelserve's handlers.

    granian replaces whole sections of its default configuration with these, in the main
    process and in each worker.
    """
    fmt = log_format(settings)
    handlers: dict[str, dict[str, Any]] = {
        "modelserve_console": {
            "()": "modelserve.logging.create_console_handler",
            "log_format": fmt,
        }
    }
    if settings.log_file is not None:
        handlers["modelserve_file"] = {
            "()": "modelserve.logging.create_file_handler",
            "log_format": fmt,
            "filename": str(settings.log_file),
            "max_bytes": settings.log_max_bytes,
            "backups": settings.log_backups,
        }
    names = list(handlers)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": handlers,
        "loggers": {
            "_granian": {"handlers": names, "level": "INFO", "propagate": False},
            "granian.access": {"handlers": names, "level": "INFO", "propagate": False},
        },
    }
