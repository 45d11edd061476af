"""Run the app under a production WSGI server (granian or gunicorn) or Flask's development server.

The process model (what runs in the main process, what in each worker, which hooks each
server gives and how a graceful stop works) is described once, in :mod:`modelserve.workers`.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.util import Finalize
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from pydantic import SecretStr

from . import multiproc
from . import threads
from . import workers
from .errors import ModelServeError
from .logging import apply_handlers
from .logging import configure_logging
from .logging import granian_log_config
from .repository import ModelRepository
from .security import Authenticator
from .settings import SETTINGS_JSON_ENV
from .settings import ServerSettings
from .settings import settings_from_json
from .settings import settings_to_json

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .peers import WorkerGroup
    from .service import InferenceService

logger = logging.getLogger(__name__)

#: gunicorn's exit status for "worker failed to boot": the master stops instead of respawning.
#: The granian main process exits with it too when one of its workers failed to boot.
_WORKER_BOOT_ERROR = 3

#: Where a granian worker that failed to boot leaves its message for the main process.
_BOOT_FAILURE_ENV = "MODELSERVE_BOOT_FAILURE_FILE"

#: Seconds granian waits between starting a replacement worker and stopping the old one on a
#: SIGHUP reload: the old one keeps serving while the new one loads its models.
_RESPAWN_INTERVAL = 3.5

#: Where a granian worker past its request budget leaves its pid for the main process.
_RECYCLE_ENV = "MODELSERVE_RECYCLE_DIR"
#: Set by :func:`run_granian` when the request threads are the machine's default (no
#: ``MODELSERVE_THREADS``): a worker none of whose models is batched then runs fewer.
_SIZE_THREADS_ENV = "MODELSERVE_SIZE_THREADS"

#: Seconds between granian's looks at its workers when recycling is on: their RSS, and the
#: workers that asked to be replaced (see :func:`_granian_server_class`).
_RECYCLE_TICK = 1

#: The RSS limit (MiB) granian is given: none is ever reached; granian only runs its RSS
#: tick, on which modelserve checks its own limits, when it has one.
_NO_RSS_LIMIT_MB = 1 << 30

#: gunicorn's request-line and header limits, chosen so that what granian (hyper) accepts,
#: gunicorn accepts too, and the app answers with its JSON errors (see README,
#: "Server-level limits"). gunicorn cannot go past 32768 header fields.
GUNICORN_LIMITS: dict[str, int] = {
    "limit_request_line": 0,  # no limit of its own (its fast parser stops at 1 MiB)
    "limit_request_fields": 100,
    "limit_request_field_size": 65536,
}


def preflight(settings: ServerSettings) -> list[str]:
    """Check settings, credentials, manifests and hashes; return the problems (empty when all
    is well). Says once, for the whole server, what protects its routes."""
    settings.check_safe()
    authenticator = Authenticator(settings)
    if authenticator.enabled:
        logger.info("%s", authenticator.describe())
    else:
        logger.warning("%s", authenticator.describe())
    if settings.rate_limits_per_process():  # here: once per server, not once per worker
        logger.warning(
            "rate limits are counted per worker (MODELSERVE_RATE_LIMIT_STORAGE=memory://): "
            "%d workers let up to %d times each limit through; set "
            "MODELSERVE_RATE_LIMIT_STORAGE=redis://... (or MODELSERVE_REDIS_URL) to share them",
            settings.workers,
            settings.workers,
        )
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
        "graceful_timeout": settings.graceful_timeout,
        # Recycling: gunicorn's own request limit (its jitter is the same 0..N draw);
        # the RSS limit is modelserve's (post_request in run_gunicorn).
        "max_requests": settings.max_requests,
        "max_requests_jitter": settings.max_requests_jitter if settings.max_requests else 0,
        "keepalive": settings.keepalive,
        "loglevel": settings.log_level.lower(),
        "errorlog": "-",
        # gunicorn's own lines in modelserve's format; its access log only when asked for
        # (modelserve logs each request itself).
        "logger_class": _gunicorn_logger_class(settings),
        "proc_name": "modelserve",
        **GUNICORN_LIMITS,
    }
    if settings.access_log:
        options["accesslog"] = "-"
    return options


def _gunicorn_logger_class(settings: ServerSettings) -> type[Any]:
    """gunicorn's logger, writing through modelserve's handlers (same format, same file)."""
    from gunicorn.glogging import Logger

    class _Logger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                had_handlers = bool(log.handlers)
                for handler in list(log.handlers):
                    log.removeHandler(handler)
                if had_handlers:  # no access log configured: it stays without handlers
                    apply_handlers(log, settings)

    return _Logger


def _compact_metrics(path: str) -> None:
    """gunicorn's ``child_exit`` (in the arbiter): fold the dead worker's metric files away.

    Workers that exit while the server stops may be reaped after the folder was removed:
    then there is nothing left to keep.
    """
    if not os.path.isdir(path):
        return
    try:
        with multiproc.locked(path):
            multiproc.compact(path)
    except Exception:  # metrics bookkeeping must never take the arbiter down
        logger.exception("compacting the metrics folder %s failed", path)


def watch_repository(
    app: Flask, settings: ServerSettings, group: WorkerGroup | None, applied: int = 0
) -> None:
    """Start hot reload in this process: polling, SIGHUP, and (in a group of workers) the
    other workers' load/unload changes, which the load/unload API then waits for.

    The reloader stops with the worker (:func:`modelserve.workers.on_worker_stop`).

    :param group: this worker's membership of its server's workers; ``None`` for a lone
        process (the development server).
    :param applied: the group's generation this worker's models already reflect.
    """
    from .api._handlers import EXTENSION_KEY
    from .api._handlers import Handlers
    from .reload import Reloader

    handlers: Handlers = app.extensions[EXTENSION_KEY]
    reloader = Reloader(handlers.service.reload, settings.poll_interval, group, applied)
    if threading.current_thread() is threading.main_thread():
        reloader.install_sighup()  # only the main thread may install signal handlers
    reloader.start()
    workers.on_worker_stop(reloader.stop)
    app.extensions["modelserve.reloader"] = reloader
    if group is not None:
        timeout = float(settings.timeout)
        handlers.admin.on_change(lambda: group.announce(timeout))
        workers.on_worker_stop(group.leave)


def _gunicorn_worker_class(threads: int) -> type[Any]:
    """gunicorn's gthread (or sync) worker whose SIGTERM starts a drain first.

    gunicorn's own SIGTERM handling stops accepting at once: connections still queued in the
    kernel are then reset. This one marks the worker as draining (readiness 503), keeps
    serving for :data:`~modelserve.workers.DRAIN_SECONDS`, then runs gunicorn's graceful stop.
    """
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    base: type[Any] = ThreadWorker if threads > 1 else SyncWorker

    class DrainingWorker(base):  # type: ignore[misc]
        def init_process(self) -> None:
            # The thread that ends the drain starts now, not in the SIGTERM handler: a
            # handler runs between two bytecodes of the main thread, and starting a thread
            # there hangs for good when the main thread was starting one itself (it holds
            # threading's limbo lock for that); the master then kills the worker only after
            # the graceful timeout.
            self._drain_asked = threading.Event()
            self._drain_signal: int = signal.SIGTERM
            watcher = threading.Thread(
                target=self._stop_after_drain, name="modelserve-drain", daemon=True
            )
            watcher.start()
            super().init_process()

        def handle_exit(self, sig: int, frame: Any) -> None:
            if workers.draining():
                return  # the arbiter forwards the SIGTERM it got: one drain is enough
            workers.begin_draining()
            # Every answer from now on says "Connection: close" (gthread: keepalive 0), so
            # clients on kept-alive connections reconnect instead of reusing this one.
            self.cfg.set("keepalive", 0)
            self._drain_signal = sig
            self._drain_asked.set()  # the watcher's own lock only: safe in a handler

        def handle_quit(self, sig: int, frame: Any) -> None:
            """SIGINT/SIGQUIT: gunicorn's quick stop, unless the signal interrupted the
            thread pool itself.

            gthread's handler shuts its pool down from inside the signal handler. When the
            signal lands while the main thread is in ``pool.submit`` (which holds the pool's
            shutdown lock while it starts a thread), that waits on the lock forever and the
            master kills the worker only after the graceful timeout (seen with Ctrl-C sent
            to the whole process group while a request was being accepted). Then stop the
            loop instead: the worker's run shuts the pool down as it returns.
            """
            lock = getattr(getattr(self, "tpool", None), "_shutdown_lock", None)
            if lock is not None:
                if not lock.acquire(blocking=False):
                    self.alive = False
                    return
                lock.release()
            super().handle_quit(sig, frame)

        def _stop_after_drain(self) -> None:
            """The drain's watcher: after a SIGTERM and the drain, gunicorn's graceful stop."""
            self._drain_asked.wait()
            time.sleep(workers.DRAIN_SECONDS)
            super().handle_exit(self._drain_signal, None)
            # The sync worker sleeps in select() for up to half the timeout: wake it now.
            os.write(self.PIPE[1], b".")

    return DrainingWorker


def run_gunicorn(settings: ServerSettings) -> None:
    """Serve with gunicorn in this process (blocks until it stops).

    SIGHUP to the master does not restart the workers (gunicorn's default): it is forwarded to
    every worker, and each rescans the model repository and hot-reloads what changed.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer

    configure_logging(settings)
    metrics_dir, own_metrics_dir = multiproc.prepare()
    settings, state_dir = _with_state_file(with_shared_secret(settings))

    class _Arbiter(Arbiter):  # type: ignore[misc]
        def stop(self, graceful: bool = True) -> None:
            """Stop every worker, even when a second one fails to boot meanwhile.

            gunicorn's ``stop`` reaps workers, and a worker that exited with the boot-error
            status raises ``HaltServer`` from inside it. While the server is already halting
            for the first such worker, that escaped as a traceback and exit status 1 instead
            of 3: the server is stopping anyway, so finish stopping the rest.
            """
            for _ in range(len(self.WORKERS) + 2):
                try:
                    super().stop(graceful)
                    return
                except HaltServer:
                    continue

        def handle_hup(self) -> None:
            self.log.info("SIGHUP: every worker rescans the model repository")
            for pid in list(self.WORKERS):
                self.kill_worker(pid, signal.SIGHUP)

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25
                # One fixed path per user: two servers on a host would take each other's.
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("worker_class", _gunicorn_worker_class(settings.threads))
            self.cfg.set("post_worker_init", lambda worker: workers.run_worker_start())
            self.cfg.set("post_request", _recycle_over_rss(settings))
            self.cfg.set("worker_exit", lambda server, worker: workers.run_worker_stop())
            self.cfg.set("child_exit", lambda server, worker: _compact_metrics(metrics_dir))

        def load(self) -> Any:
            # gunicorn resets SIGHUP to "terminate" in a new worker; a SIGHUP fanned out while
            # this worker loads its models must not kill it (it loads the latest state anyway).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            return worker_app(settings)

        def run(self) -> None:
            try:
                _Arbiter(self).run()
            except RuntimeError as exc:
                sys.stderr.write(f"\nError: {exc}\n\n")
                sys.exit(1)

    preload_models(settings)
    master = os.getpid()
    try:
        _Application().run()
    finally:
        # A worker leaves gunicorn's spawn_worker by SystemExit, which unwinds through here
        # in the worker too: only the master may remove what all the workers share.
        if os.getpid() == master:
            _remove_shared(state_dir, metrics_dir if own_metrics_dir else None)


def _remove_shared(state_dir: str | None, metrics_dir: str | None) -> None:
    """Remove a stopped server's shared state folder and its own metrics folder."""
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    if metrics_dir is not None:
        multiproc.remove(metrics_dir)


def _recycle_over_rss(settings: ServerSettings) -> Callable[..., None]:
    """gunicorn's ``post_request`` hook: a worker whose RSS is over
    ``max_worker_rss_mb`` stops as a worker past ``max_requests`` does (it finishes what it
    accepted, answers ``Connection: close``, and the arbiter forks a fresh one)."""
    guard = workers.RssGuard(settings.max_worker_rss_mb)

    def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
        if worker.alive and guard.over():
            worker.log.info(
                "worker RSS over MODELSERVE_MAX_WORKER_RSS_MB=%d: recycling it",
                settings.max_worker_rss_mb,
            )
            worker.alive = False

    return post_request


def preload_models(settings: ServerSettings) -> None:
    """In the main process, before the fork: load the fork-safe models (``preload``) and
    freeze the heap, so every worker shares one copy of them (:mod:`modelserve.preload`)."""
    if not settings.preload:
        return
    from . import preload

    started = time.perf_counter()
    loaded = ModelRepository(settings).preload()
    if loaded:
        logger.info(
            "preloaded %s in the main process in %.0f ms (shared by the workers)",
            ", ".join(loaded),
            (time.perf_counter() - started) * 1000,
        )
    preload.freeze()


def with_shared_secret(settings: ServerSettings) -> ServerSettings:
    """Give the workers of one server one secret key: the configured one, or a random one made
    here, in the main process, that reaches them with the settings (fork or JSON hand-off).

    Nothing a prediction answers is signed, so no key has to be configured; what the key
    signs (session cookies) is valid across this server's workers but not across a restart.
    """
    if settings.secret_key is not None:
        return settings
    logger.warning(
        "MODELSERVE_SECRET_KEY is not set: using a random secret key made at start and shared "
        "by this server's workers; signed sessions will not survive a restart"
    )
    return settings.model_copy(update={"secret_key": SecretStr(secrets.token_urlsafe(32))})


def _with_state_file(settings: ServerSettings) -> tuple[ServerSettings, str | None]:
    """Give the workers of one server a shared state file (models unloaded through the API),
    so one worker's unload holds in all of them and in workers started later."""
    if settings.state_file is not None:
        return settings, None
    state_dir = tempfile.mkdtemp(prefix="modelserve-")
    return settings.model_copy(
        update={"state_file": Path(state_dir) / "repository.json"}
    ), state_dir


class _ThreadCountNotice(logging.Filter):
    """Drop granian's "Configuration allows spawning up to N Python threads" warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads, which seems quite high" not in record.getMessage()


def granian_app() -> Any:
    """Granian's app factory, called in each worker: build the app, then start the worker.

    Settings come from ``MODELSERVE_SETTINGS_JSON`` (written by :func:`run_granian`), or
    from the environment when granian was started by hand. Hot reload runs in every worker
    by polling and through the worker group (:mod:`modelserve.peers`). SIGHUP to granian's
    main process is granian's own: it restarts the workers, which load the latest state.
    """
    from .settings import load_settings

    # The fork copied the main process' drain handler; granian installs the worker's own
    # handlers only after this factory returns. Until then a SIGTERM (a stop while models
    # load) must end this worker, not start a drain here that nobody finishes: granian
    # would wait workers_kill_timeout for it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    text = os.environ.get(SETTINGS_JSON_ENV)
    settings = settings_from_json(text, ServerSettings) if text else load_settings()
    app: Any = worker_app(settings, boot_failure_file=os.environ.get(_BOOT_FAILURE_ENV))
    recycle_dir = os.environ.get(_RECYCLE_ENV)
    limit = workers.request_limit(settings.max_requests, settings.max_requests_jitter)
    flask_app = app
    app = _granian_wsgi(app, limit, Path(recycle_dir) if recycle_dir else None)
    app.modelserve_threads = request_threads_after_load(flask_app, settings)
    # The main process sends SIGUSR1 when it got SIGTERM (granian keeps SIGTERM for itself).
    signal.signal(signal.SIGUSR1, lambda signum, frame: workers.begin_draining())
    # And SIGUSR2 when it is replacing this worker (recycling): see _granian_server_class.
    signal.signal(signal.SIGUSR2, lambda signum, frame: _retiring.set())
    # Run by multiprocessing's exit function once granian's serve loop returned (every
    # connection finished); atexit would not run in a forked multiprocessing child.
    Finalize(None, workers.run_worker_stop, exitpriority=10)
    workers.run_worker_start()
    return app


def _granian_wsgi(app: Any, limit: int, recycle_dir: Path | None) -> Any:
    """A granian worker's WSGI callable: the app, answering ``Connection: close`` while the
    worker is on its way out, and asking for its replacement after ``limit`` requests.

    On its way out means draining (the server got SIGTERM) or retiring (past its request
    budget: the main process starts a fresh worker and stops this one a few seconds
    later). Clients on kept-alive connections then reconnect, to a worker that stays,
    rather than send their next request on a connection this worker is about to close.
    (gunicorn says ``close`` itself once a worker stops; see ``DrainingWorker``.)
    """
    budget = workers.RequestBudget(limit if recycle_dir is not None else 0)

    def closing(start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            return start_response(status, [*headers, ("Connection", "close")], exc_info)

        return start

    def wsgi(environ: Any, start_response: Any) -> Any:
        if budget.spend() and recycle_dir is not None:
            logger.info("worker took its %d requests (MODELSERVE_MAX_REQUESTS): recycling", limit)
            (recycle_dir / str(os.getpid())).touch()
        if _retiring.is_set() or workers.draining():
            start_response = closing(start_response)
        return app(environ, start_response)

    return wsgi


#: Set in a granian worker that the main process is replacing (SIGUSR2 from it): every
#: answer says ``Connection: close`` until the worker is stopped.
_retiring = threading.Event()


def _granian_server_class() -> type[Any]:
    """granian's server, recycling workers by modelserve's request and RSS limits.

    granian recycles workers by lifetime and by RSS, not by request count, and stops the
    old worker without telling it beforehand. Its main loop wakes every
    ``rss_sample_interval`` seconds to check RSS (``_handle_rss_signal``, granian's own
    hook, private: the recycling tests run against the installed granian); this subclass
    takes that tick to check both limits itself: the workers whose pid is in
    ``recycle_dir`` (past their request budget) and those over ``rss_limit`` bytes are
    respawned granian's way: a fresh worker starts, the old one is stopped
    ``respawn_interval`` later. Any respawn (these, SIGHUP's) first sends the old worker
    SIGUSR2: it answers ``Connection: close`` from then on.
    """
    from granian.server import Server

    class _Server(Server):  # type: ignore[misc,valid-type]
        recycle_dir: Path | None = None
        rss_limit = 0

        def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
            if os.environ.get(_SIZE_THREADS_ENV) == "1":
                expected = (_BLOCKING_THREADS_ARG, self.blocking_threads)
                target = functools.partial(_sized_wsgi_worker, target, expected)
            return super()._spawn_worker(idx, target, callback_loader)

        def _handle_rss_signal(self, spawn_target: Any, target_loader: Any) -> None:
            asked: set[int] = set()
            if self.recycle_dir is not None:
                for marker in list(self.recycle_dir.iterdir()):
                    marker.unlink(missing_ok=True)
                    if marker.name.isdigit():
                        asked.add(int(marker.name))
            retire = []
            for wrk in self.wrks:
                pid = wrk._id()
                if pid in asked:
                    retire.append(wrk)
                elif self.rss_limit and workers.rss_bytes(pid) > self.rss_limit:
                    logger.info(
                        "worker-%d RSS over MODELSERVE_MAX_WORKER_RSS_MB: recycling it", wrk.idx + 1
                    )
                    retire.append(wrk)
            if retire:
                self._respawn_workers(
                    [wrk.idx for wrk in retire],
                    spawn_target,
                    target_loader,
                    delay=self.respawn_interval,
                )

        def _respawn_workers(
            self, indexes: list[int], spawn_target: Any, target_loader: Any, delay: float = 0
        ) -> None:
            # Every graceful respawn (recycling, SIGHUP, a dead worker's replacement) tells
            # the old worker first, so its clients reconnect to one that stays.
            for idx in indexes:
                old = self.wrks[idx]
                if not old.is_alive():  # a dead worker's replacement (its pid may be reused)
                    continue
                try:
                    os.kill(old._id(), signal.SIGUSR2)
                except ProcessLookupError:  # exited just now
                    pass
            super()._respawn_workers(indexes, spawn_target, target_loader, delay)

    return _Server


def worker_app(settings: ServerSettings, boot_failure_file: str | None = None) -> Flask:
    """Build a server worker's app and start its hot reload; a worker that cannot load
    exits with the status that makes the master stop, after one clean line in the log.

    :param boot_failure_file: granian only: where to leave the message for the main process,
        which this worker then asks to stop (granian would respawn it otherwise).
    """
    from .app import create_app
    from .peers import WorkerGroup

    group = WorkerGroup(settings.state_file.parent) if settings.state_file is not None else None
    # Join before loading, acknowledging only what the state read during the load is sure to
    # include: a change another worker makes meanwhile then waits for this one too, whose
    # reloader applies it as soon as the app exists (a dead worker's entry is dropped).
    seen = group.generation() if group is not None else 0
    if group is not None:
        group.acknowledge(seen)
    try:
        app = create_app(settings)
    except Exception as exc:
        if isinstance(exc, ModelServeError):
            message = exc.message
        else:
            logger.exception("worker failed to boot")
            message = f"worker failed to boot: {type(exc).__name__}: {exc}"
        sys.stderr.write(f"modelserve: {message}\n")
        if boot_failure_file is not None:
            Path(boot_failure_file).write_text(message, encoding="utf-8")
            os.kill(os.getppid(), signal.SIGTERM)
        sys.exit(_WORKER_BOOT_ERROR)
    watch_repository(app, settings, group, seen)
    return app


def request_threads_after_load(app: Flask, settings: ServerSettings) -> int | None:
    """The request threads a granian worker should run now that its models are loaded, or
    ``None`` to keep ``settings.threads``.

    The machine's default (:func:`threads.default_server_threads`) is sized for batching:
    each request waiting for a shared model call holds a thread. A worker none of whose
    models is batched (every one compiled, or too cheap to share a call) gains nothing from
    them and pays for each thread competing for the GIL, so it runs
    :func:`threads.unbatched_server_threads`. Only when the threads are the default
    (``MODELSERVE_THREADS`` unset) and the main process asked for it (``_SIZE_THREADS_ENV``).
    """
    if os.environ.get(_SIZE_THREADS_ENV) != "1":
        return None
    service: InferenceService = app.extensions["modelserve"]
    if any(sv.batcher is not None for model in service.models() for sv in model.versions.values()):
        return None
    fewer = threads.unbatched_server_threads(settings.workers)
    if fewer >= settings.threads:
        return None
    logger.info(
        "no model is batched: %d request threads, not %d (MODELSERVE_THREADS sets them)",
        fewer,
        settings.threads,
    )
    return fewer


def _sized_wsgi_worker(
    inner: Callable[..., Any],
    expected: tuple[int, int],
    worker_id: int,
    process_name: str | None,
    callback_loader: Callable[[], Any],
    *args: Any,
) -> Any:
    """granian's WSGI worker target, with the app loaded first so that the worker's blocking
    threads can follow its models (:func:`request_threads_after_load`).

    granian passes the worker's settings as positional arguments (granian 2.8:
    ``_spawn_worker``); the threads are the one at :data:`_BLOCKING_THREADS_ARG` after the
    loader. ``expected`` is (that index's value, ``blocking_threads``) as the main process
    knew it: a granian that lays its arguments out otherwise keeps its threads as they are.
    """
    callback = callback_loader()
    index, configured = expected
    fewer = getattr(callback, "modelserve_threads", None)
    arguments = list(args)
    if fewer is not None and len(arguments) > index and arguments[index] == configured:
        arguments[index] = fewer
    return inner(worker_id, process_name, lambda: callback, *arguments)


#: Where granian 2.8's worker arguments after the loader hold ``blocking_threads`` (socket,
#: ipc, loop, log enabled, log level, log config, env files, runtime mode, runtime threads,
#: runtime blocking threads, then the blocking threads).
_BLOCKING_THREADS_ARG = 10


def granian_options(settings: ServerSettings) -> dict[str, Any]:
    """The granian settings modelserve uses (WSGI calls run on ``threads`` blocking threads)."""
    from granian.http import HTTP1Settings

    options: dict[str, Any] = {
        "factory": True,
        "websockets": False,
        "address": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "blocking_threads": settings.threads,
        "backpressure": max(settings.threads, settings.max_queue),
        "log_level": settings.log_level.lower(),
        "log_access": settings.access_log,
        # granian's own lines (main process and workers) in modelserve's format.
        "log_dictconfig": granian_log_config(settings),
        # A worker that dies (SIGKILL, a crash) is replaced; one that fails to boot stops
        # the server instead (worker_app), as under gunicorn.
        "respawn_failed_workers": True,
        "respawn_interval": _RESPAWN_INTERVAL,
        # The drain runs before granian's stop: together they stay within graceful_timeout.
        "workers_kill_timeout": max(1, int(settings.graceful_timeout - workers.DRAIN_SECONDS)),
        # granian has no per-request timeout; what it can bound is a client that is slow to
        # send its request head (README, "Limits"). At most 60 s: granian's own maximum.
        "http1_settings": HTTP1Settings(header_read_timeout=min(settings.timeout, 60) * 1000),
    }
    if settings.max_requests or settings.max_worker_rss_mb:
        # granian's RSS tick in the main process, where modelserve checks both limits
        # (_granian_server_class); granian's own RSS check is not used.
        options["workers_max_rss"] = _NO_RSS_LIMIT_MB
        options["rss_sample_interval"] = _RECYCLE_TICK
    return options


def run_granian(settings: ServerSettings) -> None:
    """Serve with granian's WSGI interface (blocks until it stops).

    WSGI calls run on granian's blocking threads (``threads`` of them per worker); the HTTP
    parsing and I/O happen in Rust, off the GIL. SIGTERM (or SIGINT) to the main process
    drains first (:mod:`modelserve.workers`), then runs granian's graceful stop.
    """
    from granian.constants import Interfaces

    configure_logging(settings)
    threads_set_by = settings.model_fields_set  # before the copies below set every field
    # Exported before granian forks (or spawns) its workers: they inherit the variable, and
    # a scrape in any of them compacts the files of workers that are gone.
    metrics_dir, own_metrics_dir = multiproc.prepare()
    settings, state_dir = _with_state_file(with_shared_secret(settings))
    run_dir = tempfile.mkdtemp(prefix="modelserve-run-")
    boot_failure = Path(run_dir) / "boot-failure.txt"
    os.environ[SETTINGS_JSON_ENV] = settings_to_json(settings)
    os.environ[_BOOT_FAILURE_ENV] = str(boot_failure)
    recycle_dir = Path(run_dir) / "recycle"
    recycle_dir.mkdir()
    os.environ[_RECYCLE_ENV] = str(recycle_dir)
    if "threads" not in threads_set_by:
        os.environ[_SIZE_THREADS_ENV] = "1"
    server = _granian_server_class()(
        "modelserve.server:granian_app", interface=Interfaces.WSGI, **granian_options(settings)
    )
    server.recycle_dir = recycle_dir
    server.rss_limit = settings.max_worker_rss_mb * 1024 * 1024
    # granian (which has just configured its logging) warns whenever a WSGI worker may run
    # more than 2 x CPUs + 1 Python threads, a rule for threads that compute. Ours mostly
    # wait: a request hands its rows to the batcher and waits for the shared model call, so
    # more threads mean larger batches, not more CPU (settings.threads). Intentional, as the
    # warning itself allows: drop just that record.
    logging.getLogger("_granian").addFilter(_ThreadCountNotice())

    def stop_now() -> None:
        server.signal_handler_interrupt()

    def drain_then_stop(signum: int, frame: Any) -> None:
        if boot_failure.exists() or workers.draining():
            stop_now()  # a worker failed to boot, or a second signal
            return
        workers.begin_draining()
        # A signal sent to the whole process group (Ctrl-C in a terminal, systemd's default
        # KillMode) reaches the workers too, and they stop by themselves: granian must not
        # take that for a crash and respawn them (the new ones would then be killed after
        # workers_kill_timeout), so from here a worker's exit ends the server.
        server.respawn_failed_workers = False
        for child in multiprocessing.active_children():
            if child.pid is not None:
                os.kill(child.pid, signal.SIGUSR1)
        timer = threading.Timer(workers.DRAIN_SECONDS, stop_now)
        timer.daemon = True
        timer.start()

    def install_drain() -> None:
        # Runs after granian installed its own handlers, before it forks the workers; they
        # inherit SIGUSR1 and SIGUSR2 ignored until their factory installs the drain and
        # retire handlers.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, drain_then_stop)
        signal.signal(signal.SIGINT, drain_then_stop)

    server.on_startup(install_drain)

    preload_models(settings)
    try:
        server.serve()
    except SystemExit:
        if not boot_failure.exists():
            raise
    finally:
        failed = boot_failure.read_text(encoding="utf-8") if boot_failure.exists() else None
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_shared(state_dir, metrics_dir if own_metrics_dir else None)
    if failed is not None:
        sys.stderr.write(f"\nError: a worker failed to boot, server stopped: {failed}\n\n")
        sys.exit(_WORKER_BOOT_ERROR)


def run_development(settings: ServerSettings) -> None:
    """Flask's development server with the reloader: local use only, never production."""
    from .app import create_app

    authenticator = Authenticator(settings)
    # Once, not again in the reloader's child.
    if os.environ.get("WERKZEUG_RUN_MAIN") != "true" and not authenticator.enabled:
        logger.warning("%s", authenticator.describe())
    app = create_app(settings)
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":  # the reloader's child serves
        watch_repository(app, settings, None)
    app.run(host=settings.host, port=settings.port, debug=settings.debug, use_reloader=True)
