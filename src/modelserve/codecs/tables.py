"""Arrow IPC stream, Parquet and NumPy ``.npy`` bodies to and from numpy columns.

Requests arrive as a table of named columns (Arrow, Parquet) or one 2-D number array in
feature order (``.npy``); answers go back as a table with one column per output. This module
reads and writes the formats only: it knows neither models nor signatures (the seed codec
checks the columns it returns against a model's features).

pyarrow is the optional ``arrow`` extra. It is imported once, when the app is built
(:func:`load_pyarrow`), never per request; without it Arrow and Parquet bodies get a 415
that names the extra, and ``.npy`` bodies still work.
"""

from __future__ import annotations

import ast
import io
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..errors import PayloadTooLarge
from ..errors import UnsupportedMediaType
from ..types import Tensor

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
NPY = "application/x-npy"
#: Content types a batch may be sent in, besides JSON; ``application/x-parquet`` is the
#: older name of Parquet's type, still sent by many tools.
TABLE_TYPES = {
    ARROW: ARROW,
    PARQUET: PARQUET,
    "application/x-parquet": PARQUET,
    NPY: NPY,
}
#: What an answer can be written as, JSON first (the default).
ANSWER_TYPES = (JSON, ARROW, PARQUET, "application/x-parquet", NPY)

_NPY_MAGIC = b"\x93NUMPY"


@cache
def load_pyarrow() -> Any | None:
    """Import pyarrow (with its IPC and Parquet modules) once; ``None`` when not installed."""
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        return None
    return pyarrow


def _pyarrow(content_type: str) -> Any:
    pa = load_pyarrow()
    if pa is None:
        raise UnsupportedMediaType(
            f"{content_type} bodies need pyarrow: pip install 'modelserve[arrow]'",
            [{"path": "Content-Type", "message": f"{content_type} needs the arrow extra"}],
        )
    return pa


# -- requests ---------------------------------------------------------------------------------


def read_table(
    body: bytes, content_type: str, max_rows: int
) -> dict[str, Tensor | ForeignColumn] | Tensor:
    """Decode a batch body: named columns (Arrow, Parquet) or a 2-D array (``.npy``).

    :param content_type: one of :data:`TABLE_TYPES` (already normalised by the caller).
    :param max_rows: more rows than this is a 413, found before the data is decoded where
        the format says how many rows follow.
    :raises InvalidInput: a body that is not valid in its format, or has no rows.
    :raises PayloadTooLarge: more than ``max_rows`` rows.
    :raises UnsupportedMediaType: Arrow or Parquet without pyarrow installed.
    """
    if not body:
        raise InvalidInput(f"The request body is empty; send a {content_type} body")
    if content_type == NPY:
        return _read_npy(body, max_rows)
    pa = _pyarrow(content_type)
    try:
        if content_type == ARROW:
            table = _read_arrow(pa, body, max_rows)
        else:
            table = _read_parquet(pa, body, max_rows)
        # In the try too: a column name that is not UTF-8 only fails when it is read
        # (UnicodeDecodeError, a ValueError).
        return _columns(pa, table)
    except (pa.ArrowException, OSError, ValueError) as exc:  # truncated bodies: OSError
        name = "Arrow IPC stream" if content_type == ARROW else "Parquet file"
        raise InvalidInput(f"The body is not a valid {name}: {exc}") from None


def _too_many(rows: int, max_rows: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{rows} rows is more than the {max_rows} allowed per request (MODELSERVE_MAX_BATCH_ROWS)"
    )


def _read_arrow(pa: Any, body: bytes, max_rows: int) -> Any:
    reader = pa.ipc.open_stream(pa.py_buffer(body))
    batches = []
    rows = 0
    # Batch by batch, so a stream of (compressed) batches stops at the row limit instead of
    # being inflated whole first.
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            raise _too_many(rows, max_rows)
        # The IPC reader trusts the buffers it is sent: offsets past the data or strings
        # that are not UTF-8 are found here (ArrowInvalid), not when a column is read.
        batch.validate(full=True)
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _read_parquet(pa: Any, body: bytes, max_rows: int) -> Any:
    parquet = pa.parquet.ParquetFile(pa.BufferReader(body))
    rows = parquet.metadata.num_rows
    if rows > max_rows:
        raise _too_many(rows, max_rows)
    return parquet.read()


