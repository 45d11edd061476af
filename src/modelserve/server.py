"""Run the app under a production WSGI server (gunicorn) or Flask's development server.

Workers build their own app (``create_app``) after the fork: model libraries with native
thread pools (onnxruntime, torch, OpenMP) must not be initialised in a parent that forks.
The master first verifies manifests and hashes, so a bad artifact stops the start with a
clear message instead of a crash loop of workers.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from .errors import ModelServeError
from .repository import ModelRepository
from .settings import ServerSettings

logger = logging.getLogger(__name__)

#: gunicorn's exit status for "worker failed to boot": the master stops instead of respawning.
_WORKER_BOOT_ERROR = 3


def preflight(settings: ServerSettings) -> list[str]:
    """Check settings, manifests and hashes; return the problems (empty when all is well)."""
    settings.check_safe()
    versions = ModelRepository(settings).check()
    problems = [f"{mv.name} v{mv.version}: {mv.error}" for mv in versions if mv.error]
    if problems and len(problems) == len(versions):
        return problems
    for problem in problems:
        logger.warning("will not serve %s", problem)
    return []


def gunicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """The gunicorn settings modelserve uses; threads > 1 selects the gthread worker."""
    options: dict[str, Any] = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread" if settings.threads > 1 else "sync",
        "timeout": settings.timeout,
        "graceful_timeout": settings.timeout,
        "keepalive": settings.keepalive,
        "loglevel": settings.log_level.lower(),
        "errorlog": "-",
        "proc_name": "modelserve",
    }
    if settings.access_log:
        options["accesslog"] = "-"
    return options


def run_gunicorn(settings: ServerSettings) -> None:
    """Serve with gunicorn in this process (blocks until it stops)."""
    from gunicorn.app.base import BaseApplication

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from .app import create_app

            try:
                return create_app(settings)
            except ModelServeError as exc:
                # A clean line in the log, then the status that makes the master stop.
                sys.stderr.write(f"modelserve: {exc.message}\n")
                sys.exit(_WORKER_BOOT_ERROR)

    _Application().run()


def granian_app() -> Any:
    """Granian's app factory: each worker rebuilds settings from the environment."""
    from .app import create_app
    from .settings import load_settings

    try:
        return create_app(load_settings())
    except ModelServeError as exc:
        sys.stderr.write(f"modelserve: {exc.message}\n")
        sys.exit(_WORKER_BOOT_ERROR)


def run_granian(settings: ServerSettings) -> None:
    """Serve with granian's WSGI interface (blocks until it stops).

    WSGI calls run on granian's blocking threads (``threads`` of them per worker); the HTTP
    parsing and I/O happen in Rust, off the GIL.
    """
    import os

    from granian import Granian
    from granian.constants import Interfaces

    from .settings import settings_env

    os.environ.update(settings_env(settings))
    Granian(
        "modelserve.server:granian_app",
        factory=True,
        interface=Interfaces.WSGI,
        websockets=False,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        blocking_threads=settings.threads,
        backpressure=max(settings.threads, settings.max_queue),
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        log_access=settings.access_log,
    ).serve()


def run_development(settings: ServerSettings) -> None:
    """Flask's development server with the reloader: local use only, never production."""
    from .app import create_app

    app = create_app(settings)
    app.run(host=settings.host, port=settings.port, debug=settings.debug, use_reloader=True)
