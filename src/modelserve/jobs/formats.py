"""The file formats batch scoring reads and writes, a chunk of rows at a time.

CSV, JSON lines and Parquet are read as :class:`pandas.DataFrame` chunks of a fixed number of
rows, so that chunk ``n`` always holds rows ``n * chunk_rows`` onwards whatever the file's
layout: a job that stopped after chunk ``n`` resumes at chunk ``n + 1`` of the same file. No
reader ever holds more than one chunk (plus the format's own read buffer) in memory.

CSV has no types: a cell that reads as a number is a number, anything else is text, and an
empty cell is a missing value (``NA`` or ``null`` are text, which a category may well be).
Columns named in ``text_columns`` (a model's string features) are always read as text, so a
category ``"01"`` is not turned into the number 1. JSON lines and Parquet keep their own types.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from typing import TYPE_CHECKING
from typing import Literal

import numpy as np
import orjson
import pandas as pd

from ..codecs._wording import malformed
from ..errors import InvalidInput
from ..errors import UnsupportedMediaType

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.parquet as pq

InputFormat = Literal["csv", "jsonl", "parquet"]
OutputFormat = Literal["csv", "jsonl", "parquet"]

FORMATS: tuple[InputFormat, ...] = ("csv", "jsonl", "parquet")

_EXTENSIONS: dict[str, InputFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CONTENT_TYPES: dict[str, InputFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
}
#: Bytes read at a time when counting or copying files.
_BLOCK = 1 << 20


class UnsupportedFormat(UnsupportedMediaType):
    """A file whose format batch scoring does not read (or write)."""


class MalformedFile(InvalidInput):
    """A file that is not valid in its format (a broken CSV, a line that is not JSON)."""


def detect_format(filename: str | None, content_type: str | None) -> InputFormat:
    """The format of an upload or a path: by its extension, else by its content type.

    :raises UnsupportedFormat: neither names CSV, JSON lines or Parquet.
    """
    if filename:
        found = _EXTENSIONS.get(Path(filename).suffix.lower())
        if found is not None:
            return found
    if content_type:
        found = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if found is not None:
            return found
    what = ", ".join(
        f"{label} {value!r}"
        for label, value in (("file name", filename), ("content type", content_type))
        if value
    )
    raise UnsupportedFormat(
        f"Cannot tell the file's format from its {what or 'name or content type'}: batch "
        "scoring reads CSV (.csv, text/csv), JSON lines (.jsonl, .ndjson, application/x-ndjson) "
        "and Parquet (.parquet, application/vnd.apache.parquet)"
    )


def output_format(filename: str) -> OutputFormat:
    """The format an output path's extension names.

    :raises UnsupportedFormat: for any other extension.
    """
    found = _EXTENSIONS.get(Path(filename).suffix.lower())
    if found is None:
        raise UnsupportedFormat(
            f"Cannot write {filename!r}: name the output .csv, .jsonl or .parquet"
        )
    return found


# -- reading ------------------------------------------------------------------------------


def read_chunks(
    path: Path,
    fmt: InputFormat,
    chunk_rows: int,
    start_chunk: int = 0,
    text_columns: Collection[str] = (),
) -> Iterator[pd.DataFrame]:
    """The file's rows as DataFrames of ``chunk_rows`` rows (the last may be shorter), in file
    order, from chunk number ``start_chunk`` on.

    :param text_columns: CSV columns always read as text (string features).
    :raises MalformedFile: the file is not valid ``fmt`` (raised when the bad part is read).
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    if fmt == "csv":
        return _csv_chunks(path, chunk_rows, start_chunk, text_columns)
    if fmt == "jsonl":
        return _jsonl_chunks(path, chunk_rows, start_chunk)
    if fmt == "parquet":
        return _parquet_chunks(path, chunk_rows, start_chunk)
    raise UnsupportedFormat(f"Batch scoring does not read {fmt!r} files")


