"""The Celery backend: the server queues a task per job; ``modelserve worker`` processes, on
any number of machines, run them with their own copy of the models.

Job state stays in the shared store (PostgreSQL for several machines), and the store, not
the broker, decides who runs a job: a task only says "look at job X". A task that arrives
twice (the broker redelivers an unacknowledged message, a sweeper resends one) finds the job
claimed or finished and does nothing. Tasks are acknowledged late and rejected when their
worker is lost (``acks_late``, ``reject_on_worker_lost``), and independently of what the
broker does, every server and worker runs a sweeper that puts jobs whose lease expired (their
worker was killed) back in the queue, once each, and sends their task again: the job resumes
from its last committed chunk.

The result files live in ``jobs_dir``: workers on other machines must mount the same folder.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery import signals

from ..service import InferenceService
from ..settings import ServerSettings
from .embedded import SWEEP_SECONDS
from .embedded import worker_name
from .manager import JobManager
from .runner import JobRunner

logger = logging.getLogger(__name__)

#: The one task: run (or resume) the job whose id it carries.
TASK_NAME = "modelserve.jobs.run"


def broker_url(settings: ServerSettings) -> str:
    return settings.jobs_broker_url or settings.redis_url


def create_celery(settings: ServerSettings) -> Celery:
    """A Celery app for the jobs of ``settings`` (broker, queue, delivery guarantees)."""
    app = Celery("modelserve", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        task_default_queue=settings.jobs_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Acknowledge a task when it finished, and hand it back when its worker process
        # died: a killed worker's task is delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One job at a time per thread: a worker never sits on jobs it cannot start.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Redis redelivers an unacknowledged message after this; a job that runs longer is
        # then refused by its live lease, so it only needs to be longer than most jobs.
        broker_transport_options={"visibility_timeout": 6 * 3600},
    )
    return app


class Sweeper:
    """Put jobs whose lease expired back in the queue and send their task again; remove
    expired results. One per server process and per worker; the store keeps them from
    doing any of it twice."""

    def __init__(self, manager: JobManager, send: Any) -> None:
        self.manager = manager
        self._send = send
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="modelserve-jobs-sweeper", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def sweep(self) -> list[str]:
        requeued = self.manager.store.requeue_expired()
        for job_id in requeued:
            logger.warning("job %s lost its worker (lease expired): queued again", job_id)
            self._send(job_id)
        return requeued

    def _loop(self) -> None:
        interval = max(0.2, self.manager.settings.jobs_lease_seconds / 3)
        since_cleanup = SWEEP_SECONDS
        while not self._stopping.wait(interval):
            try:
                self.sweep()
                since_cleanup += interval
                if since_cleanup >= SWEEP_SECONDS:
                    since_cleanup = 0.0
                    self.manager.remove_expired()
            except Exception:  # the store or the broker is away for a moment
                logger.warning("the job sweeper failed; retrying", exc_info=True)


class CeleryBackend:
    """The server's side: send a task per submitted job; sweep."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.app = create_celery(manager.settings)
        self.sweeper = Sweeper(manager, self.send)

    def start(self) -> None:
        self.sweeper.start()

    def send(self, job_id: str) -> None:
        self.app.send_task(TASK_NAME, args=[job_id], queue=self.manager.settings.jobs_queue)

    def submitted(self, job_id: str) -> None:
        self.send(job_id)

    def close(self) -> None:
        self.sweeper.stop()


def run_worker(settings: ServerSettings, concurrency: int | None = None) -> None:
    """Load the models and consume the jobs queue until stopped (blocks).

    SIGTERM (Celery's warm shutdown) lets each running job finish its current chunk, hands
    it back to the queue and sends its task again, so another worker resumes it at once.
    """
    service = InferenceService(settings)
    service.load()
    manager = JobManager(settings, service)
    app = create_celery(settings)
    stopping = threading.Event()

    def send(job_id: str) -> None:
        app.send_task(TASK_NAME, args=[job_id], queue=settings.jobs_queue)

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run_job(job_id: str) -> str:
        runner = JobRunner(
            manager.store,
            manager.files,
            service,
            worker_name("celery"),
            settings.jobs_lease_seconds,
            settings.jobs_max_attempts,
        )
        outcome = runner.run(job_id, stopping)
        if outcome.state == "stopped":
            job = manager.store.find(job_id)
            if job is not None and job.state == "queued":  # handed back: someone resumes it
                send(job_id)
        return outcome.state

    def on_shutdown(**kwargs: Any) -> None:
        stopping.set()

    signals.worker_shutting_down.connect(on_shutdown, weak=False)
    sweeper = Sweeper(manager, send)
    sweeper.start()
    threads = concurrency or settings.jobs_workers
    argv = [
        "worker",
        "--queues",
        settings.jobs_queue,
        "--pool",
        "threads" if threads > 1 else "solo",
        "--concurrency",
        str(threads),
        "--loglevel",
        settings.log_level,
        "--hostname",
        f"modelserve-{os.getpid()}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        app.worker_main(argv)
    finally:
        sweeper.stop()
        manager.close()
