"""Job state in one SQL table (SQLite or PostgreSQL, through SQLAlchemy Core).

Every change that decides who runs a job, or how far it got, is one conditional ``UPDATE``
whose row count says whether it happened, so several threads, server processes and Celery
workers can share the table without a lock of their own:

* :meth:`JobStore.claim` takes a job that is queued, or running under an expired lease
  (its worker died); exactly one caller wins.
* :meth:`JobStore.commit_chunk` advances ``chunks_done`` from ``n`` to ``n + 1`` only for
  the lease holder of a job still running, and only if ``n`` is the next chunk: a chunk is
  counted once however often it is scored, and a cancelled job or a lost lease stops the
  runner at its next chunk.
* :meth:`JobStore.requeue_expired` hands back jobs whose lease expired, once each.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from typing import Any

from ..errors import JobNotFound
from ..errors import ServerBusy
from ..sqlurl import display_url
from ..sqlurl import open_engine
from ..sqlurl import sqlalchemy_url
from .model import FINISHED
from .model import Job

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection
    from sqlalchemy import Engine
    from sqlalchemy import Table

#: Seconds a SQLite writer waits for another process's write before it gives up.


def store_url(value: str) -> str:
    """The SQLAlchemy URL for ``MODELSERVE_JOBS_STORE_URL`` (see :mod:`modelserve.sqlurl`)."""
    return sqlalchemy_url(value, "MODELSERVE_JOBS_STORE_URL")


def new_job_id() -> str:
    """A job id: unguessable (ids appear in URLs), short, URL-safe."""
    return secrets.token_hex(12)


class JobStore:
    """The jobs table.

    :param url: a SQLAlchemy URL or a SQLite file path (see :func:`store_url`).
    :param table: the table name.
    :raises ConfigError: SQLAlchemy or the driver is missing, or the URL is invalid.
    """

    def __init__(self, url: str, table: str = "modelserve_jobs") -> None:
        import sqlalchemy as sa  # open_engine has checked it is installed

        self.engine: Engine
        self.engine, self.sqlite = open_engine(url, "MODELSERVE_JOBS_STORE_URL", "jobs")
        self.display_url = display_url(self.engine)
        self.table: Table = _define_table(sa.MetaData(), table)
        self.create()

    def create(self) -> None:
        """Create the table unless it exists (several processes may race)."""
        import sqlalchemy as sa
        from sqlalchemy.schema import CreateIndex
        from sqlalchemy.schema import CreateTable

        try:
            with self._connect(write=True) as conn:
                conn.execute(CreateTable(self.table, if_not_exists=True))
                for index in self.table.indexes:
                    conn.execute(CreateIndex(index, if_not_exists=True))
        except sa.exc.DBAPIError:
            # PostgreSQL's IF NOT EXISTS is not atomic: another process may have created it
            # between the check and the create, which is all we wanted.
            if not sa.inspect(self.engine).has_table(self.table.name):
                raise

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction when ``write``); a store that cannot be reached is
        a 503 to the client, never a 500."""
        import sqlalchemy as sa

        try:
            with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise ServerBusy(
                f"The job store ({self.display_url}) cannot be reached: "
                f"{str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__}",
                retry_after=5.0,
            ) from exc

    # -- create and read --------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Insert a new job (queued)."""
        with self._connect(write=True) as conn:
            conn.execute(self.table.insert().values(**_row_of(job)))

    def find(self, job_id: str) -> Job | None:
        import sqlalchemy as sa

        t = self.table
        with self._connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == job_id)).first()
        return _job_of(row) if row is not None else None

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job ``job_id``; for ``owner`` only, when one is given.

        :raises JobNotFound: no such job, or it belongs to someone else (indistinguishable,
            so ids of other keys' jobs cannot be probed).
        """
        job = self.find(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(job_id)
        return job

    def page(
        self, owner: str | None, limit: int, offset: int, state: str | None = None
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and how many there are in all."""
        import sqlalchemy as sa

        t = self.table
        where = []
        if owner is not None:
            where.append(t.c.owner == owner)
        if state is not None:
            where.append(t.c.state == state)
        query = sa.select(t).where(*where).order_by(t.c.created_at.desc(), t.c.id)
        with self._connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar()
        return [_job_of(r) for r in rows], int(total or 0)

    def claimable(self, limit: int = 8) -> list[str]:
        """Ids of jobs a worker could claim now (queued, or their lease expired), oldest first."""
        import sqlalchemy as sa

        t = self.table
        query = (
            sa.select(t.c.id)
            .where(self._claimable_clause(time.time()))
            .order_by(t.c.created_at)
            .limit(limit)
        )
        with self._connect() as conn:
            return [r.id for r in conn.execute(query)]

    def _claimable_clause(self, now: float) -> Any:
        import sqlalchemy as sa

        t = self.table
        return sa.or_(
            t.c.state == "queued", sa.and_(t.c.state == "running", t.c.lease_expires < now)
        )

    # -- the conditional updates --------------------------------------------------------------

    def _update(self, where: Sequence[Any], **values: Any) -> bool:
        with self._connect(write=True) as conn:
            result = conn.execute(self.table.update().where(*where).values(**values))
        return bool(result.rowcount == 1)

    def claim(self, job_id: str, worker: str, lease_seconds: float) -> Job | None:
        """Take ``job_id`` for ``worker`` if it is queued or its lease expired; the claimed job,
        or ``None`` when another worker has it (or it finished)."""
        t = self.table
        now = time.time()
        won = self._update(
            [t.c.id == job_id, self._claimable_clause(now)],
            state="running",
            lease_owner=worker,
            lease_expires=now + lease_seconds,
            attempts=t.c.attempts + 1,
            started_at=_coalesce(t.c.started_at, now),
        )
        return self.find(job_id) if won else None

    def heartbeat(self, job_id: str, worker: str, lease_seconds: float) -> bool:
        """Extend ``worker``'s lease; ``False`` when it no longer holds one (cancelled, taken
        over)."""
        t = self.table
        return self._update(
            [t.c.id == job_id, t.c.state == "running", t.c.lease_owner == worker],
            lease_expires=time.time() + lease_seconds,
        )

    def set_total(self, job_id: str, rows: int) -> None:
        t = self.table
        self._update([t.c.id == job_id], rows_total=rows)

    def commit_chunk(
        self, job_id: str, worker: str, chunk: int, rows: int, failed: int, lease_seconds: float
    ) -> bool:
        """Count chunk ``chunk`` (``rows`` rows, ``failed`` of them rejected) as done; ``False``
        when the job was cancelled, taken over, or that chunk is already counted."""
        t = self.table
        return self._update(
            [
                t.c.id == job_id,
                t.c.state == "running",
                t.c.lease_owner == worker,
                t.c.chunks_done == chunk,
            ],
            chunks_done=chunk + 1,
            rows_done=t.c.rows_done + rows,
            rows_failed=t.c.rows_failed + failed,
            lease_expires=time.time() + lease_seconds,
        )

    def finish(self, job_id: str, worker: str, error: str | None = None) -> bool:
        """End ``worker``'s run: succeeded, or failed with ``error``."""
        t = self.table
        return self._update(
            [t.c.id == job_id, t.c.state == "running", t.c.lease_owner == worker],
            state="failed" if error is not None else "succeeded",
            error=error,
            finished_at=time.time(),
            lease_owner=None,
            lease_expires=None,
        )

    def fail(self, job_id: str, error: str) -> bool:
        """Fail a job that is not finished, whoever runs it (a job nobody can run)."""
        t = self.table
        return self._update(
            [t.c.id == job_id, t.c.state.in_(("queued", "running"))],
            state="failed",
            error=error,
            finished_at=time.time(),
            lease_owner=None,
            lease_expires=None,
        )

    def release(self, job_id: str, worker: str) -> bool:
        """Hand a running job back to the queue (its worker stops gracefully): another worker
        resumes it at once, from its last committed chunk, without waiting for the lease."""
        t = self.table
        return self._update(
            [t.c.id == job_id, t.c.state == "running", t.c.lease_owner == worker],
            state="queued",
            lease_owner=None,
            lease_expires=None,
            attempts=t.c.attempts - 1,
        )

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; its runner stops before its next chunk."""
        t = self.table
        return self._update(
            [t.c.id == job_id, t.c.state.in_(("queued", "running"))],
            state="cancelled",
            finished_at=time.time(),
            lease_owner=None,
            lease_expires=None,
        )

    def requeue_expired(self) -> list[str]:
        """Put every running job whose lease expired back in the queue; the ids this call
        requeued (each by one caller only), for a backend that must send them again."""
        import sqlalchemy as sa

        t = self.table
        now = time.time()
        with self._connect() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    sa.select(t.c.id).where(t.c.state == "running", t.c.lease_expires < now)
                )
            ]
        return [
            job_id
            for job_id in ids
            if self._update(
                [t.c.id == job_id, t.c.state == "running", t.c.lease_expires < now],
                state="queued",
                lease_owner=None,
                lease_expires=None,
            )
        ]

    def expired(self, ttl: float) -> list[str]:
        """Ids of jobs that finished more than ``ttl`` seconds ago."""
        import sqlalchemy as sa

        t = self.table
        cutoff = time.time() - ttl
        query = sa.select(t.c.id).where(t.c.state.in_(tuple(FINISHED)), t.c.finished_at < cutoff)
        with self._connect() as conn:
            return [r.id for r in conn.execute(query)]

    def delete(self, job_id: str) -> None:
        t = self.table
        with self._connect(write=True) as conn:
            conn.execute(t.delete().where(t.c.id == job_id))

    def drop(self) -> None:
        """Drop the table (tests)."""
        self.table.drop(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()


def _coalesce(column: Any, value: float) -> Any:
    import sqlalchemy as sa

    return sa.func.coalesce(column, value)


_FIELDS = (
    "id",
    "owner",
    "model",
    "version",
    "state",
    "input_format",
    "output_format",
    "id_column",
    "chunk_rows",
    "error_budget",
    "rows_total",
    "rows_done",
    "rows_failed",
    "chunks_done",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "lease_owner",
    "lease_expires",
)


def _row_of(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in _FIELDS}


def _job_of(row: Any) -> Job:
    return Job(**{name: getattr(row, name) for name in _FIELDS})


def _define_table(metadata: Any, name: str) -> Table:
    import sqlalchemy as sa

    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("input_format", sa.String(16), nullable=False),
        sa.Column("output_format", sa.String(16), nullable=False),
        sa.Column("id_column", sa.String(200), nullable=True),
        sa.Column("chunk_rows", sa.Integer, nullable=False),
        sa.Column("error_budget", sa.Float, nullable=False),
        sa.Column("rows_total", sa.BigInteger, nullable=True),
        sa.Column("rows_done", sa.BigInteger, nullable=False),
        sa.Column("rows_failed", sa.BigInteger, nullable=False),
        sa.Column("chunks_done", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires", sa.Float, nullable=True),
        sa.Index(f"ix_{name}_state", "state", "created_at"),
        sa.Index(f"ix_{name}_owner", "owner", "created_at"),
    )
