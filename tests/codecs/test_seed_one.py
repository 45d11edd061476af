"""The seed codec's single-row path: its Python checks accept exactly what the schema does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelserve.codecs.seed import SeedCodec
from modelserve.errors import InvalidInput
from modelserve.types import Feature
from modelserve.types import Signature

SIG = Signature(
    features=(
        Feature("a", "number", minimum=0.0),
        Feature("b", "number", maximum=10.0),
        Feature("n", "integer", minimum=-5, maximum=5),
        Feature("free", "number"),
    ),
    task="regression",
)


def codec() -> SeedCodec:
    return SeedCodec(SIG, allow_extra=False, max_rows=1)


@pytest.mark.parametrize(
    "row",
    [
        {"a": 0, "b": 10, "n": -5, "free": -1e300},  # every bound itself is inside
        {"a": 2.5, "b": -1.5, "n": 5.0, "free": 0},  # a whole float in an integer feature
        {"free": 1, "n": 0, "b": 1, "a": 1},  # any key order
    ],
)
def test_valid_rows_take_the_fast_path_and_match_the_schema(row: dict[str, Any]) -> None:
    c = codec()
    assert c._fast is not None
    fast = c._fast.one(row, c._row_of)
    assert fast is not None and fast.dtype == np.float64 and fast.shape == (1, 4)
    assert fast.tolist() == [[row["a"], row["b"], row["n"], row["free"]]]
    assert np.array_equal(c.decode_one(row), fast)


@pytest.mark.parametrize(
    ("row", "path"),
    [
        ({"a": -0.1, "b": 1, "n": 0, "free": 0}, "a"),  # below minimum
        ({"a": 1, "b": 10.5, "n": 0, "free": 0}, "b"),  # above maximum
        ({"a": 1, "b": 1, "n": 6, "free": 0}, "n"),  # an integer above its maximum
        ({"a": 1, "b": 1, "n": -6, "free": 0}, "n"),  # an integer below its minimum
        ({"a": 1, "b": 1, "n": 1.5, "free": 0}, "n"),  # not whole
        ({"a": 1, "b": 1, "n": True, "free": 0}, "n"),  # a boolean is not a number
        ({"a": 1, "b": "1", "n": 0, "free": 0}, "b"),  # a numeric string is not a number
        ({"a": 1, "b": 1, "n": 0}, "free"),  # missing
    ],
)
def test_invalid_rows_leave_the_fast_path_and_get_the_schema_error(
    row: dict[str, Any], path: str
) -> None:
    c = codec()
    assert c._fast is not None and c._fast.one(row, c._row_of) is None
    with pytest.raises(InvalidInput) as info:
        c.decode_one(row)
    assert [d["path"] for d in info.value.details] == [path]


def test_a_number_outside_its_enum_leaves_the_fast_path_and_gets_the_schema_error() -> None:
    """The batch check learned number enums; the single-row check must refuse the same rows."""
    sig = Signature(
        features=(Feature("code", "integer", enum=(1, 2, 3)), Feature("x", "number")),
        task="regression",
    )
    c = SeedCodec(sig, allow_extra=False, max_rows=1)
    assert c._fast is not None
    assert c._fast.one({"code": 2, "x": 0.5}, c._row_of) is not None
    assert c._fast.one({"code": 2.0, "x": 0.5}, c._row_of) is not None
    assert c._fast.one({"code": 4, "x": 0.5}, c._row_of) is None
    with pytest.raises(InvalidInput) as raised:
        c.decode_one({"code": 4, "x": 0.5})
    assert [d["path"] for d in raised.value.details] == ["code"]
