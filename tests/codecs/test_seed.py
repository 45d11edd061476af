"""The seed codec: the numeric fast path accepts exactly what the schema accepts."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.codecs.depth import json_depth
from modelserve.codecs.seed import SeedCodec
from modelserve.codecs.seed import parse_json
from modelserve.errors import InvalidInput
from modelserve.types import Feature
from modelserve.types import Signature

SIG = Signature(
    features=(
        Feature("a", "number", minimum=0.0),
        Feature("b", "number", maximum=10.0),
        Feature("n", "integer"),
    ),
    task="regression",
)


def decode(payload: Any, codec: SeedCodec | None = None) -> np.ndarray:
    codec = codec or SeedCodec(SIG, allow_extra=False, max_rows=1000)
    body = orjson.dumps(payload)
    fast = codec.decode_batch(orjson.loads(body), body)
    slow = codec.decode_batch(orjson.loads(body))
    assert np.array_equal(fast, slow) and fast.dtype == slow.dtype == np.float64
    return fast


def test_valid_rows_give_the_same_array_on_both_paths() -> None:
    rows = [[1.0, 2.0, 3], {"a": 0, "b": 10, "n": -4}, {"n": 1, "b": -1.5, "a": 2.5}]
    x = decode({"instances": rows})
    assert x.tolist() == [[1.0, 2.0, 3.0], [0.0, 10.0, -4.0], [2.5, -1.5, 1.0]]


def test_fast_path_is_taken_for_plain_numbers() -> None:
    codec = SeedCodec(SIG, allow_extra=False, max_rows=1000)
    assert codec._fast is not None
    body = orjson.dumps({"instances": [[1.0, 2.0, 3]] * 5})
    assert codec._fast.array(orjson.loads(body)["instances"], body, codec._row_of) is not None


@pytest.mark.parametrize(
    ("rows", "path"),
    [
        ([[1.0, True, 3]], "instances[0][1]"),  # JSON true is not a number
        ([[1.0, None, 3]], "instances[0][1]"),  # null would become NaN in numpy
        ([[1.0, "2.5", 3]], "instances[0][1]"),  # numeric string would be parsed by numpy
        ([[-1.0, 2.0, 3]], "instances[0][0]"),  # below minimum
        ([[1.0, 11.0, 3]], "instances[0][1]"),  # above maximum
        ([[1.0, 2.0, 3.5]], "instances[0][2]"),  # not an integer
        ([[1.0, 2.0]], "instances[0]"),  # too short
        ([[1.0, 2.0, 3, 4]], "instances[0]"),  # too long
        ([[1.0, [2.0], 3]], "instances[0][1]"),  # nested list
        ([{"a": 1, "b": 2}], "instances[0].n"),  # missing key
        ([{"a": 1, "b": 2, "n": 3, "c": 4}], "instances[0]"),  # extra key
        ([{"a": 1, "b": "x", "n": 3}], "instances[0].b"),  # string in an object row
        ([[1.0, 2.0, 3], "row"], "instances[1]"),  # not a row at all
    ],
)
def test_every_invalid_batch_is_refused_with_its_path(rows: list[Any], path: str) -> None:
    codec = SeedCodec(SIG, allow_extra=False, max_rows=1000)
    body = orjson.dumps({"instances": [*rows, [0.5, 0.5, 1]]})  # the bad row, then a good one
    with pytest.raises(InvalidInput) as info:
        codec.decode_batch(orjson.loads(body), body)
    paths = [d["path"] for d in info.value.details]
    assert any(p.startswith(path) for p in paths), paths
    assert not any(p.startswith(f"instances[{len(rows)}]") for p in paths), paths


GOOD = {"a": 0.5, "b": 0.5, "n": 1}


@pytest.mark.parametrize(
    ("row", "path"),
    [
        ({"a": 1, "b": True, "n": 3}, "instances[0].b"),
        ({"a": 1, "b": None, "n": 3}, "instances[0].b"),
        ({"a": 1, "b": "2.5", "n": 3}, "instances[0].b"),
        ({"a": 1, "b": [2.0], "n": 3}, "instances[0].b"),
        ({"a": 1, "b": {"v": 2}, "n": 3}, "instances[0].b"),
        ({"a": -1, "b": 2, "n": 3}, "instances[0].a"),
        ({"a": 1, "b": 2, "n": 3.5}, "instances[0].n"),
        ({"a": 1, "b": 2}, "instances[0]"),
        ({"a": 1, "b": 2, "n": 3, "c": 4}, "instances[0]"),
        ({"a": 1, "b": 2, "c": 3}, "instances[0]"),  # the right count, a wrong key
    ],
)
def test_a_batch_of_objects_is_refused_on_any_bad_value(row: Any, path: str) -> None:
    codec = SeedCodec(SIG, allow_extra=False, max_rows=1000)
    body = orjson.dumps({"instances": [row, GOOD]})  # objects only: their own fast path
    with pytest.raises(InvalidInput) as info:
        codec.decode_batch(orjson.loads(body), body)
    paths = [d["path"] for d in info.value.details]
    assert any(p.startswith(path) for p in paths), paths


def test_objects_and_lists_take_the_fast_path_and_ragged_lists_do_not() -> None:
    codec = SeedCodec(SIG, allow_extra=False, max_rows=1000)
    assert codec._fast is not None
    for rows in ([GOOD, {"n": 2, "b": 1, "a": 3}], [[1.0, 2.0, 3]] * 4):
        body = orjson.dumps({"instances": rows})
        assert codec._fast.array(orjson.loads(body)["instances"], body, codec._row_of) is not None
    ragged = [[1.0, 2.0], [1.0, 2.0, 3, 4]]  # as many values as two rows, in the wrong rows
    body = orjson.dumps({"instances": ragged})
    assert codec._fast.array(ragged, body, codec._row_of) is None
    with pytest.raises(InvalidInput):
        codec.decode_batch(orjson.loads(body), body)
    mixed = [GOOD, [1.0, 2.0, 3]]
    assert decode({"instances": mixed}).tolist() == [[0.5, 0.5, 1.0], [1.0, 2.0, 3.0]]


def test_extra_fields_allowed_with_string_values() -> None:
    codec = SeedCodec(SIG, allow_extra=True, max_rows=1000)
    rows = [{"a": 1, "b": 2, "n": 3, "note": "hello"}, {"a": 1, "b": 2, "n": 3, "id": 7}]
    assert decode({"instances": rows}, codec).tolist() == [[1.0, 2.0, 3.0]] * 2


def test_string_features_skip_the_fast_path() -> None:
    sig = Signature(
        features=(Feature("a"), Feature("plan", "string", enum=("x", "y"))), task="regression"
    )
    codec = SeedCodec(sig, allow_extra=False, max_rows=10)
    assert codec._fast is None
    body = orjson.dumps({"instances": [[1.0, "x"], {"a": 2, "plan": "y"}]})
    x = codec.decode_batch(orjson.loads(body), body)
    assert x.dtype == object and x.tolist() == [[1.0, "x"], [2, "y"]]


MIXED = Signature(
    features=(
        Feature("feature1", "number"),
        Feature("feature3", "string", enum=("A", "B", "C")),
        Feature("n", "integer"),
    ),
    task="classification",
    classes=(0, 1),
    has_proba=True,
)


def test_mixed_rows_decode_to_objects_of_their_own_kind() -> None:
    codec = SeedCodec(MIXED, allow_extra=False, max_rows=10)
    x = codec.decode_one({"feature1": 1, "feature3": "B", "n": 2})
    assert x.dtype == object and x.tolist() == [[1, "B", 2]]
    body = orjson.dumps({"instances": [{"feature1": 0.5, "feature3": "A", "n": 1}, [2.5, "C", 0]]})
    x = codec.decode_batch(orjson.loads(body), body)
    assert x.shape == (2, 3) and x.tolist() == [[0.5, "A", 1], [2.5, "C", 0]]


def test_a_category_outside_the_enum_is_refused_listing_the_allowed_values() -> None:
    codec = SeedCodec(MIXED, allow_extra=False, max_rows=10)
    with pytest.raises(InvalidInput) as info:
        codec.decode_one({"feature1": 1.0, "feature3": "D", "n": 2})
    assert info.value.details == [
        {"path": "feature3", "message": 'is "D", not one of "A", "B", "C"'}
    ]
    with pytest.raises(InvalidInput) as info:
        codec.decode_batch({"instances": [{"feature1": 1.0, "feature3": 3, "n": 2}]})
    assert info.value.details[0]["path"] == "instances[0].feature3"


def test_float32_answers_are_written_at_float32_precision() -> None:
    codec = SeedCodec(MIXED, allow_extra=False, max_rows=10)
    proba32 = np.array([[0.85, 0.15]], dtype=np.float32)
    one = codec.encode_one({"predict": np.array([0]), "predict_proba": proba32})
    assert orjson.dumps(one) == b'{"prediction":0,"probability":[0.85,0.15],"status":"success"}'
    batch = codec.encode_batch(
        {"predict": np.array([0, 1]), "predict_proba": np.array([[0.85, 0.15], [0.1, 0.9]], "f4")}
    )
    assert orjson.dumps(batch) == (
        b'{"predictions":[{"instance_id":0,"prediction":0,"probability":[0.85,0.15]},'
        b'{"instance_id":1,"prediction":1,"probability":[0.1,0.9]}],"status":"success"}'
    )
    regression = SeedCodec(SIG, allow_extra=False, max_rows=10)
    body = regression.encode_one({"predict": np.array([152.133], dtype=np.float32)})
    assert orjson.dumps(body) == b'{"prediction":152.133,"probability":null,"status":"success"}'


def test_float64_answers_keep_every_digit() -> None:
    codec = SeedCodec(MIXED, allow_extra=False, max_rows=10)
    proba = np.array([[0.8500000238418579, 0.14999999105930328]])
    one = codec.encode_one({"predict": np.array([0]), "predict_proba": proba})
    assert one["probability"] == [0.8500000238418579, 0.14999999105930328]


@pytest.mark.parametrize("allow_extra", [False, True])
def test_a_batch_sent_to_the_one_instance_route_says_so(allow_extra: bool) -> None:
    codec = SeedCodec(SIG, allow_extra=allow_extra, max_rows=1000)
    with pytest.raises(InvalidInput, match="predict_batch") as info:
        codec.decode_one({"instances": [{"a": 1.0, "b": 2.0, "n": 3}]})
    assert info.value.details == [
        {"path": "instances", "message": "is not a feature (a batch? use predict_batch)"}
    ]


def test_a_feature_named_instances_is_still_a_feature() -> None:
    sig = Signature(features=(Feature("instances", "number"),), task="regression")
    codec = SeedCodec(sig, allow_extra=False, max_rows=1000)
    assert codec.decode_one({"instances": 2.0}).tolist() == [[2.0]]


@pytest.mark.parametrize(
    ("payload", "path", "message"),
    [
        ({"a": True, "b": 1, "n": 1}, "a", "is a boolean (true), not a number"),
        ({"a": 1, "b": None, "n": 1}, "b", "is null, not a number"),
        ({"a": "1.5", "b": 1, "n": 1}, "a", 'is a string ("1.5"), not a number'),
        ({"a": [1], "b": 1, "n": 1}, "a", "is an array, not a number"),
        ({"a": 1, "b": 1, "n": 1.5}, "n", "is 1.5, not an integer"),
        ({"a": -1, "b": 1, "n": 1}, "a", "is -1, less than the minimum 0.0"),
        ({"a": 1, "b": 11, "n": 1}, "b", "is 11, more than the maximum 10.0"),
    ],
)
def test_messages_name_values_as_json(payload: Any, path: str, message: str) -> None:
    """A JSON client sent ``true`` and ``null``: the message must not say True, None or 'x'."""
    codec = SeedCodec(SIG, allow_extra=False, max_rows=10)
    with pytest.raises(InvalidInput) as info:
        codec.decode_one(payload)
    assert info.value.details == [{"path": path, "message": message}]
    assert info.value.message == f"Invalid input: {path} {message}"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1, 2], "has 2 values, not 3 (one per feature, in order)"),
        ([1, 2, 3, 4], "has 4 values, not 3 (one per feature, in order)"),
        ("1,2,3", 'is a string ("1,2,3"), not an object or array'),
    ],
)
def test_row_shape_messages_speak_json(row: Any, message: str) -> None:
    codec = SeedCodec(SIG, allow_extra=False, max_rows=10)
    with pytest.raises(InvalidInput) as info:
        codec.decode_batch({"instances": [row]})
    assert info.value.details == [{"path": "instances[0]", "message": message}]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a": NaN, "b": 1, "n": 1}', "a value is NaN, not a number"),
        (b'{"a": Infinity}', "a value is Infinity, not a finite number"),
        (b'{"a": -Infinity}', "a value is -Infinity, not a finite number"),
        (b'{"a": 1e999}', "1e999 is too large for a double"),
        (b'{"a": -2e400}', "-2e400 is too large for a double"),
        (b'{"a": True}', "True is Python; JSON writes true"),
        (b'{"a": None}', "None is Python; JSON writes null"),
        (b"{'a': 1}", "double quotes"),
    ],
)
def test_malformed_json_says_what_json_lacks(body: bytes, says: str) -> None:
    """Python's ``json.dumps(float("nan"))`` writes ``NaN``; orjson's message does not say so."""
    with pytest.raises(InvalidInput, match="^Malformed JSON at line 1 column") as info:
        parse_json(body)
    assert says in info.value.message


def test_string_features_longer_than_the_limit_are_refused() -> None:
    codec = SeedCodec(
        Signature(features=(Feature("city", "string"), Feature("n")), task="regression"),
        allow_extra=False,
        max_rows=10,
        max_string_length=5,
    )
    assert codec.decode_one({"city": "Paris", "n": 1}).tolist() == [["Paris", 1]]
    with pytest.raises(InvalidInput) as info:
        codec.decode_one({"city": "Paris!" * 1000, "n": 1})
    assert info.value.details == [
        {"path": "city", "message": "is longer than 5 characters (MODELSERVE_MAX_STRING_LENGTH)"}
    ]
    assert "Paris!" not in info.value.message  # the long value is not echoed back
    with pytest.raises(InvalidInput) as info:
        codec.decode_batch({"instances": [["Oslo", 1], ["Reykjavik", 2]]})
    assert info.value.details[0]["path"] == "instances[1][0]"


def _decode_checked(payload: Any, max_depth: int, codec: SeedCodec | None = None) -> np.ndarray:
    codec = codec or SeedCodec(SIG, allow_extra=False, max_rows=2)
    body = orjson.dumps(payload)
    return codec.decode_batch(parse_json(body, max_depth, measure=False), body, max_depth)


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": [[1.0, 2.0, 3]]},  # proven: depth 3
        {"instances": [GOOD]},
        {"instances": [[1.0, 2.0, 3]], "junk": [[[1]]]},  # proven rows, a walk of the rest
        {"instances": [[1.0, [[[2.0]]], 3]]},  # a deep row: not proven, measured
        {"instances": [[1.0, 2.0, 3]] * 3, "junk": [[[1]]]},  # too many rows, and deep
        {"instances": "x", "junk": [[[1]]]},  # not a batch, and deep
    ],
)
def test_the_depth_limit_comes_first_whether_or_not_the_rows_are_proven(payload: Any) -> None:
    depth = json_depth(orjson.dumps(payload), payload)
    with pytest.raises(InvalidInput, match=f"deeper than {depth - 1} levels"):
        _decode_checked(payload, depth - 1)
    if depth == 3:
        assert _decode_checked(payload, 3).shape == (1, 3)


def test_allowed_extra_fields_are_measured_not_assumed() -> None:
    codec = SeedCodec(SIG, allow_extra=True, max_rows=10)
    deep = {"instances": [{**GOOD, "note": [[["x"]]]}]}
    with pytest.raises(InvalidInput, match="deeper than 4 levels"):
        _decode_checked(deep, 4, codec)
    assert _decode_checked(deep, 6, codec).tolist() == [[0.5, 0.5, 1.0]]