def _columns(pa: Any, table: Any) -> dict[str, Tensor | ForeignColumn]:
    """Each column as one numpy array; nulls are kept as ``None`` (object arrays) so that
    the caller can name the row, strings as object arrays of ``str``."""
    names = table.column_names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(
            f"The table has column(s) {', '.join(twice)} more than once",
            [{"path": n, "message": "is a column more than once"} for n in twice],
        )
    columns: dict[str, Tensor | ForeignColumn] = {}
    for name in names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):  # pandas categoricals
            column = column.cast(column.type.value_type)
        kind = column.type
        values: Tensor | ForeignColumn
        if column.null_count:
            values = _with_nulls(column)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = column.to_numpy()
        elif pa.types.is_boolean(kind):
            values = column.to_numpy(zero_copy_only=False)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
        else:
            values = ForeignColumn(str(kind))
        columns[name] = values
    if not columns or table.num_rows == 0:
        raise InvalidInput(
            "The table has no rows; send at least one",
            [{"path": "(root)", "message": "has no rows"}],
        )
    return columns


def _with_nulls(column: Any) -> Tensor:
    values: Tensor = np.empty(len(column), dtype=object)
    values[:] = column.to_pylist()
    return values


@dataclass(frozen=True)
class ForeignColumn:
    """A column of a type no feature takes (booleans, dates, lists...), kept by its Arrow
    type name so that the seed codec can say what was sent."""

    arrow_type: str


def _read_npy(body: bytes, max_rows: int) -> Tensor:
    """A 2-D number array from ``.npy`` bytes, without copying its data and without pickle.

    The header is checked against the body's length before any array is made, so a header
    that claims a huge shape is a 400, not an allocation.
    """
    if not body.startswith(_NPY_MAGIC) or len(body) < 10:
        raise InvalidInput("The body is not a .npy file (it does not start with \\x93NUMPY)")
    major = body[6]
    if major == 1:
        length, start = int.from_bytes(body[8:10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(body[8:12], "little"), 12
    else:
        raise InvalidInput(f"The body is a .npy file of format version {major}, not 1, 2 or 3")
    try:
        header = ast.literal_eval(body[start : start + length].decode("latin-1"))
        dtype = np.dtype(header["descr"])
        shape = tuple(header["shape"])
        fortran = bool(header["fortran_order"])
    except (ValueError, SyntaxError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The .npy header is not valid: {exc}") from None
    if dtype.kind not in "iuf" or dtype.hasobject:
        raise InvalidInput(
            f"The .npy array has dtype {dtype}; send a float or integer array "
            "(rows x features, in the model's feature order)"
        )
    if len(shape) != 2 or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(
            f"The .npy array has shape {list(shape)}; send a 2-D array (rows x features)"
        )
    if shape[0] > max_rows:
        raise _too_many(shape[0], max_rows)
    data = memoryview(body)[start + length :]
    if len(data) != shape[0] * shape[1] * dtype.itemsize:
        raise InvalidInput(
            f"The .npy array of shape {list(shape)} and dtype {dtype} needs "
            f"{shape[0] * shape[1] * dtype.itemsize} bytes of data, the body has {len(data)}"
        )
    if shape[0] == 0:
        raise InvalidInput(
            "The array has no rows; send at least one",
            [{"path": "(root)", "message": "has no rows"}],
        )
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


# -- answers ----------------------------------------------------------------------------------


def write_table(
    columns: dict[str, Any], content_type: str, metadata: dict[str, str] | None = None
) -> bytes:
    """Write named answer columns (arrays or lists, one value per row) in ``content_type``.

    Arrow and Parquet carry every column and ``metadata`` (in the schema); ``.npy`` carries
    the first column only (the predictions), as a 1-D array.
    """
    content_type = TABLE_TYPES.get(content_type, content_type)
    if content_type == NPY:
        first = np.asarray(next(iter(columns.values())))
        if first.dtype == object:
            first = first.astype(str)
        out = io.BytesIO()
        np.save(out, first, allow_pickle=False)
        return out.getvalue()
    pa = _pyarrow(content_type)
    table = pa.table(
        {name: pa.array(_plain(values)) for name, values in columns.items()}, metadata=metadata
    )
    sink = pa.BufferOutputStream()
    if content_type == ARROW:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        pa.parquet.write_table(table, sink)
    result: bytes = sink.getvalue().to_pybytes()
    return result


def _plain(values: Any) -> Any:
    # Object arrays (string labels) go in as lists; pyarrow infers their type from values.
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values.tolist()
    return values
