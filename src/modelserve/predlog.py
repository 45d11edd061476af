"""The prediction log: sampled requests, written off the request path to SQLite or PostgreSQL.

A request thread hands :meth:`PredictionLog.record` references to what it already has (the
validated input array, the model's answer) in one small tuple and returns: no JSON encoding,
no I/O, no lock beyond :meth:`queue.Queue.put_nowait`. One writer thread per worker takes the
tuples off a bounded queue, turns them into rows and inserts them in batches (SQLAlchemy Core,
one table, created if missing). A full queue drops the record and counts it
(:attr:`PredictionLog.dropped`); it never blocks or fails a request. :meth:`PredictionLog.close`
(run when the worker stops gracefully) writes everything still queued before it returns.

SQLAlchemy (and for PostgreSQL a driver) is the optional ``predlog`` extra; nothing here
imports it until a log is configured.
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import orjson

from . import workers
from .errors import ConfigError
from .settings import ServerSettings
from .sqlurl import display_url
from .sqlurl import open_engine
from .sqlurl import sqlalchemy_url
from .telemetry import new_request_id
from .types import PREDICT_OUTPUT
from .types import PROBA_OUTPUT
from .types import Signature

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine
    from sqlalchemy import Table

logger = logging.getLogger(__name__)

#: The table name when ``MODELSERVE_PREDICTION_LOG_TABLE`` is not set.
DEFAULT_TABLE = "modelserve_predictions"
#: Most records one insert carries.
BATCH_SIZE = 500
#: Seconds :meth:`PredictionLog.close` waits for the writer to finish what is queued.
CLOSE_TIMEOUT = 20.0
#: Seconds a SQLite writer waits for another worker's write to finish before it gives up.
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")


#: One sampled request as the request thread hands it over, references not copies: (unix
#: time, model, version, latency in ms, request id, signature, validated ``[rows, features]``
#: inputs, outputs). A plain tuple: building a NamedTuple costs ten times as much.
_Pending = tuple[float, str, int, float, str, Signature, np.ndarray, Mapping[str, Any]]


@dataclass(frozen=True)
class LoggedPrediction:
    """One row of the log as read back."""

    ts: float
    model: str
    version: int
    request_id: str | None
    latency_ms: float | None
    rows: int
    inputs: list[dict[str, Any]]
    outputs: dict[str, list[Any]]


def database_url(value: str) -> str:
    """The SQLAlchemy URL for ``MODELSERVE_PREDICTION_LOG`` (see :mod:`modelserve.sqlurl`)."""
    return sqlalchemy_url(value, "MODELSERVE_PREDICTION_LOG")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class PredictionStore:
    """The log's one table in a SQL database: create it, insert batches, read a window back.

    :param url: a SQLAlchemy URL or a SQLite file path (see :func:`database_url`).
    :param table: the table name (letters, digits, ``_``).
    :raises ConfigError: SQLAlchemy or the driver is missing, or the URL or name is invalid.
    """

    def __init__(self, url: str, table: str = DEFAULT_TABLE) -> None:
        if not _TABLE_RE.match(table):
            raise ConfigError(
                f"MODELSERVE_PREDICTION_LOG_TABLE: {table!r} is not a plain table name "
                "(letters, digits and '_', at most 50 characters)"
            )
        self.engine: Engine
        self.engine, self.sqlite = open_engine(
            url,
            "MODELSERVE_PREDICTION_LOG",
            "predlog",
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
        )
        #: The URL with its password hidden, for messages.
        self.display_url = display_url(self.engine)
        import sqlalchemy as sa  # open_engine has checked it is installed

        self.table: Table = _define_table(sa.MetaData(), table)
        self._created = False

    def create(self) -> None:
        """Create the table and its index unless they exist (several workers may race)."""
        import sqlalchemy as sa
        from sqlalchemy.schema import CreateIndex
        from sqlalchemy.schema import CreateTable

        try:
            with self.engine.begin() as conn:
                conn.execute(CreateTable(self.table, if_not_exists=True))
                for index in self.table.indexes:
                    conn.execute(CreateIndex(index, if_not_exists=True))
        except sa.exc.DBAPIError:
            # PostgreSQL's IF NOT EXISTS is not atomic: another worker may have created it
            # between the check and the create. Then it exists, which is all we wanted.
            if not sa.inspect(self.engine).has_table(self.table.name):
                raise
        self._created = True

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` in one transaction (one executemany)."""
        if not self._created:
            self.create()
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), list(rows))

    def read(
        self,
        model: str,
        version: int | None,
        since: float,
        until: float | None = None,
        limit: int = 100_000,
    ) -> list[LoggedPrediction]:
        """The records of ``model`` (``version``) logged from ``since`` on, newest first,
        at most ``limit`` of them. An absent table reads as empty."""
        import sqlalchemy as sa

        t = self.table
        query = sa.select(t).where(t.c.model == model, t.c.ts >= since)
        if version is not None:
            query = query.where(t.c.version == version)
        if until is not None:
            query = query.where(t.c.ts <= until)
        query = query.order_by(t.c.ts.desc()).limit(limit)
        if not sa.inspect(self.engine).has_table(t.name):
            return []
        with self.engine.connect() as conn:
            return [
                LoggedPrediction(
                    ts=r.ts,
                    model=r.model,
                    version=r.version,
                    request_id=r.request_id,
                    latency_ms=r.latency_ms,
                    rows=r.n_rows,
                    inputs=r.inputs,
                    outputs=r.outputs,
                )
                for r in conn.execute(query)
            ]

    def drop(self) -> None:
        """Drop the table (tests; a user would rather archive it)."""
        self.table.drop(self.engine, checkfirst=True)
        self._created = False

    def close(self) -> None:
        """Close the pooled connections (a later use opens new ones)."""
        self.engine.dispose()


