"""A batch's rows answer written as text: byte for byte what orjson writes for the dicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.api._json import DUMP_OPTIONS
from modelserve.codecs.rows_json import MAX_LABELS
from modelserve.codecs.rows_json import rows_answer
from modelserve.codecs.seed import SeedCodec
from modelserve.floats import widen_float32
from modelserve.types import PREDICT_OUTPUT
from modelserve.types import PROBA_OUTPUT
from modelserve.types import Feature
from modelserve.types import Signature


def codec(classes: tuple[Any, ...] | None, names: tuple[str, ...] | None) -> SeedCodec:
    signature = Signature(
        features=(Feature("a", "number"), Feature("b", "number")),
        task="classification" if classes is not None else "regression",
        classes=classes,
        class_names=names,
    )
    return SeedCodec(signature, allow_extra=False, max_rows=100_000)


def written(answer: dict[str, Any]) -> bytes:
    return orjson.dumps({**answer, "model": "m", "version": "1"}, option=DUMP_OPTIONS)


def outputs(labels: np.ndarray, proba: np.ndarray | None) -> dict[str, np.ndarray]:
    out = {PREDICT_OUTPUT: labels}
    if proba is not None:
        out[PROBA_OUTPUT] = proba
    return out


def random_proba(rng: np.random.Generator, rows: int, classes: int, dtype: Any) -> np.ndarray:
    p = rng.dirichlet(np.ones(classes), rows)
    p[rng.random(rows) < 0.1] = 0.0  # whole zeros, as a forest's certain rows are
    p[rng.random(rows) < 0.05, 0] = 1.0
    p[0, 0] = 1e-300  # exponents
    return widen_float32(p.astype(dtype))  # the runtime's widened float32, or float64


CASES = [
    ((0, 1), ("malignant", "benign")),
    ((0, 1), None),
    ((0, 1, 2), ('a "quoted", [name]', "ünïcödé", "tab\tand\\slash")),
    (("cat", "dog", 'o"dd,[]'), None),
    ((-3, 7, 1000000000000), None),
    ((0.5, 1.5), ("half", "one and a half")),
]


@pytest.mark.parametrize(("classes", "names"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 7, 1000])
def test_the_text_is_orjsons_text_of_the_dicts(
    classes: tuple[Any, ...], names: tuple[str, ...] | None, dtype: Any, rows: int
) -> None:
    rng = np.random.default_rng(rows)
    c = codec(classes, names)
    labels = np.asarray(classes)[rng.integers(0, len(classes), rows)]
    out = outputs(labels, random_proba(rng, rows, len(classes), dtype))
    fast = c.encode_batch_json(out)
    assert isinstance(fast["predictions"], orjson.Fragment)
    assert written(fast) == written(c.encode_batch(out))


def test_probabilities_in_any_memory_order_are_written_as_the_dicts_write_them() -> None:
    c = codec((0, 1, 2), ("a", "b", "c"))
    proba = np.asfortranarray(random_proba(np.random.default_rng(1), 50, 3, np.float64))
    labels = np.argmax(proba, axis=1)
    for view in (proba, proba[:, ::-1], np.ascontiguousarray(proba)[::1]):
        out = outputs(labels, view)
        fast = c.encode_batch_json(out)
        assert isinstance(fast["predictions"], orjson.Fragment)
        assert written(fast) == written(c.encode_batch(out))


def test_nan_and_infinite_probabilities_are_written_as_the_dicts_write_them() -> None:
    c = codec((0, 1), None)
    proba = np.array([[np.nan, 1.0], [np.inf, -np.inf], [0.25, 0.75]])
    out = outputs(np.array([1, 0, 1]), proba)
    assert written(c.encode_batch_json(out)) == written(c.encode_batch(out))


@pytest.mark.parametrize(
    ("labels", "proba"),
    [
        (np.array([0.5, 1.5]), None),  # a regressor: no probabilities
        (np.array([0, 1]), np.zeros((2, 0))),  # no classes
        (np.array([0, 1]), np.zeros((3, 2))),  # rows that do not match
        (np.array([], dtype=np.int64), np.zeros((0, 2))),
        (np.arange(MAX_LABELS + 1), np.full((MAX_LABELS + 1, 2), 0.5)),  # not classes
        (np.array([[0], [1]]), np.zeros((2, 2))),  # labels not one per row
    ],
)
def test_what_it_cannot_write_is_left_to_the_dicts(
    labels: np.ndarray, proba: np.ndarray | None
) -> None:
    assert rows_answer(labels, proba, None) is None


def test_a_regressors_batch_is_the_dicts_answer() -> None:
    c = codec(None, None)
    out = outputs(np.array([0.5, 1.25, -3.0]), None)
    assert c.encode_batch_json(out) == c.encode_batch(out)


def test_a_label_with_no_name_fails_as_the_dicts_fail() -> None:
    c = codec((0, 1), ("no", "yes"))
    out = outputs(np.array([0, 2]), np.array([[1.0, 0.0], [0.5, 0.5]]))
    with pytest.raises(KeyError):
        c.encode_batch(out)
    with pytest.raises(KeyError):
        c.encode_batch_json(out)
