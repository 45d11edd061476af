"""gunicorn settings for running modelserve under your own gunicorn command.

    gunicorn -c deploy/gunicorn.conf.py
    gunicorn -c deploy/gunicorn.conf.py 'modelserve.app:create_app()'   # the same app

``modelserve serve --server gunicorn`` needs none of this; use this file when gunicorn itself
must be the command (a platform or process manager that runs ``gunicorn``). It runs modelserve
the way ``modelserve serve --server gunicorn`` does, and every value comes from the same
``MODELSERVE_*`` variables (README, "Settings"): bind address, workers, threads, timeouts,
``graceful_timeout``, worker recycling (``max_requests`` + jitter, ``max_worker_rss_mb``),
keep-alive and request-line limits are those of :func:`modelserve.server.gunicorn_options`.

The process model (:mod:`modelserve.workers`, :mod:`modelserve.preload`): the master loads
the fork-safe models (``MODELSERVE_PRELOAD``, scikit-learn pickles) and freezes the garbage
collector's view of them (``gc.freeze()``) before it forks, so the workers share that memory
copy-on-write and a recycled worker starts without reading the files again. Each worker then
builds its app after the fork (runtimes with native thread pools, ONNX and torch, load there:
their threads would not survive a fork), joins its server's worker group, starts hot reload
and runs the worker start hooks; its stop hooks run when it exits.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from modelserve import multiproc
from modelserve import workers as worker_hooks
from modelserve.errors import ModelServeError
from modelserve.logging import configure_logging
from modelserve.peers import WorkerGroup
from modelserve.server import _gunicorn_worker_class
from modelserve.server import _recycle_over_rss
from modelserve.server import gunicorn_options
from modelserve.server import preflight
from modelserve.server import preload_models
from modelserve.server import watch_repository
from modelserve.settings import load_settings

# -- in the master, once: what the workers share, then the settings check -------------------

# Every worker's metrics in one multiprocess folder: exported before anything imports
# prometheus_client (modelserve.multiproc).
_metrics_dir, _own_metrics_dir = multiproc.prepare()

# One state folder for this server's workers (a model unloaded through the API is unloaded
# in all of them) and one secret key. The workers build their app from the environment, so
# both are handed over as variables, as the settings are.
_state_dir: str | None = None
if not os.environ.get("MODELSERVE_STATE_FILE"):
    _state_dir = tempfile.mkdtemp(prefix="modelserve-")
    os.environ["MODELSERVE_STATE_FILE"] = str(Path(_state_dir) / "repository.json")
if not os.environ.get("MODELSERVE_SECRET_KEY"):
    os.environ["MODELSERVE_SECRET_KEY"] = secrets.token_urlsafe(32)

_master = os.getpid()

try:
    _settings = load_settings()
    configure_logging(_settings)  # the master's own lines, in modelserve's format
    _problems = preflight(_settings)
except ModelServeError as exc:
    sys.exit(f"modelserve: {exc.message}")
if _problems:
    sys.exit("modelserve: no model can be served:\n  " + "\n  ".join(_problems))

# The fork-safe models, loaded here and frozen (gc.freeze) so the workers share them.
preload_models(_settings)

# -- gunicorn settings ------------------------------------------------------------------------

wsgi_app = "modelserve.app:create_app()"
# The app itself is built in each worker (create_app reads the same environment); only the
# fork-safe models above are shared.
preload_app = False

_options: dict[str, Any] = gunicorn_options(_settings)
bind = [_options["bind"]]
workers = _options["workers"]
threads = _options["threads"]
# SIGTERM drains first (readiness 503 while connections already queued are still served),
# then gunicorn's graceful stop: the worker ``modelserve serve --server gunicorn`` uses.
worker_class = _gunicorn_worker_class(_settings.threads)
timeout = _options["timeout"]
graceful_timeout = _options["graceful_timeout"]
max_requests = _options["max_requests"]
max_requests_jitter = _options["max_requests_jitter"]
keepalive = _options["keepalive"]
loglevel = _options["loglevel"]
errorlog = _options["errorlog"]
accesslog = _options.get("accesslog")
logger_class = _options["logger_class"]
proc_name = _options["proc_name"]
limit_request_line = _options["limit_request_line"]
limit_request_fields = _options["limit_request_fields"]
limit_request_field_size = _options["limit_request_field_size"]
# gunicorn >= 25 opens a control socket at one fixed path per user: two servers on one host
# would take each other's. modelserve needs none (older gunicorns ignore the name).
control_socket_disable = True
# gunicorn's own X-Forwarded-* handling: nothing trusted. The app trusts
# MODELSERVE_PROXY_HOPS proxies itself (werkzeug's ProxyFix).
forwarded_allow_ips = ""

#: A worker whose RSS stays over MODELSERVE_MAX_WORKER_RSS_MB finishes and is replaced.
post_request = _recycle_over_rss(_settings)

# -- hooks ----------------------------------------------------------------------------------

#: This worker's membership of the server's worker group, and the admin changes the models
#: it loads are sure to include (set in the worker, after the fork).
_group: WorkerGroup | None = None
_seen = 0


def post_fork(server: Any, worker: Any) -> None:
    """In the worker, before its app is built: join the worker group, acknowledging only the
    changes the load about to start is sure to see; its reloader applies any later one."""
    global _group, _seen
    state_file = _settings.state_file
    if state_file is not None:
        _group = WorkerGroup(state_file.parent)
        _seen = _group.generation()
        _group.acknowledge(_seen)


def post_worker_init(worker: Any) -> None:
    """In the worker, its app built: start hot reload, then the worker start hooks."""
    watch_repository(worker.wsgi, _settings, _group, _seen)
    worker_hooks.run_worker_start()


def worker_exit(server: Any, worker: Any) -> None:
    """In a worker whose loop ended (graceful stop, recycling): the stop hooks, newest first."""
    worker_hooks.run_worker_stop()


def child_exit(server: Any, worker: Any) -> None:
    """In the master, when a worker has exited: fold its metric files into the archive."""
    if os.path.isdir(_metrics_dir):
        with multiproc.locked(_metrics_dir):
            multiproc.compact(_metrics_dir)


def on_exit(server: Any) -> None:
    """In the master, at the very end: remove the folders made here (never in a worker,
    which shares them)."""
    if os.getpid() != _master:
        return
    if _state_dir is not None:
        shutil.rmtree(_state_dir, ignore_errors=True)
    if _own_metrics_dir:
        multiproc.remove(_metrics_dir)