def _define_table(metadata: Any, name: str) -> Table:
    import sqlalchemy as sa

    return sa.Table(
        name,
        metadata,
        # SQLite autoincrements only an INTEGER PRIMARY KEY, not a BIGINT one.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("ts", sa.Double(), nullable=False, doc="Unix time the answer was given"),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("latency_ms", sa.Double()),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False, doc="The validated rows, by feature"),
        sa.Column("outputs", sa.JSON(), nullable=False, doc="Each output, one value per row"),
        sa.Index(f"ix_{name}_model_ts", "model", "version", "ts"),
    )


class PredictionLog:
    """Sample requests into a bounded queue; one writer thread inserts them in batches.

    :param store: where the records go.
    :param sample: the share of requests logged, ``0.0``-``1.0``.
    :param queue_size: most records waiting for the writer; more are dropped and counted.
    :param flush_seconds: longest the writer gathers records into one insert.
    :param request_id: called on the request thread, only for a sampled request, to tell
        its id (the transport reads its own request context there).
    :param rng: the sampling draw (tests pass a seeded one).
    """

    def __init__(
        self,
        store: PredictionStore,
        *,
        sample: float = 1.0,
        queue_size: int = 10_000,
        flush_seconds: float = 1.0,
        request_id: Callable[[], str] = new_request_id,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sample = sample
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[_Pending | threading.Event | None] = queue.Queue(queue_size)
        self._request_id = request_id
        self._rng = rng
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Records refused because the queue was full (or the log closed).
        self.dropped = 0
        #: Records written to the database.
        self.written = 0
        #: Records lost because their insert failed (the error is logged).
        self.failed = 0

    def __repr__(self) -> str:
        return f"PredictionLog({self.store.display_url!r}, sample={self.sample})"

    # -- request thread ---------------------------------------------------------------------

    def record(
        self,
        model: str,
        version: int,
        signature: Signature,
        inputs: np.ndarray,
        outputs: Mapping[str, Any],
        started: float,
    ) -> None:
        """Queue one answered request, if sampled; never blocks, never raises ``Full``.

        :param inputs: the validated ``[rows, features]`` array (not copied: the caller
            must not change it afterwards).
        :param outputs: the runtime's outputs, or the seed protocol's answer.
        :param started: ``time.perf_counter()`` when the request's work began.
        """
        if self.sample < 1.0 and self._rng() >= self.sample:
            return
        if self._thread is None:
            self.start()
        item: _Pending = (
            time.time(),
            model,
            version,
            (time.perf_counter() - started) * 1000.0,
            self._request_id(),
            signature,
            inputs,
            outputs,
        )
        if self._closed:
            self._drop()
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._drop()

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1

    @property
    def queued(self) -> int:
        """Records waiting for the writer now (approximate)."""
        return self._queue.qsize()

    # -- lifetime ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (once; the first record starts it if nobody did) and
        arrange for :meth:`close` when the worker stops or the interpreter exits."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread = thread
        thread.start()
        # A server worker's graceful stop runs this; atexit covers the development server
        # (a granian worker leaves through os._exit, where only the worker hook runs).
        workers.on_worker_stop(self.close)
        atexit.register(self.close)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is written; ``False`` on timeout."""
        if self._thread is None or self._closed:
            return self._queue.empty()
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is queued, stop the writer and close the database connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        atexit.unregister(self.close)
        if thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            thread.join(timeout)
            if thread.is_alive():
                logger.error(
                    "prediction log: the writer did not finish within %.0f s; about %d "
                    "record(s) were not written",
                    timeout,
                    self._queue.qsize(),
                )
                return
        self.store.close()
        if self.dropped or self.failed:
            logger.warning(
                "prediction log: %d record(s) dropped (queue full), %d failed to write",
                self.dropped,
                self.failed,
            )

    # -- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        get = self._queue.get
        stop = False
        while not stop:
            item = get()
            batch: list[_Pending] = []
            markers: list[threading.Event] = []
            deadline = time.monotonic() + self.flush_seconds
            while True:
                if item is None:
                    stop = True
                    break
                if isinstance(item, threading.Event):
                    markers.append(item)
                    break  # a flush: write what came before it now
                batch.append(item)
                if len(batch) >= BATCH_SIZE:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = get(timeout=remaining)
                except queue.Empty:
                    break
            if stop:
                # Anything put after the stop marker by a racing request is written too.
                while True:
                    try:
                        late = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(late, threading.Event):
                        markers.append(late)
                    elif late is not None:
                        batch.append(late)
            self._write(batch)
            for marker in markers:
                marker.set()

    def _write(self, batch: list[_Pending]) -> None:
        for start in range(0, len(batch), BATCH_SIZE):
            part = batch[start : start + BATCH_SIZE]
            try:
                self.store.write([_row(p) for p in part])
            except Exception:
                self.failed += len(part)
                logger.exception(
                    "prediction log: writing %d record(s) to %s failed",
                    len(part),
                    self.store.display_url,
                )
            else:
                self.written += len(part)


def _row(p: _Pending) -> dict[str, Any]:
    """A queued record as a table row (on the writer thread: the request has gone)."""
    ts, model, version, latency_ms, request_id, signature, inputs, outputs = p
    names = signature.feature_names
    rows = [dict(zip(names, values, strict=True)) for values in inputs.tolist()]
    return {
        "ts": ts,
        "model": model,
        "version": version,
        "request_id": request_id[:128],
        "latency_ms": latency_ms,
        "n_rows": len(rows),
        "inputs": rows,
        "outputs": output_columns(outputs),
    }


def output_columns(outputs: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Each output as one list with a value per row, named as the runtime names them
    (``predict``, ``predict_proba``), from runtime outputs or a seed protocol answer."""
    columns: dict[str, list[Any]]
    if outputs.get("format") == "columns":  # the seed's batch answer, one array per field
        columns = {PREDICT_OUTPUT: np.asarray(outputs["predictions"]).tolist()}
        by_class = outputs.get("probabilities")
        if by_class:
            columns[PROBA_OUTPUT] = np.column_stack(list(by_class.values())).tolist()
        return columns
    if "predictions" in outputs:  # the seed's batch answer
        items = outputs["predictions"]
        columns = {PREDICT_OUTPUT: [i["prediction"] for i in items]}
        if items and items[0].get("probability") is not None:
            columns[PROBA_OUTPUT] = [i["probability"] for i in items]
        return columns
    if "prediction" in outputs:  # the seed's one answer
        columns = {PREDICT_OUTPUT: [outputs["prediction"]]}
        if outputs.get("probability") is not None:
            columns[PROBA_OUTPUT] = [outputs["probability"]]
        return columns
    return {name: np.asarray(value).tolist() for name, value in outputs.items()}


def create_prediction_log(
    settings: ServerSettings, request_id: Callable[[], str] = new_request_id
) -> PredictionLog | None:
    """The log ``settings`` ask for, or ``None`` when ``MODELSERVE_PREDICTION_LOG`` is unset.

    The writer thread starts with the first record, in the process that serves it.

    :raises ConfigError: the URL, table name or installed packages do not fit.
    """
    if not settings.prediction_log:
        return None
    store = PredictionStore(settings.prediction_log, settings.prediction_log_table)
    logger.info(
        "prediction log: %s (table %s), sampling %.0f%%",
        store.display_url,
        store.table.name,
        settings.prediction_log_sample * 100,
    )
    return PredictionLog(
        store,
        sample=settings.prediction_log_sample,
        queue_size=settings.prediction_log_queue,
        flush_seconds=settings.prediction_log_flush_seconds,
        request_id=request_id,
    )
