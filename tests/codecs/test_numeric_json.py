"""Number-row batches parsed straight into an array: the same array as orjson's path, and
``None`` (so that path, with its error messages, decides) for anything it cannot prove."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from modelserve.codecs.numeric_json import NumericRows
from modelserve.codecs.seed import SeedCodec
from modelserve.codecs.seed import parse_json
from modelserve.errors import InvalidInput
from modelserve.errors import PayloadTooLarge

from .test_seed import SIG

MAX_DEPTH = 32
_STRUCTURE = frozenset("[],")


def codec(max_rows: int = 1000) -> SeedCodec:
    return SeedCodec(SIG, allow_extra=False, max_rows=max_rows)


def slow(c: SeedCodec, body: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """What the orjson path makes of the body: the array and the document."""
    payload = parse_json(body, MAX_DEPTH, measure=False)
    return c.decode_batch(payload, body, MAX_DEPTH), payload


def layout(c: SeedCodec, members: dict[str, Any]) -> str:
    """The answer's layout a document's members ask for, or the refusal's message."""
    try:
        return c.batch_format(members)
    except InvalidInput as exc:
        return f"refused: {exc}"


def test_number_rows_give_orjsons_array_and_the_other_members() -> None:
    c = codec()
    rows = [[1.5, 2.0, 3], [0, 10, -4], [2.5e-3, -1.5e2, 7]]
    body = orjson.dumps({"instances": rows, "format": "columns"})
    fast = c.decode_batch_body(body, MAX_DEPTH)
    assert fast is not None
    x, others = fast
    assert x.dtype == np.float64 and x.shape == (3, 3)
    assert np.array_equal(x, slow(c, body)[0])
    assert others == {"format": "columns"}
    assert c.batch_format(others) == "columns"


def test_whitespace_and_layout_do_not_matter() -> None:
    body = b' {\n  "instances" : [ [1 , 2.0, 3] ,\n\t[4,5,6] ]\n}\n'
    fast = codec().decode_batch_body(body, MAX_DEPTH)
    assert fast is not None and fast[0].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_the_doubles_are_orjsons_to_the_last_bit() -> None:
    rng = np.random.default_rng(7)
    values = np.abs(rng.standard_normal((500, 3))) * 10.0 ** rng.integers(-300, 300, (500, 3))
    values[:, 1] = -values[:, 1]
    values[:, 2] = np.round(values[:, 2] % 1e15)
    text = [[repr(float(v)) for v in row] for row in values]
    text[0] = ["9007199254740993", "-0.0", "1E2"]  # an integer past 2**53 rounds as Python's
    text[1] = ["1e-400", "-4.9e-324", "18446744073709551615"]  # underflow, denormal, u64
    body = ("{" + '"instances":[' + ",".join("[" + ",".join(r) + "]" for r in text) + "]}").encode()
    c = codec()
    fast = c.decode_batch_body(body, MAX_DEPTH)
    assert fast is not None
    assert fast[0].tobytes() == slow(c, body)[0].tobytes()


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances":[[1,2,3],[4,5]]}',  # ragged
        b'{"instances":[[1,2,3,4],[5,6]]}',  # ragged with the right total
        b'{"instances":[[1,2,[3]],[4,5,6]]}',  # nested
        b'{"instances":[1,2,3,4,5,6]}',  # flat numbers, not rows
        b'{"instances":[[1,2,3],[4,5,6]],"instances":[[1,2,3]]}',  # repeated key
        b'{"instances":[[1,2,3]],"x":[1]}',  # another member that is a container
        b'{"instances":[[1,2,3]],"x":{"y":1}}',
        b'{"instances":[[1,2,3,4],[5,6]],"f,[":"x"}',  # a key that holds structure
        b'{"instances":[[1,2,3,4],[5,6]],"format":"[,]"}',  # a string value that does
        b'{"instances":[]}',
        b'{"instances":{}}',
        b'{"instances":7}',
        b'{"rows":[[1,2,3]]}',
        b"[[1,2,3]]",
        b'{"instances":[{"a":1,"b":2,"n":3}]}',  # object rows: orjson's path
        b'{"instances":[[1,true,3]]}',
        b'{"instances":[[1,null,3]]}',
        b'{"instances":[[1,"2",3]]}',
        b'{"instances":[[1,NaN,3]]}',
        b'{"instances":[[1,Infinity,3]]}',
        b'{"instances":[[1,1e400,3]]}',
        b'{"instances":[[1,2,18446744073709551616]]}',  # beyond 64 bits
        b'{"instances":[[1,2,3]]} trailing',
        b'{"instances":[[1,2,3],]}',
        b'{"instances":[[1,2,3]]',
        b"",
        b'{"instances":[[-1,2,3]]}',  # below a's minimum
        b'{"instances":[[1,11,3]]}',  # above b's maximum
        b'{"instances":[[1,2,3.5]]}',  # n is an integer
    ],
)
def test_what_it_cannot_prove_is_left_to_orjsons_path(body: bytes) -> None:
    assert codec().decode_batch_body(body, MAX_DEPTH) is None