def _csv_chunks(
    path: Path, chunk_rows: int, start_chunk: int, text_columns: Collection[str]
) -> Iterator[pd.DataFrame]:
    skip = start_chunk * chunk_rows
    try:
        reader = pd.read_csv(
            path,
            chunksize=chunk_rows,
            keep_default_na=False,
            na_values=[""],
            dtype=dict.fromkeys(text_columns, str) or None,
            # Rows, not lines: a quoted field may hold a newline. Row 0 is the header.
            skiprows=(lambda i: 0 < i <= skip) if skip else None,
        )
        with reader:
            for chunk in reader:
                if len(chunk):  # every row skipped: the reader still yields one empty frame
                    yield _numbers_in_text(chunk, text_columns)
    except pd.errors.EmptyDataError:
        if skip:
            return
        raise MalformedFile(
            f"{path.name} is empty: a CSV needs a header row naming the columns"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise MalformedFile(f"{path.name} is not a valid CSV file: {_first_line(exc)}") from None


def _numbers_in_text(chunk: pd.DataFrame, text_columns: Collection[str]) -> pd.DataFrame:
    """Make cells that read as numbers numbers in columns pandas left as text because some
    other cell is not a number (so only that cell is rejected, not its whole column)."""
    for name in chunk.columns:
        column = chunk[name]
        if name in text_columns or not (
            pd.api.types.is_string_dtype(column) or column.dtype == object
        ):
            continue
        numbers = pd.to_numeric(column, errors="coerce")
        parsed = numbers.notna().to_numpy()
        if parsed.any():
            values = column.to_numpy(dtype=object, na_value=np.nan)
            values[parsed] = numbers.to_numpy()[parsed]
            chunk[name] = pd.Series(values, index=chunk.index, dtype=object)
    return chunk


def _jsonl_chunks(path: Path, chunk_rows: int, start_chunk: int) -> Iterator[pd.DataFrame]:
    skip = start_chunk * chunk_rows
    rows: list[dict[str, object]] = []
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                message = malformed(exc).replace(" at line 1 column ", " at column ")
                raise MalformedFile(f"{path.name} line {line_no}: {message}") from None
            if not isinstance(row, dict):
                raise MalformedFile(
                    f"{path.name} line {line_no}: each line must be a JSON object of named features"
                )
            rows.append(row)
            if len(rows) == chunk_rows:
                yield pd.DataFrame.from_records(rows)
                rows = []
    if rows:
        yield pd.DataFrame.from_records(rows)


def _parquet_chunks(path: Path, chunk_rows: int, start_chunk: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise MalformedFile(f"{path.name} is not a valid Parquet file: {exc}") from None
    with pf:
        # Start at the row group holding the first row wanted; cut the rows before it off.
        skip = start_chunk * chunk_rows
        first_group = 0
        meta = pf.metadata
        while first_group < meta.num_row_groups and skip >= meta.row_group(first_group).num_rows:
            skip -= meta.row_group(first_group).num_rows
            first_group += 1
        pending: list[pa.RecordBatch] = []
        held = 0
        groups = list(range(first_group, meta.num_row_groups))
        try:
            batches = pf.iter_batches(batch_size=chunk_rows, row_groups=groups) if groups else []
            for batch in batches:
                if skip:
                    cut = min(skip, batch.num_rows)
                    batch, skip = batch.slice(cut), skip - cut
                pending.append(batch)
                held += batch.num_rows
                while held >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield table.slice(0, chunk_rows).to_pandas()
                    rest = table.slice(chunk_rows)
                    pending, held = rest.to_batches(), rest.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise MalformedFile(f"{path.name} is not a valid Parquet file: {exc}") from None
        if held:
            yield pa.Table.from_batches(pending).to_pandas()


def count_rows(path: Path, fmt: InputFormat) -> int | None:
    """The file's number of data rows, when it can be told without parsing it: exact for
    Parquet (its footer) and JSON lines (non-blank lines); for CSV, the lines after the
    header (an upper bound when a quoted field holds a newline). ``None`` when unknown."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt == "jsonl":
            with path.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        if fmt == "csv":
            lines, last = 0, b"\n"
            with path.open("rb") as fh:
                while block := fh.read(_BLOCK):
                    lines += block.count(b"\n")
                    last = block[-1:]
            lines += last != b"\n"  # a last line without its newline
            return max(lines - 1, 0)
    except (OSError, ValueError):
        return None
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- writing ------------------------------------------------------------------------------


def write_chunk(path: Path, fmt: OutputFormat, frame: pd.DataFrame) -> None:
    """Write one chunk's results to ``path`` atomically: into a temporary file beside it,
    then renamed over it, so a retried chunk replaces its file and a crash leaves no half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(fh, fmt, frame)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_frame(fh: IO[bytes], fmt: OutputFormat, frame: pd.DataFrame, header: bool = True) -> None:
    """Write ``frame`` to an open binary file (appending: a CSV writes its header only when
    asked). Parquet cannot be appended to this way: use :class:`ParquetAppender`."""
    if fmt == "csv":
        _write_csv(fh, frame, header)
    elif fmt == "jsonl":
        fh.write(_jsonl_bytes(frame))
    else:
        raise UnsupportedFormat(f"Batch scoring does not append {fmt!r} files")


def _write_csv(fh: IO[bytes], frame: pd.DataFrame, header: bool) -> None:
    """Arrow's CSV writer (about eight times pandas', every float digit kept), with the
    header written by pandas so that names are quoted only when they must be; pandas' own
    writer for columns Arrow cannot type (an id column of mixed types)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError):
        frame.to_csv(fh, index=False, header=header, lineterminator="\n")
        return
    if header:
        fh.write(frame.iloc[:0].to_csv(index=False, lineterminator="\n").encode())
    if len(frame):
        options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
        pa_csv.write_csv(table, fh, options)


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table; a column Arrow cannot type (an id column mixing numbers
    and text, as JSON lines may) is written as text, missing values kept missing."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError):
        fixed = frame.copy()
        for name in fixed.columns:
            if fixed[name].dtype == object:
                fixed[name] = fixed[name].map(lambda v: v if v is None else str(v))
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _write(fh: IO[bytes], fmt: OutputFormat, frame: pd.DataFrame) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(arrow_table(frame), fh)
    else:
        write_frame(fh, fmt, frame)


def _jsonl_bytes(frame: pd.DataFrame) -> bytes:
    """One JSON object per row; missing values are ``null`` and numbers keep every digit
    (pandas' own ``to_json`` rounds floats to 10 digits)."""
    if frame.empty:
        return b""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    dumps = orjson.dumps
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return b"".join(dumps(r, option=option) for r in records)


class ParquetAppender:
    """Write DataFrames as the row groups of one Parquet file, as they come.

    The schema is the first frame's; later frames are cast to it (a chunk whose id column
    was all missing is still written with the first chunk's types).
    """

    def __init__(self, sink: str | Path | IO[bytes]) -> None:
        self._sink = sink
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = arrow_table(frame)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._sink, table.schema)
        self._writer.write_table(_cast(table, self._writer.schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema):
        return table
    return table.select(schema.names).cast(schema)


# -- streaming a whole result ---------------------------------------------------------------


def stream_chunks(paths: Sequence[Path], fmt: OutputFormat) -> Iterator[bytes]:
    """One valid ``fmt`` file made of the chunk files ``paths``, in order, as byte blocks:
    a CSV's header once, JSON lines one after the other, Parquet rewritten as one file
    (row group by row group), never the whole result in memory."""
    if fmt == "csv":
        yield from _stream_csv(paths)
    elif fmt == "jsonl":
        for path in paths:
            yield from _blocks(path, 0)
    elif fmt == "parquet":
        yield from _stream_parquet(paths)
    else:
        raise UnsupportedFormat(f"Batch scoring does not write {fmt!r} files")


def _blocks(path: Path, offset: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        while block := fh.read(_BLOCK):
            yield block


def _stream_csv(paths: Sequence[Path]) -> Iterator[bytes]:
    for i, path in enumerate(paths):
        yield from _blocks(path, 0 if i == 0 else _header_end(path))


def _header_end(path: Path) -> int:
    """The offset just past a CSV file's header row (a quoted name may hold a newline)."""
    quoted = False
    offset = 0
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            for i, byte in enumerate(block):
                if byte == 0x22:  # '"'
                    quoted = not quoted
                elif byte == 0x0A and not quoted:
                    return offset + i + 1
            offset += len(block)
    return offset


class _Drain:
    """A write-only file that keeps what is written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _stream_parquet(paths: Sequence[Path]) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in paths]
    if not schemas:
        return
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    drain = _Drain()
    writer = pq.ParquetWriter(drain, schema)
    for path in paths:
        with pq.ParquetFile(path) as pf:
            for group in range(pf.metadata.num_row_groups):
                writer.write_table(_cast(pf.read_row_group(group), schema))
                if data := drain.take():
                    yield data
    writer.close()
    if data := drain.take():
        yield data
