"""gunicorn settings for running modelserve under your own gunicorn command.

    gunicorn -c deploy/gunicorn.conf.py
    gunicorn -c deploy/gunicorn.conf.py 'modelserve.app:create_app()'   # the same app

``modelserve serve --server gunicorn`` needs none of this: use this file when gunicorn must be
the command (a platform that runs ``gunicorn``, a process manager you already have). Every
value comes from the ``MODELSERVE_*`` variables ``modelserve serve`` reads (README,
"Settings"): the bind address, workers, threads, timeouts, keep-alive and request-line
limits are the ones :func:`modelserve.server.gunicorn_options` gives ``modelserve serve``.

What differs from ``modelserve serve``: the app is **preloaded**. The master loads every model
once, freezes the garbage collector's view of those objects (``gc.freeze()``) and then forks,
so the workers share the model memory copy-on-write instead of holding one copy each, and a
worker recycled after ``max_requests`` starts in milliseconds (nothing to load). Each worker
then starts what must not be shared across a fork — its hot-reload thread, its place in the
worker group, the start hooks of :mod:`modelserve.workers` — in ``post_worker_init``.
Batcher and prediction-log threads start on first use, so they run in the worker.

Worker recycling (not a modelserve setting): ``MODELSERVE_MAX_REQUESTS`` (0 = never) and
``MODELSERVE_MAX_REQUESTS_JITTER``, read here only.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from modelserve import multiproc
from modelserve import workers as worker_hooks
from modelserve.errors import ModelServeError
from modelserve.server import _gunicorn_worker_class
from modelserve.server import gunicorn_options
from modelserve.server import preflight
from modelserve.server import watch_repository
from modelserve.settings import load_settings


def _generation(state_file: Path | None) -> int:
    if state_file is None:
        return 0
    from modelserve.peers import WorkerGroup

    group = WorkerGroup(state_file.parent)
    try:
        return group.generation()
    finally:
        group.leave()


# -- settings: checked once, in the master, before anything is loaded ---------------------

# Metrics of all workers in one multiprocess folder: must be exported before the preloaded
# app imports prometheus_client (modelserve.multiproc).
_metrics_dir, _own_metrics_dir = multiproc.prepare()

# One state file for the workers of this server, so a model unloaded through the API in one
# worker is unloaded in all of them (and in workers started later). The preloaded app reads
# it from the environment, like everything else.
_state_dir: str | None = None
if not os.environ.get("MODELSERVE_STATE_FILE"):
    _state_dir = tempfile.mkdtemp(prefix="modelserve-")
    os.environ["MODELSERVE_STATE_FILE"] = str(Path(_state_dir) / "repository.json")

try:
    _settings = load_settings()
    # The generation of admin changes the preloaded models will reflect (at least): each
    # worker acknowledges it on joining, and its reloader applies anything newer.
    _loaded_generation = _generation(_settings.state_file)
    _problems = preflight(_settings)
except ModelServeError as exc:
    sys.exit(f"modelserve: {exc.message}")
if _problems:
    sys.exit("modelserve: no model can be served:\n  " + "\n  ".join(_problems))

# -- gunicorn settings --------------------------------------------------------------------

wsgi_app = "modelserve.app:create_app()"
preload_app = True

_options: dict[str, Any] = gunicorn_options(_settings)
bind = [_options["bind"]]
workers = _options["workers"]
threads = _options["threads"]
# SIGTERM drains first (readiness 503 while queued connections are still answered), then
# runs gunicorn's graceful stop: the worker ``modelserve serve --server gunicorn`` uses.
worker_class = _gunicorn_worker_class(_settings.threads)
timeout = _options["timeout"]
graceful_timeout = _options["graceful_timeout"]
keepalive = _options["keepalive"]
loglevel = _options["loglevel"]
errorlog = _options["errorlog"]
accesslog = _options.get("accesslog")
logger_class = _options["logger_class"]
proc_name = _options["proc_name"]
limit_request_line = _options["limit_request_line"]
limit_request_fields = _options["limit_request_fields"]
limit_request_field_size = _options["limit_request_field_size"]
max_requests = int(os.environ.get("MODELSERVE_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("MODELSERVE_MAX_REQUESTS_JITTER", "0"))
# gunicorn >= 25 opens a control socket at one fixed path per user: two servers on a host
# would take each other's. modelserve needs none.
control_socket_disable = True
# gunicorn's own X-Forwarded-* handling is for its access log only; the app trusts
# MODELSERVE_PROXY_HOPS proxies itself (werkzeug's ProxyFix), so nothing is trusted here.
forwarded_allow_ips = ""


# -- hooks ----------------------------------------------------------------------------------


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before each fork: move every object that exists now (the models) to
    the garbage collector's permanent generation. Collections in the workers then never
    write to those pages (refcounts aside), so they stay shared copy-on-write."""
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    """In each worker, once forked: join the worker group, start hot reload, run the hooks."""
    from modelserve.peers import WorkerGroup

    state_file = _settings.state_file
    group = WorkerGroup(state_file.parent) if state_file is not None else None
    if group is not None:
        group.acknowledge(_loaded_generation)
    watch_repository(worker.wsgi, _settings, group, _loaded_generation)
    worker_hooks.run_worker_start()


def worker_exit(server: Any, worker: Any) -> None:
    """In a worker whose loop ended (graceful stop, recycling): the stop hooks, newest first,
    then leave at once with gunicorn's exit status.

    Leaving through ``os._exit`` is what makes preloading safe to stop: the inherited
    onnxruntime sessions own thread pools whose threads exist only in the master, and
    destroying them at interpreter exit in a forked worker hangs or aborts (``std::terminate``).
    ``multiprocessing`` ends its forked children the same way.
    """
    worker_hooks.run_worker_stop()
    # Runs in spawn_worker's ``finally``: the SystemExit carrying the status is in flight.
    leaving = sys.exc_info()[1]
    if isinstance(leaving, SystemExit):
        status = leaving.code if isinstance(leaving.code, int) else 1
    else:
        status = 0 if leaving is None else 1
    logging.shutdown()  # flush the log handlers os._exit would skip
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, when a worker has exited: fold its metric files into the archive."""
    if os.path.isdir(_metrics_dir):
        with multiproc.locked(_metrics_dir):
            multiproc.compact(_metrics_dir)


def on_exit(server: Any) -> None:
    """In the master, at the very end: remove the folders made here."""
    _cleanup()


def _cleanup() -> None:
    if _state_dir is not None:
        shutil.rmtree(_state_dir, ignore_errors=True)
    if _own_metrics_dir:
        multiproc.remove(_metrics_dir)


# A master that fails to load the app exits without on_exit: clean up then too (only in the
# master: workers leave through os._exit and never run this).
atexit.register(_cleanup)