def test_more_rows_than_allowed_are_left_to_the_path_that_refuses_them() -> None:
    c = codec(max_rows=2)
    body = orjson.dumps({"instances": [[1, 2, 3]] * 3})
    assert c.decode_batch_body(body, MAX_DEPTH) is None
    with pytest.raises(PayloadTooLarge):
        slow(c, body)


def test_a_depth_limit_below_a_batchs_own_is_left_to_the_path_that_refuses_it() -> None:
    c = codec()
    body = orjson.dumps({"instances": [[1, 2, 3]]})
    assert c.decode_batch_body(body, 2) is None
    with pytest.raises(InvalidInput, match="deep"):
        c.decode_batch(parse_json(body, 2, measure=False), body, 2)


def test_a_width_one_model_tells_an_empty_row_from_a_value() -> None:
    rows = NumericRows(1, 10)
    assert rows.table(b'{"instances":[[1],[2]]}') is not None
    assert rows.table(b'{"instances":[[1],[]]}') is None
    assert rows.table(b'{"instances":[[],[1,2]]}') is None


def test_the_parser_is_reused_after_a_refusal_and_shared_between_threads() -> None:
    rows = NumericRows(3, 10_000)
    bad = [b'{"instances":[[1,2,3],[4,5]]}', b'{"instances":[[1,"x",3]]}', b"{", b"[1]"]
    good = [orjson.dumps({"instances": [[i, i + 1, i + 2]] * (i + 1)}) for i in range(40)]
    failures: list[str] = []

    def work(k: int) -> None:
        for i in range(200):
            body = good[(i + k) % len(good)]
            assert rows.table(bad[i % len(bad)]) is None
            got = rows.table(body)
            if got is None or got[0].tolist() != orjson.loads(body)["instances"]:
                failures.append(f"thread {k}, body {(i + k) % len(good)}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_body_over_the_shared_size_gets_a_parser_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared parser keeps its tape at the largest body it parsed: a big one must not."""
    from modelserve.codecs import numeric_json

    class Refusing:
        def parse(self, body: bytes) -> Any:
            raise AssertionError("the shared parser parsed a body over its size")

    rows = NumericRows(3, 10_000)
    small = orjson.dumps({"instances": [[1, 2, 3]]})
    big = orjson.dumps({"instances": [[0.5, 1.5, 2.5]] * 500, "format": "rows"})
    monkeypatch.setattr(numeric_json, "SHARED_PARSER_UP_TO", len(small))
    assert rows.table(small) is not None  # at the size: the shared parser
    monkeypatch.setattr(numeric_json, "_PARSER", Refusing())
    got = rows.table(big)
    assert got is not None
    assert got[0].tolist() == [[0.5, 1.5, 2.5]] * 500 and got[1] == {"format": "rows"}
    assert rows.table(b'{"instances":[[1,2,3],[4,5]]' + b" " * len(small) + b"}") is None


# -- any document: when it answers, it answers as orjson's path does --------------------

_scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "x", "[", ",", "]", "rows", "columns"]),
)
_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "n", "[,"]), inner, max_size=3)
    ),
    max_leaves=12,
)
_number = st.floats(-1, 11, allow_nan=False) | st.integers(-1, 11)
#: Mostly rows the model accepts (a >= 0, b <= 10, n whole), some a value off, some not rows.
_row = st.tuples(
    st.floats(0, 1e300) | st.integers(0, 2**63),
    st.floats(max_value=10),
    st.integers(-(2**53), 2**53),
).map(list)
_rows = st.one_of(
    st.lists(_row, min_size=1, max_size=6),
    st.lists(st.one_of(_row, st.lists(_number, min_size=2, max_size=4), _values), max_size=5),
)
_documents = st.one_of(
    st.fixed_dictionaries(
        {"instances": _rows}, optional={"format": _values, "[": _scalars, "id": _scalars}
    ),
    _values,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_any_document_it_answers_gets_orjsons_answer(document: Any) -> None:
    try:
        body = orjson.dumps(document)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return
    c = codec()
    fast = c.decode_batch_body(body, MAX_DEPTH)
    try:
        expected: tuple[np.ndarray, dict[str, Any]] | None = slow(c, body)
    except (InvalidInput, PayloadTooLarge):
        expected = None
    if fast is None:
        # Only what it cannot prove is left: an accepted table of plain number rows, whose
        # other members are scalars with no bracket or comma in their text, is proven.
        plain = (
            isinstance(document, dict)
            and expected is not None
            and all(type(r) is list and len(r) == 3 for r in document["instances"])
            and all(
                _STRUCTURE.isdisjoint(k)
                and not isinstance(v, (list, dict))
                and not (isinstance(v, str) and not _STRUCTURE.isdisjoint(v))
                for k, v in document.items()
                if k != "instances"
            )
        )
        assert not plain, body
        return
    assert expected is not None, body
    assert fast[0].tobytes() == expected[0].tobytes()
    assert layout(c, fast[1]) == layout(c, expected[1])
