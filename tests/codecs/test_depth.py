"""JSON nesting depth: measured without recursion, refused past the limit with a 400."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from modelserve.codecs.depth import _walk
from modelserve.codecs.depth import check_depth
from modelserve.codecs.depth import json_depth
from modelserve.codecs.seed import parse_json
from modelserve.codecs.v2 import decode_request
from modelserve.errors import InvalidInput


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize(
    ("doc", "depth"),
    [
        (b"1", 0),
        (b'"[[[["', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}], "c": "]]]{{{"}', 4),
        (b'["\\"[[[", [["x"]]]', 3),  # an escaped quote: measured on the parsed document
        (b'[{"k\\\\": ["\\\\"]}]', 3),
        (nested(200), 200),
    ],
)
def test_json_depth(doc: bytes, depth: int) -> None:
    assert json_depth(doc, orjson.loads(doc)) == depth


def _random_doc(rng: random.Random, budget: int) -> Any:
    kind = rng.random()
    if budget <= 0 or kind < 0.3:
        return rng.choice([1, 2.5, None, True, "x", "[", "]{", '"', "\\", ""])
    if kind < 0.65:
        return [_random_doc(rng, budget - 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}[": _random_doc(rng, budget - 1) for i in range(rng.randint(0, 3))}


def test_the_byte_scan_agrees_with_a_walk_of_the_document() -> None:
    rng = random.Random(16)
    for _ in range(500):
        doc = _random_doc(rng, rng.randint(0, 12))
        body = orjson.dumps(doc)
        assert json_depth(body, doc) == _walk(doc), body


def _plain_doc(rng: random.Random, budget: int) -> Any:
    """Documents without escapes (the byte scan's own paths), strings with brackets now and
    then, empty strings and keys, up to 14 levels (past what the peeling rounds take)."""
    kind = rng.random()
    if budget <= 0 or kind < 0.25:
        return rng.choice([1, 2.5, None, "x", "", "[", "]]", "{}"])
    if kind < 0.6:
        return [_plain_doc(rng, budget - 1) for _ in range(rng.randint(0, 3))]
    keys = ["", "a", "b[", "}"]
    return {rng.choice(keys) + str(i): _plain_doc(rng, budget - 1) for i in range(3)}


def test_peeling_and_counting_agree_with_a_walk_of_the_document() -> None:
    rng = random.Random(21)
    for _ in range(2000):
        doc = _plain_doc(rng, rng.randint(0, 14))
        body = orjson.dumps(doc)
        assert b"\\" not in body
        assert json_depth(body, doc) == _walk(doc), body


@pytest.mark.parametrize("depth", [3, 8, 9, 40])
def test_batches_of_rows_and_deep_nests_are_measured_exactly(depth: int) -> None:
    rows = orjson.dumps({"instances": [[1.5, 2], [3, 4]], "format": "rows", "": [""]})
    assert json_depth(rows, orjson.loads(rows)) == 3
    body = b'{"a": [{"b": "[x"}], "c": ' + nested(depth) + b"}"
    assert json_depth(body, orjson.loads(body)) == depth + 1


def test_check_depth_refuses_past_the_limit() -> None:
    check_depth(nested(32), orjson.loads(nested(32)), 32)
    with pytest.raises(InvalidInput, match="deeper than 32 levels"):
        check_depth(nested(33), orjson.loads(nested(33)), 32)
    wide = b"[" + b",".join([b"[1]"] * 1000) + b"]"  # many brackets, shallow
    check_depth(wide, orjson.loads(wide), 2)


@pytest.mark.parametrize("depth", [33, 1500, 100_000])
def test_parse_json_answers_400_for_any_depth(depth: int) -> None:
    # Past 1024 levels orjson refuses by itself; the client gets the same answer.
    with pytest.raises(InvalidInput) as info:
        parse_json(nested(depth), 32)
    assert "deeper than 32 levels (MODELSERVE_MAX_JSON_DEPTH)" in info.value.message
    assert parse_json(nested(32), 32) is not None


def test_v2_headers_are_bounded_too() -> None:
    body = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ' + nested(40)
    body += b"}]}"
    with pytest.raises(InvalidInput, match="MODELSERVE_MAX_JSON_DEPTH"):
        decode_request(body, None, 32)
