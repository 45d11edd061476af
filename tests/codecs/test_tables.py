"""Arrow, Parquet and .npy bodies: reading, writing, and what malformed ones get."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from modelserve.codecs import tables
from modelserve.errors import InvalidInput
from modelserve.errors import PayloadTooLarge
from modelserve.errors import UnsupportedMediaType


def arrow_bytes(table: Any) -> bytes:
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def parquet_bytes(table: Any) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def npy_bytes(x: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, x)
    return out.getvalue()


TABLE = pa.table(
    {
        "a": [1.5, 2.5, None],
        "b": [1, 2, 3],
        "city": pa.array(["Oslo", "Bergen", "Oslo"]).dictionary_encode(),
        "flag": [True, False, True],
        "when": pa.array([1, 2, 3], pa.date32()),
    }
)


@pytest.mark.parametrize("write", [arrow_bytes, parquet_bytes])
def test_columns_come_back_as_numpy_with_nulls_kept(write: Any) -> None:
    content_type = tables.ARROW if write is arrow_bytes else tables.PARQUET
    columns = tables.read_table(write(TABLE), content_type, 10)
    assert isinstance(columns, dict)
    assert columns["a"].tolist() == [1.5, 2.5, None]  # an object array: the null is kept
    assert columns["b"].dtype == np.int64 and columns["b"].tolist() == [1, 2, 3]
    assert columns["city"].tolist() == ["Oslo", "Bergen", "Oslo"]  # categorical decoded
    assert columns["flag"].tolist() == [True, False, True]
    assert columns["when"] == tables.ForeignColumn("date32[day]")


def test_npy_is_read_without_copy_in_both_orders() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.array_equal(tables.read_table(npy_bytes(x), tables.NPY, 10), x)
    assert np.array_equal(tables.read_table(npy_bytes(np.asfortranarray(x)), tables.NPY, 10), x)


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"not arrow at all", tables.ARROW, "not a valid Arrow IPC stream"),
        (b"PAR1 nope", tables.PARQUET, "not a valid Parquet file"),
        (arrow_bytes(TABLE)[:-40], tables.ARROW, "not a valid Arrow IPC stream"),
        (b"", tables.NPY, "empty"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}xxxx", tables.NPY, "header is not valid"),
        (npy_bytes(np.zeros(3)), tables.NPY, "send a 2-D array"),
        (npy_bytes(np.zeros((2, 2), dtype=bool)), tables.NPY, "dtype bool"),
        (npy_bytes(np.array([["a"]])), tables.NPY, "dtype <U1"),
        (npy_bytes(np.zeros((2, 2)))[:-8], tables.NPY, "needs 32 bytes of data, the body has 24"),
        (npy_bytes(np.zeros((0, 2))), tables.NPY, "no rows"),
        (arrow_bytes(pa.table({"a": pa.array([], pa.float64())})), tables.ARROW, "no rows"),
        (b"[[1, 2]]", tables.NPY, "not a .npy file"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_malformed_bodies_are_400_saying_what_is_wrong(
    body: bytes, content_type: str, says: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        tables.read_table(body, content_type, 10)
    assert type(info.value) is InvalidInput
    assert says in str(info.value)


def _strings(offsets: tuple[int, int, int], data: bytes) -> bytes:
    """An Arrow stream of the strings ``abc``, ``defgh`` with its offsets and data bytes
    replaced (pyarrow will not write bad buffers, a client's bytes may hold anything)."""
    body = arrow_bytes(pa.table({"s": ["abc", "defgh"]}))
    valid = np.asarray([0, 3, 8], "<i4").tobytes()
    assert body.count(valid) == 1 and body.count(b"abcdefgh") == 1
    body = body.replace(valid, np.asarray(offsets, "<i4").tobytes())
    return body.replace(b"abcdefgh", data)


def corrupt_arrow_bodies() -> dict[str, bytes]:
    """Arrow streams that parse but hold bad data; reading their columns unchecked raised
    UnicodeDecodeError (a 500), or crashed the worker (offsets past the data)."""
    name = arrow_bytes(pa.table({"colum\u00e9": [1.0]}))
    return {
        "a column name that is not UTF-8": name.replace("colum\u00e9".encode(), b"column\xff"),
        "offsets past the data": _strings((0, 3, 1 << 30), b"abcdefgh"),
        "offsets going back": _strings((0, 6, 2), b"abcdefgh"),
        "strings that are not UTF-8": _strings((0, 3, 8), b"abc\xff\xfe\xfd\xfc\xfb"),
    }


@pytest.mark.parametrize("case", list(corrupt_arrow_bodies()))
def test_arrow_streams_with_bad_data_are_400_not_a_crash(case: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid Arrow IPC stream") as info:
        tables.read_table(corrupt_arrow_bodies()[case], tables.ARROW, 10)
    assert type(info.value) is InvalidInput


def test_a_header_claiming_a_huge_shape_is_refused_before_any_allocation() -> None:
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (5, 1000000000000), }"
    header += b" " * (118 - len(header)) + b"\n"
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 80
    with pytest.raises(InvalidInput, match="needs 40000000000000 bytes of data"):
        tables.read_table(body, tables.NPY, 10)


@pytest.mark.parametrize("content_type", [tables.ARROW, tables.PARQUET, tables.NPY])
def test_more_rows_than_allowed_is_413(content_type: str) -> None:
    x = np.zeros((11, 2))
    table = pa.table({"a": x[:, 0], "b": x[:, 1]})
    body = {
        tables.ARROW: arrow_bytes(table),
        tables.PARQUET: parquet_bytes(table),
        tables.NPY: npy_bytes(x),
    }[content_type]
    with pytest.raises(PayloadTooLarge, match="11 rows is more than the 10 allowed"):
        tables.read_table(body, content_type, 10)


def test_an_arrow_stream_stops_at_the_row_limit_batch_by_batch() -> None:
    batch = pa.record_batch({"a": np.zeros(6)})
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, batch.schema) as writer:
        for _ in range(3):
            writer.write_batch(batch)
    with pytest.raises(PayloadTooLarge, match="12 rows"):  # the second batch already
        tables.read_table(sink.getvalue().to_pybytes(), tables.ARROW, 10)


