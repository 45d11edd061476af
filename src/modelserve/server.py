"""Run the app under a production WSGI server (gunicorn) or Flask's development server.

Workers build their own app (``create_app``) after the fork: model libraries with native
thread pools (onnxruntime, torch, OpenMP) must not be initialised in a parent that forks.
The master first verifies manifests and hashes, so a bad artifact stops the start with a
clear message instead of a crash loop of workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from .errors import ModelServeError
from .repository import ModelRepository
from .settings import ServerSettings

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

logger = logging.getLogger(__name__)

#: gunicorn's exit status for "worker failed to boot": the master stops instead of respawning.
_WORKER_BOOT_ERROR = 3


def preflight(settings: ServerSettings) -> list[str]:
    """Check settings, manifests and hashes; return the problems (empty when all is well)."""
    settings.check_safe()
    versions = ModelRepository(settings).check()
    problems = [f"{v.name} v{v.version}: {v.error}" for v in versions if v.error]
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


def watch_repository(app: Flask, settings: ServerSettings, in_worker: bool) -> None:
    """Start hot reload in this process: polling, SIGHUP, and (under gunicorn) telling the
    master to fan a change made through the load/unload API out to the other workers."""
    from .api._handlers import EXTENSION_KEY
    from .api._handlers import Handlers
    from .reload import Reloader

    handlers: Handlers = app.extensions[EXTENSION_KEY]
    reloader = Reloader(handlers.service.reload, settings.poll_interval)
    if threading.current_thread() is threading.main_thread():
        reloader.install_sighup()  # only the main thread may install signal handlers
    reloader.start()
    app.extensions["modelserve.reloader"] = reloader
    if in_worker:
        master = os.getppid()
        handlers.admin.on_change(lambda: os.kill(master, signal.SIGHUP))


def run_gunicorn(settings: ServerSettings) -> None:
    """Serve with gunicorn in this process (blocks until it stops).

    SIGHUP to the master does not restart the workers (gunicorn's default): it is forwarded to
    every worker, and each rescans the model repository and hot-reloads what changed.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    settings, state_dir = _with_state_file(settings)

    class _Arbiter(Arbiter):  # type: ignore[misc]
        def handle_hup(self) -> None:
            self.log.info("SIGHUP: every worker rescans the model repository")
            for pid in list(self.WORKERS):
                self.kill_worker(pid, signal.SIGHUP)

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # gunicorn resets SIGHUP to "terminate" in a new worker; a SIGHUP fanned out while
            # this worker loads its models must not kill it (it loads the latest state anyway).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            return worker_app(settings, in_worker=True)

        def run(self) -> None:
            try:
                _Arbiter(self).run()
            except RuntimeError as exc:
                sys.stderr.write(f"\nError: {exc}\n\n")
                sys.exit(1)

    try:
        _Application().run()
    finally:
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)


def _with_state_file(settings: ServerSettings) -> tuple[ServerSettings, str | None]:
    """Give the workers of one server a shared state file (models unloaded through the API),
    so one worker's unload holds in all of them and in workers started later."""
    if settings.state_file is not None:
        return settings, None
    state_dir = tempfile.mkdtemp(prefix="modelserve-")
    return settings.model_copy(
        update={"state_file": Path(state_dir) / "repository.json"}
    ), state_dir


def granian_app() -> Any:
    """Granian's app factory: each worker rebuilds settings from the environment.

    Hot reload runs in every worker by polling; a load/unload through the API reaches the
    other workers at their next poll (through the shared state file). SIGHUP to granian's
    main process is granian's own: it restarts the workers, which load the latest state.
    """
    from .settings import load_settings

    return worker_app(load_settings(), in_worker=False)


def worker_app(settings: ServerSettings, in_worker: bool) -> Flask:
    """Build a server worker's app and start its hot reload; a worker that cannot load
    exits with the status that makes the master stop, after one clean line in the log."""
    from .app import create_app

    try:
        app = create_app(settings)
    except ModelServeError as exc:
        sys.stderr.write(f"modelserve: {exc.message}\n")
        sys.exit(_WORKER_BOOT_ERROR)
    watch_repository(app, settings, in_worker=in_worker)
    return app


def run_granian(settings: ServerSettings) -> None:
    """Serve with granian's WSGI interface (blocks until it stops).

    WSGI calls run on granian's blocking threads (``threads`` of them per worker); the HTTP
    parsing and I/O happen in Rust, off the GIL.
    """

    from granian import Granian
    from granian.constants import Interfaces

    from .settings import settings_env

    settings, state_dir = _with_state_file(settings)
    os.environ.update(settings_env(settings))
    server = Granian(
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
    )
    try:
        server.serve()
    finally:
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)


def run_development(settings: ServerSettings) -> None:
    """Flask's development server with the reloader: local use only, never production."""
    from .app import create_app

    app = create_app(settings)
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":  # the reloader's child serves
        watch_repository(app, settings, in_worker=False)
    app.run(host=settings.host, port=settings.port, debug=settings.debug, use_reloader=True)
