"""Whole-batch checks agree with the row-by-row schema check, on fixed-seed random batches."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.codecs.columns import ColumnCheck
from modelserve.codecs.seed import SeedCodec
from modelserve.codecs.tables import ForeignColumn
from modelserve.errors import InvalidInput
from modelserve.types import Feature
from modelserve.types import Signature

NUMERIC = Signature(
    features=(
        Feature("a", "number", minimum=0.0, maximum=10.0),
        Feature("b", "integer"),
        Feature("c", "number", enum=(1.0, 2.5, 4.0)),
    ),
    task="regression",
)
MIXED = Signature(
    features=(
        Feature("x", "number", maximum=5.0),
        Feature("city", "string", enum=("Oslo", "Bergen")),
        Feature("n", "integer", minimum=1),
    ),
    task="regression",
)
FLAGGED = Signature(
    features=(
        Feature("city", "string"),
        Feature("flag", "boolean"),
        Feature("k", "integer", enum=(1, 2, 3)),
    ),
    task="regression",
)
#: Values a client might put in a cell: valid ones most of the time, then each kind of mistake.
GOOD = {
    "a": [0.0, 3.5, 10.0, 7],
    "b": [0, -3, 12, 4.0],
    "c": [1.0, 2.5, 4.0, 4],
    "x": [5.0, -1.5, 0],
    "city": ["Oslo", "Bergen"],
    "n": [1, 9, 2.0],
    "flag": [True, False],
    "k": [1, 2, 3, 2.0],
}
BAD = {
    "a": [-0.5, 10.5, True, None, "3"],
    "b": [1.5, False, None, "2"],
    "c": [3.0, 0, None, [1.0]],
    "x": [5.5, "5", None],
    "city": ["Paris", 3, None, ""],
    "n": [0, 1.5, True],
    "flag": [1, 0, "true", None],
    "k": [4, True, "1"],
}


def random_batch(rng: random.Random, names: list[str]) -> list[Any]:
    rows: list[Any] = []
    for _ in range(rng.randint(1, 12)):
        values = {
            n: rng.choice(BAD[n]) if rng.random() < 0.04 else rng.choice(GOOD[n]) for n in names
        }
        shape = rng.random()
        if shape < 0.45:
            rows.append([values[n] for n in names])
        elif shape < 0.9:
            rows.append(values)
        elif shape < 0.93:
            rows.append([values[n] for n in names][:-1])  # one value short
        elif shape < 0.96:
            rows.append({**values, "extra": 1})
        elif shape < 0.98:
            rows.append({k: v for k, v in values.items() if k != names[0]})
        else:
            rows.append("not a row")
    return rows


def outcome(run: Any) -> Any:
    try:
        x = run()
    except InvalidInput as exc:
        return ("error", str(exc), exc.details)
    return ("ok", x.dtype, x.tolist())


@pytest.mark.parametrize(
    "signature", [NUMERIC, MIXED, FLAGGED], ids=["numeric", "mixed", "booleans"]
)
def test_the_batch_paths_agree_with_the_row_by_row_check(signature: Signature) -> None:
    codec = SeedCodec(signature, allow_extra=False, max_rows=100)
    names = signature.feature_names
    rng = random.Random(20261202)
    seen = {"ok": 0, "error": 0, "columns": 0}
    proven: list[bool] = []
    if codec._fast is not None:  # count how often the whole-batch proof answers by itself
        array = codec._fast.array

        def counted(*args: Any) -> Any:
            x = array(*args)
            proven.append(x is not None)
            return x

        codec._fast.array = counted  # type: ignore[method-assign]
    if codec._cells is not None:
        prove = codec._cells.table

        def counted_cells(*args: Any) -> Any:
            x = prove(*args)
            proven.append(x is not None)
            return x

        codec._cells.table = counted_cells  # type: ignore[method-assign]
    for _ in range(400):
        rows = random_batch(rng, names)
        body = orjson.dumps({"instances": rows, "format": "rows"})
        payload = orjson.loads(body)
        fast = outcome(lambda: codec.decode_batch(payload, body))  # noqa: B023
        slow = outcome(lambda: codec.decode_batch(payload))  # noqa: B023
        assert fast == slow, rows
        seen[fast[0]] += 1
        # The same batch as whole columns, where it can be one (a value per cell).
        if all(isinstance(r, dict) and set(r) == set(names) for r in rows) or all(
            isinstance(r, list) and len(r) == len(names) for r in rows
        ):
            cells = [[r[n] for n in names] if isinstance(r, dict) else r for r in rows]
            columns = {n: as_column([c[j] for c in cells]) for j, n in enumerate(names)}
            table = outcome(lambda: codec.decode_table(columns))  # noqa: B023
            assert table[0] == slow[0], (rows, table)
            if table[0] == "ok":
                assert table[1:] == slow[1:]  # the same dtype and values
            seen["columns"] += 1
    assert min(seen.values()) > 40, seen  # the generator really made both kinds
    assert sum(proven) > 40  # valid batches took the whole-batch path


def as_column(values: list[Any]) -> Any:
    """What pyarrow gives for a column of these values: numbers, strings, else objects."""
    if all(type(v) in (int, float) for v in values):
        return np.array(values)
    if all(type(v) is bool for v in values):
        return np.array(values)
    if all(type(v) is str for v in values) or any(v is None for v in values):
        column: Any = np.empty(len(values), dtype=object)
        column[:] = values
        return column
    return ForeignColumn("mixed")


def test_each_rule_names_the_feature_and_first_row() -> None:
    check = ColumnCheck(MIXED, allow_extra=False, max_string_length=6)
    city = np.array(["Oslo", "Paris", "Bergen", "Kristiansand"], dtype=object)
    with pytest.raises(InvalidInput) as info:
        check.table(
            {
                "x": np.array([1.0, 6.0, np.nan, 2.0]),
                "city": city,
                "extra": np.zeros(4),
            }
        )
    assert info.value.details == [
        {"path": "n", "message": "is required"},
        {"path": "(columns)", "message": "unexpected column(s): extra"},
        {"path": "x[2]", "message": "is NaN, not a number"},
        {"path": "city[1]", "message": 'is "Paris", not one of "Oslo", "Bergen"'},
        {
            "path": "city[3]",
            "message": "is longer than 6 characters (MODELSERVE_MAX_STRING_LENGTH)",
        },
    ]
    assert str(info.value).startswith("Invalid input: n is required (and 4 more problem(s)")


@pytest.mark.parametrize(
    ("column", "path", "message"),
    [
        (np.array([1.0, 6.0]), "x[1]", "is 6.0, more than the maximum 5.0"),
        (np.array([1.0, np.inf]), "x[1]", "is Infinity, not a finite number"),
        (np.array(["1"], dtype=object), "x", "is a column of strings, not numbers"),
        (np.array([True]), "x", "is a column of booleans, not numbers"),
        (np.array([1.0, None], dtype=object), "x[1]", "is null, not a number"),
        (ForeignColumn("date32[day]"), "x", "is a column of date32[day], not numbers"),
    ],
)
def test_number_column_messages(column: Any, path: str, message: str) -> None:
    check = ColumnCheck(MIXED, allow_extra=True)
    n = len(column) if isinstance(column, np.ndarray) else 1
    columns = {
        "x": column,
        "city": np.array(["Oslo"] * n, dtype=object),
        "n": np.ones(n, dtype=np.int64),
    }
    with pytest.raises(InvalidInput) as info:
        check.table(columns)
    assert info.value.details == [{"path": path, "message": message}]


def test_a_matrix_is_checked_per_feature_and_needs_the_right_width() -> None:
    check = ColumnCheck(NUMERIC, allow_extra=False)
    good = np.array([[1.0, 2, 2.5], [10, -4, 4]], dtype=np.float32)
    assert check.matrix(good).dtype == np.float64
    with pytest.raises(InvalidInput) as info:
        check.matrix(np.array([[1.0, 2.5, 2.0]]))
    assert info.value.details == [
        {"path": "b[0]", "message": "is 2.5, not an integer"},
        {"path": "c[0]", "message": "is 2.0, not one of 1.0, 2.5, 4.0"},
    ]
    with pytest.raises(InvalidInput, match="takes 3 features, in this order: a, b, c"):
        check.matrix(np.zeros((2, 4)))
    with pytest.raises(InvalidInput, match="non-numeric feature.s. city"):
        ColumnCheck(MIXED, allow_extra=False).matrix(np.zeros((1, 3)))


def test_allowed_extra_columns_are_dropped() -> None:
    check = ColumnCheck(NUMERIC, allow_extra=True)
    columns = {"c": np.array([1.0]), "b": np.array([3]), "a": np.array([2.0]), "z": np.zeros(1)}
    assert check.table(columns).tolist() == [[2.0, 3.0, 1.0]]


BOUNDED = Signature(
    features=(
        Feature("a", "number", minimum=0.0, maximum=10.0),
        Feature("b", "integer"),
        Feature("c", "number", minimum=-1.5),
        Feature("d", "number"),
        Feature("e", "integer", maximum=3),
    ),
    task="regression",
)
#: Valid cells of each BOUNDED column, its edges included; then breaches of each rule.
_CELLS = {
    "a": [0.0, -0.0, 3.5, 10.0],
    "b": [0.0, -3.0, 12.0, 1e300],
    "c": [-1.5, 0.0, 1e308],
    "d": [0.25, 1e308, -1e308, 5e-324],
    "e": [3.0, -2.0, 0.0],
}
_BREACHES = [-0.5, 10.5, 1.5, -1.6, 4.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324]


def test_the_whole_table_check_agrees_with_the_column_checks() -> None:
    """float64 tables and matrices take one whole-table check; whatever it lets through,
    the column checks (which name the problems) let through too, and it lets clean
    tables through (else it would be no faster)."""
    fast = ColumnCheck(BOUNDED, allow_extra=False)
    slow = ColumnCheck(BOUNDED, allow_extra=False)
    slow._clean = None
    rng = np.random.default_rng(20261202)
    names = BOUNDED.feature_names
    passed = {"table": 0, "matrix": 0}
    assert fast._clean is not None
    clean = fast._clean.passes
    outcomes: dict[str, list[bool]] = {"ok": [], "error": []}

    for _ in range(600):
        rows = int(rng.integers(1, 12))
        x = np.column_stack([rng.choice(_CELLS[n], size=rows) for n in names])
        for _ in range(int(rng.integers(0, 3)) * (rng.random() < 0.6)):
            x[rng.integers(rows), rng.integers(len(names))] = rng.choice(_BREACHES)
        columns: dict[str, Any] = {n: np.ascontiguousarray(x[:, j]) for j, n in enumerate(names)}
        if rng.random() < 0.1:  # an int64 column: the column checks' own path
            columns["b"] = np.zeros(rows, dtype=np.int64) + int(rng.integers(-3, 3))
        table = outcome(lambda: fast.table(columns))  # noqa: B023
        assert table == outcome(lambda: slow.table(columns)), x  # noqa: B023
        matrix = outcome(lambda: fast.matrix(x))  # noqa: B023
        assert matrix == outcome(lambda: slow.matrix(x)), x  # noqa: B023
        outcomes[matrix[0]].append(clean(x))
        passed["table"] += table[0] == "ok"
        passed["matrix"] += matrix[0] == "ok"
    # Every refused matrix failed the whole-table check; most accepted ones passed it.
    assert not any(outcomes["error"]) and len(outcomes["error"]) > 100
    assert sum(outcomes["ok"]) == len(outcomes["ok"]) > 100, passed


def test_an_enum_feature_leaves_the_table_to_the_column_checks() -> None:
    check = ColumnCheck(NUMERIC, allow_extra=False)
    assert check._clean is None
    with pytest.raises(InvalidInput, match="c.0. is 3.0, not one of"):
        check.table({"a": np.ones(1), "b": np.ones(1), "c": np.array([3.0])})