def test_without_pyarrow_tables_are_415_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "load_pyarrow", lambda: None)
    with pytest.raises(UnsupportedMediaType, match=r"pip install 'modelserve\[arrow\]'"):
        tables.read_table(arrow_bytes(TABLE), tables.ARROW, 10)
    with pytest.raises(UnsupportedMediaType, match="arrow"):
        tables.write_table({"prediction": [1]}, tables.PARQUET)
    # .npy needs no pyarrow
    x = tables.read_table(npy_bytes(np.ones((1, 2))), tables.NPY, 10)
    assert isinstance(x, np.ndarray) and x.shape == (1, 2)


def test_answers_are_written_in_each_format() -> None:
    columns = {"prediction": np.array([0, 1]), "class_name": ["no", "yes"]}
    arrow = tables.write_table(columns, tables.ARROW, {"model": "m"})
    table = pyarrow.ipc.open_stream(pa.py_buffer(arrow)).read_all()
    assert table.to_pydict() == {"prediction": [0, 1], "class_name": ["no", "yes"]}
    assert table.schema.metadata == {b"model": b"m"}
    parquet = pq.read_table(pa.BufferReader(tables.write_table(columns, tables.PARQUET)))
    assert parquet.to_pydict() == table.to_pydict()
    npy = np.load(io.BytesIO(tables.write_table(columns, tables.NPY)))
    assert npy.tolist() == [0, 1]  # .npy carries the predictions only
    labels = {"prediction": np.array(["a", "b"], dtype=object)}
    assert np.load(io.BytesIO(tables.write_table(labels, tables.NPY))).tolist() == ["a", "b"]
