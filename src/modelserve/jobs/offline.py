"""Score a whole file in this process: ``modelserve predict MODEL rows.csv -o out.csv``.

Three stages run at once, each on its own thread, joined by queues of at most
:data:`QUEUE_CHUNKS` chunks (so memory stays a few chunks whatever the file's size): the
reader parses chunk ``n + 1`` while the model scores chunk ``n`` and the writer writes chunk
``n - 1``. Parsing, the model call and the writers release the GIL for most of their work,
so on two cores the file is scored at close to the model's own speed.

The output appears under its name only once complete (it is written beside it and renamed);
rejected rows go to an errors file of JSON lines (``row``, ``id``, ``reason``).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any

import pandas as pd

from .formats import InputFormat
from .formats import OutputFormat
from .formats import ParquetAppender
from .formats import write_frame
from .scoring import ChunkScorer
from .scoring import RowError
from .scoring import ScoredChunk
from .scoring import error_lines

#: Chunks waiting between two stages, at most.
QUEUE_CHUNKS = 2
#: How often a blocked stage looks whether the others have stopped, in seconds.
_POLL = 0.1


@dataclass(frozen=True)
class FileSummary:
    """What scoring a file did."""

    rows: int
    scored: int
    errors: int
    seconds: float
    output: Path
    errors_path: Path | None
    #: True when the error budget ran out: the output was not written.
    over_budget: bool = False

    @property
    def rate(self) -> float:
        """Input rows per second (scored and rejected)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line report the command line prints."""
        text = (
            f"{self.rows:,} rows: {self.scored:,} scored, {self.errors:,} rejected in "
            f"{self.seconds:.2f} s ({self.rate:,.0f} rows/s)"
        )
        if not self.over_budget:
            text += f" -> {self.output}"
        if self.errors_path is not None and self.errors:
            text += f"; errors in {self.errors_path}"
        return text


class _Stop(Exception):
    """Another stage failed or stopped: this one ends quietly."""


class _Pipe:
    """A bounded queue whose ends give up once the pipeline is stopping."""

    def __init__(self, stopping: threading.Event) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_CHUNKS)
        self._stopping = stopping

    def put(self, item: Any) -> None:
        while True:
            if self._stopping.is_set():
                raise _Stop
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            try:
                return self._queue.get(timeout=_POLL)
            except queue.Empty:
                if self._stopping.is_set():
                    raise _Stop from None


_END = object()


def score_file(
    scorer: ChunkScorer,
    source: Path,
    fmt: InputFormat,
    target: Path,
    out_fmt: OutputFormat,
    *,
    chunk_rows: int = 10_000,
    errors_path: Path | None = None,
    max_errors: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> FileSummary:
    """Score every row of ``source`` into ``target``.

    :param errors_path: where rejected rows go (JSON lines); default ``<target>.errors.jsonl``.
        Written only when a row is rejected (an older one is removed first).
    :param max_errors: stop, and write no output, once more rows than this are rejected;
        ``None``: no limit.
    :param progress: called with the number of input rows each chunk held, once it is done.
    :raises ModelServeError: the file is malformed or lacks a feature column.
    """
    errors_path = errors_path or target.with_name(target.name + ".errors.jsonl")
    errors_path.unlink(missing_ok=True)
    started = time.perf_counter()
    stopping = threading.Event()
    chunks, scored = _Pipe(stopping), _Pipe(stopping)
    failures: list[BaseException] = []
    totals = {"rows": 0, "scored": 0, "errors": 0}
    over_budget = False

    def read() -> None:
        try:
            for n, chunk in enumerate(scorer.read(source, fmt, chunk_rows)):
                chunks.put((n * chunk_rows, chunk))
            chunks.put(_END)
        except _Stop:
            pass
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            failures.append(exc)
            stopping.set()

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    writer = _Writer(os.fdopen(fd, "wb"), out_fmt, errors_path)

    def write() -> None:
        try:
            for item in _until_end(scored):
                writer.write(item)
        except _Stop:
            pass
        except BaseException as exc:
            failures.append(exc)
            stopping.set()

    threads = [
        threading.Thread(target=read, name="score-file-read", daemon=True),
        threading.Thread(target=write, name="score-file-write", daemon=True),
    ]
    for thread in threads:
        thread.start()
    done = False
    try:
        for first_row, chunk in _until_end(chunks):
            result = scorer.score(chunk, first_row)
            totals["rows"] += len(chunk)
            totals["scored"] += len(result.predictions)
            totals["errors"] += len(result.errors)
            scored.put(result)
            if progress is not None:
                progress(len(chunk))
            if max_errors is not None and totals["errors"] > max_errors:
                over_budget = True
                break
        # The writer still writes what it holds (the errors file explains the stop); the
        # reader, if still reading, is stopped.
        scored.put(_END)
        done = True
    except _Stop:
        pass  # a stage failed: ``failures`` says how
    finally:
        if over_budget or not done:
            stopping.set()
        for thread in threads:
            thread.join()
        complete = done and not failures and not over_budget
        try:
            if complete and not writer.wrote_answers:
                writer.write_answers(_empty_answers(scorer))
        finally:
            writer.close()
            if not complete:
                tmp.unlink(missing_ok=True)
    if failures:
        raise failures[0]
    if complete:
        os.replace(tmp, target)
    return FileSummary(
        rows=totals["rows"],
        scored=totals["scored"],
        errors=totals["errors"],
        seconds=time.perf_counter() - started,
        output=target,
        errors_path=errors_path if writer.errors_written else None,
        over_budget=over_budget,
    )


def _until_end(pipe: _Pipe) -> Iterator[Any]:
    while (item := pipe.get()) is not _END:
        yield item


def _empty_answers(scorer: ChunkScorer) -> pd.DataFrame:
    columns = ([scorer.id_column] if scorer.id_column else []) + ["row"]
    return pd.DataFrame(columns=columns + scorer.prediction_columns)


class _Writer:
    """Appends each chunk's answers to the output and its rejected rows to the errors file.

    Chunks without a valid row are not written (a Parquet file's schema is its first
    frame's, and an empty frame has no types); the caller writes an empty frame at the end
    when no chunk had one.
    """

    def __init__(self, fh: IO[bytes], fmt: OutputFormat, errors_path: Path) -> None:
        self._fh = fh
        self._fmt = fmt
        self._parquet = ParquetAppender(fh) if fmt == "parquet" else None
        self._errors_path = errors_path
        self._errors: IO[bytes] | None = None
        self.wrote_answers = False
        self.errors_written = False

    def write(self, result: ScoredChunk) -> None:
        if len(result.predictions):
            self.write_answers(result.predictions)
        if result.errors:
            self._write_errors(result.errors)

    def write_answers(self, frame: pd.DataFrame) -> None:
        if self._parquet is not None:
            self._parquet.write(frame)
        else:
            write_frame(self._fh, self._fmt, frame, header=not self.wrote_answers)
        self.wrote_answers = True

    def _write_errors(self, errors: list[RowError]) -> None:
        if self._errors is None:
            self._errors = self._errors_path.open("wb")
            self.errors_written = True
        self._errors.write(error_lines(errors))

    def close(self) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
        finally:
            self._fh.close()
            if self._errors is not None:
                self._errors.close()
