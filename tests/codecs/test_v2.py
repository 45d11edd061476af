from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.codecs.v2 import DATATYPES
from modelserve.codecs.v2 import RequestInput
from modelserve.codecs.v2 import RequestOutput
from modelserve.codecs.v2 import V2Codec
from modelserve.codecs.v2 import decode_request
from modelserve.codecs.v2 import encode_response
from modelserve.codecs.v2 import tabular_specs
from modelserve.errors import InvalidInput
from modelserve.types import Feature
from modelserve.types import Signature
from modelserve.types import TensorSpec

IRIS = Signature(
    features=tuple(Feature(n) for n in ("a", "b", "c", "d")),
    task="classification",
    classes=(0, 1, 2),
    has_proba=True,
)


def _request(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def _binary_request(
    arrays: dict[str, tuple[str, np.ndarray | bytes, list[int]]], **extra: Any
) -> tuple[bytes, int]:
    inputs, blobs = [], []
    for name, (datatype, value, shape) in arrays.items():
        blob = value if isinstance(value, bytes) else value.tobytes()
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = orjson.dumps({"inputs": inputs, **extra})
    return header + b"".join(blobs), len(header)


JSON_SAMPLES = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 255, 7],
    "UINT16": [0, 1, 65535, 7],
    "UINT32": [0, 1, 2**32 - 1, 7],
    "UINT64": [0, 1, 2**64 - 1, 7],
    "INT8": [-128, 1, 127, 7],
    "INT16": [-(2**15), 1, 2**15 - 1, 7],
    "INT32": [-(2**31), 1, 2**31 - 1, 7],
    "INT64": [-(2**63), 1, 2**63 - 1, 7],
    "FP16": [0.5, -1.0, 2.0, 1.5],
    "FP32": [0.5, -1.0, 2.25, 1.5],
    "FP64": [0.1, -1.0, 2.25, 1e300],
    "BYTES": ["a", "bé", "", "xyz"],
}


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_every_datatype_json_flat_and_nested(datatype: str) -> None:
    flat = JSON_SAMPLES[datatype]
    nested = [flat[:2], flat[2:]]
    for data in (flat, nested):
        req = decode_request(
            _request({"name": "t", "datatype": datatype, "shape": [2, 2], "data": data})
        )
        (tensor,) = req.inputs
        assert tensor.data.shape == (2, 2)
        assert tensor.data.dtype == DATATYPES[datatype]
        assert tensor.data.reshape(-1).tolist() == flat


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_every_datatype_binary_round_trip(datatype: str) -> None:
    array = np.array(JSON_SAMPLES[datatype], dtype=DATATYPES[datatype]).reshape(2, 2)
    body, length = _binary_request({"t": (datatype, array, [2, 2])})
    (tensor,) = decode_request(body, length).inputs
    np.testing.assert_array_equal(tensor.data, array)
    # and back out, as binary and as JSON
    out, header_len = encode_response("m", "1", None, [("t", tensor.data, True)])
    assert header_len is not None
    header = orjson.loads(out[:header_len])
    assert header["outputs"][0]["datatype"] == datatype
    assert header["outputs"][0]["parameters"]["binary_data_size"] == array.nbytes
    back = np.frombuffer(out[header_len:], dtype=array.dtype).reshape(2, 2)
    np.testing.assert_array_equal(back, array)
    out, header_len = encode_response("m", "1", "id-1", [("t", array, False)])
    assert header_len is None
    body_json = orjson.loads(out)
    assert body_json["id"] == "id-1"
    assert body_json["outputs"][0]["data"] == array.reshape(-1).tolist()


def test_bytes_binary_round_trip() -> None:
    items = [b"abc", b"", "é".encode()]
    raw = b"".join(struct.pack("<I", len(i)) + i for i in items)
    body, length = _binary_request({"s": ("BYTES", raw, [3])})
    (tensor,) = decode_request(body, length).inputs
    assert tensor.data.tolist() == items
    out, header_len = encode_response("m", "1", None, [("s", tensor.data, True)])
    assert header_len is not None and out[header_len:] == raw


def test_binary_and_json_inputs_mix_in_order() -> None:
    a = np.arange(6, dtype=np.float32)
    b = np.arange(3, dtype=np.int64)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "FP32",
                    "shape": [6],
                    "parameters": {"binary_data_size": 24},
                },
                {"name": "j", "datatype": "INT32", "shape": [1], "data": [5]},
                {
                    "name": "b",
                    "datatype": "INT64",
                    "shape": [3],
                    "parameters": {"binary_data_size": 24},
                },
            ]
        }
    )
    req = decode_request(header + a.tobytes() + b.tobytes(), len(header))
    assert [t.data.tolist() for t in req.inputs] == [a.tolist(), [5], b.tolist()]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "t", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}, "needs 4 elements"),
        ({"name": "t", "datatype": "INT64", "shape": [2], "data": [1.5, 2]}, "does not fit"),
        ({"name": "t", "datatype": "FP64", "shape": [2], "data": ["a", "b"]}, "does not fit"),
        ({"name": "t", "datatype": "BOOL", "shape": [2], "data": [1, 0]}, "does not fit"),
        ({"name": "t", "datatype": "UINT8", "shape": [1], "data": [256]}, "out of range"),
        ({"name": "t", "datatype": "INT8", "shape": [1], "data": [-129]}, "out of range"),
        ({"name": "t", "datatype": "BYTES", "shape": [1], "data": [1]}, "must be strings"),
        ({"name": "t", "datatype": "FP128", "shape": [1], "data": [1]}, "datatype"),
        ({"name": "t", "datatype": "FP32", "shape": [-1], "data": [1]}, "shape"),
        ({"name": "t", "datatype": "FP32", "shape": [2]}, "no data"),
        ({"name": "t", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}, "regular"),
        ({"datatype": "FP32", "shape": [1], "data": [1]}, "name"),
        ({"name": "t", "datatype": ["FP32"], "shape": [1], "data": [1]}, "datatype"),
        ({"name": "t", "datatype": "FP32", "shape": [True], "data": [1]}, "shape"),
        ({"name": "t", "datatype": "FP32", "shape": [1], "parameters": []}, "object"),
    ],
)
def test_bad_tensors_are_invalid_input(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(_request(tensor))


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"", None, "empty"),
        (b"{nope", None, "Malformed JSON"),
        (b"[]", None, "JSON object"),
        (b'{"inputs": []}', None, "non-empty"),
        (
            b'{"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}]}xx',
            74,
            "claims",
        ),
        (b"{}", 99, "Inference-Header-Content-Length"),
    ],
)
def test_bad_bodies_are_invalid_input(body: bytes, length: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(body, length)


def test_binary_size_must_match_shape() -> None:
    body, length = _binary_request({"t": ("FP32", np.zeros(3, dtype=np.float32), [4])})
    with pytest.raises(InvalidInput, match="needs 16 bytes"):
        decode_request(body, length)


def test_requested_outputs_and_binary_flags() -> None:
    req = decode_request(
        _request(
            {"name": "t", "datatype": "FP32", "shape": [1], "data": [1]},
            parameters={"binary_data_output": True},
            outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
            id="x",
        )
    )
    assert req.id == "x"
    assert req.outputs == [RequestOutput("a", True), RequestOutput("b", False)]


def test_tabular_specs_from_signature() -> None:
    inputs, outputs = tabular_specs(IRIS)
    assert inputs == (TensorSpec("input", "FP64", (-1, 4)),)
    assert outputs == (
        TensorSpec("predict", "INT64", (-1,)),
        TensorSpec("predict_proba", "FP64", (-1, 3)),
    )
    text = Signature(features=(Feature("s", "string"),), task="regression")
    assert tabular_specs(text) == (
        (TensorSpec("input", "BYTES", (-1, 1)),),
        (TensorSpec("predict", "FP64", (-1,)),),
    )
    labels = Signature(features=IRIS.features, task="classification", classes=("x", "y"))
    assert tabular_specs(labels)[1][0].datatype == "BYTES"


def _tensor(name: str, datatype: str, data: np.ndarray) -> RequestInput:
    return RequestInput(name, datatype, data.shape, data)


def test_tabular_matrix_and_columns_give_the_same_table() -> None:
    codec = V2Codec(IRIS)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    matrix = codec.model_inputs([_tensor("input", "FP32", x)])["input"]
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, x)
    columns = [_tensor(n, "INT64", x[:, i].astype(np.int64)) for i, n in enumerate("dcba"[::-1])]
    np.testing.assert_array_equal(codec.model_inputs(columns[::-1])["input"], x)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([_tensor("input", "FP64", np.zeros((2, 3)))], r"shape \[rows, 4\]"),
        ([_tensor("input", "BYTES", np.array([["a"] * 4], dtype=object))], "datatype BYTES"),
        ([_tensor("zzz", "FP64", np.zeros(2))], 'Unknown input "zzz"'),
        ([_tensor("a", "FP64", np.zeros(2))], "Missing input"),
        (
            [_tensor(n, "FP64", np.zeros(2 + (n == "d"))) for n in "abcd"],
            "rows",
        ),
    ],
)
def test_tabular_input_errors(inputs: list[RequestInput], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        V2Codec(IRIS).model_inputs(inputs)


def test_mixed_tabular_columns_keep_numbers_numeric() -> None:
    sig = Signature(features=(Feature("city", "string"), Feature("n")), task="regression")
    codec = V2Codec(sig)
    table = codec.model_inputs(
        [
            _tensor("city", "BYTES", np.array([b"Paris", b"Oslo"], dtype=object)),
            _tensor("n", "FP32", np.array([1.0, 2.0], dtype=np.float32)),
        ]
    )["input"]
    assert table.tolist() == [["Paris", 1.0], ["Oslo", 2.0]]
    matrix = codec.model_inputs(
        [_tensor("input", "BYTES", np.array([["Rome", "3.5"]], dtype=object))]
    )["input"]
    assert matrix.tolist() == [["Rome", 3.5]]
    with pytest.raises(InvalidInput, match="not a number"):
        codec.model_inputs([_tensor("input", "BYTES", np.array([["Rome", "x"]], dtype=object))])


def test_tensor_models_take_inputs_by_spec() -> None:
    sig = Signature(
        features=(),
        task="classification",
        kind="image",
        tensor_inputs=(TensorSpec("image", "UINT8", (-1, 2, 2, 3)),),
        tensor_outputs=(TensorSpec("logits", "FP32", (-1, 10)),),
    )
    codec = V2Codec(sig)
    img = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    assert codec.model_inputs([_tensor("image", "UINT8", img)])["image"] is img
    assert codec.check_outputs(None) == ["logits"]
    with pytest.raises(InvalidInput, match="must be UINT8"):
        codec.model_inputs([_tensor("image", "FP32", img.astype(np.float32))])
    with pytest.raises(InvalidInput, match="must have shape"):
        codec.model_inputs([_tensor("image", "UINT8", np.zeros((1, 3, 2, 3), dtype=np.uint8))])
    with pytest.raises(InvalidInput, match="Unknown output"):
        codec.check_outputs([RequestOutput("nope", False)])


@pytest.mark.parametrize("binary", [True, False])
def test_client_request_and_response_halves_round_trip(binary: bool) -> None:
    from modelserve.codecs.v2 import decode_response
    from modelserve.codecs.v2 import encode_request

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array(["a", "bc"], dtype=object)
    body, length = encode_request(
        [("x", x, binary), ("s", s, binary)],
        [RequestOutput("x", binary)],
        request_id="q",
        parameters={"p": 1},
    )
    assert (length is not None) == binary
    req = decode_request(body, length)
    assert req.id == "q" and req.parameters == {"p": 1}
    assert req.outputs == [RequestOutput("x", binary)]
    np.testing.assert_array_equal(req.inputs[0].data, x)
    assert [v.decode() if isinstance(v, bytes) else v for v in req.inputs[1].data] == ["a", "bc"]
    out, out_length = encode_response(
        "m", "3", req.id, [(t.name, t.data, binary) for t in req.inputs]
    )
    meta, arrays = decode_response(out, out_length)
    assert meta["model_version"] == "3" and meta["id"] == "q"
    np.testing.assert_array_equal(arrays["x"], x)
    assert arrays["x"].dtype == np.float32
    assert [v.decode() if isinstance(v, bytes) else v for v in arrays["s"]] == ["a", "bc"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("yes", '"yes"'),
        ("false", '"false"'),
        (1, "1"),
        (0, "0"),
        (None, "null"),
        ([True], "[true]"),
    ],
)
@pytest.mark.parametrize("where", ["request", "output"])
def test_binary_flags_must_be_json_booleans(where: str, value: Any, shown: str) -> None:
    tensor = {"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}
    if where == "request":
        body = _request(tensor, parameters={"binary_data_output": value})
        path = "parameters.binary_data_output"
    else:
        body = _request(tensor, outputs=[{"name": "a", "parameters": {"binary_data": value}}])
        path = "outputs[0].parameters.binary_data"
    with pytest.raises(InvalidInput, match="must be true or false") as info:
        decode_request(body)
    # The value as the client wrote it in JSON, not its Python repr ('yes', None, [True]).
    assert info.value.message.endswith(f"got {shown}")
    assert info.value.details == [{"path": path, "message": "is not a boolean"}]


@pytest.mark.parametrize("size", [True, False, -1, 4.0, "4", None])
def test_binary_data_size_must_be_a_non_negative_integer(size: Any) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "t",
                    "datatype": "FP32",
                    "shape": [1],
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    body = header + np.zeros(1, dtype=np.float32).tobytes()
    if size is None:  # an explicit null is "no binary data": then the input has no data
        with pytest.raises(InvalidInput, match="no data"):
            decode_request(body, len(header))
        return
    with pytest.raises(InvalidInput, match="non-negative integer") as info:
        decode_request(body, len(header))
    assert info.value.details[0]["path"] == "inputs[0].parameters.binary_data_size"


def test_an_output_requested_twice_is_invalid() -> None:
    tensor = {"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(InvalidInput, match="twice"):
        decode_request(_request(tensor, outputs=[{"name": "a"}, {"name": "a"}]))


@pytest.mark.parametrize(
    ("signature", "inputs"),
    [
        (IRIS, [_tensor("input", "FP64", np.zeros((0, 4)))]),
        (IRIS, [_tensor(n, "FP64", np.zeros(0)) for n in "abcd"]),
        (
            Signature(
                features=(),
                task="regression",
                kind="tensor",
                tensor_inputs=(TensorSpec("x", "FP32", (-1, 3)),),
                tensor_outputs=(TensorSpec("y", "FP32", (-1,)),),
            ),
            [_tensor("x", "FP32", np.zeros((0, 3), dtype=np.float32))],
        ),
    ],
)
def test_an_empty_batch_is_refused(signature: Signature, inputs: list[RequestInput]) -> None:
    with pytest.raises(InvalidInput, match="no rows") as info:
        V2Codec(signature).model_inputs(inputs)
    assert info.value.details[0] == {"path": "inputs[0].shape", "message": "has 0 rows"}


@pytest.mark.parametrize(
    ("value", "what"),
    [(np.nan, "is NaN, not a number"), (np.inf, "is Infinity, not a finite number")],
)
@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_binary_tabular_data_must_be_finite(value: float, what: str, datatype: str) -> None:
    """JSON cannot carry NaN, binary tensors can: refuse them as the JSON routes do, instead
    of letting a compiled graph answer NaN probabilities with an arbitrary label."""
    x = np.ones((3, 4), dtype=DATATYPES[datatype])
    x[2, 1] = value
    body, length = _binary_request({"input": (datatype, x, [3, 4])})
    request = decode_request(body, length)
    with pytest.raises(InvalidInput) as info:
        V2Codec(IRIS).model_inputs(request.inputs)
    assert info.value.message == f'Input "input": row 2, feature b {what}'
    assert info.value.details == [{"path": "input[2][1]", "message": what}]
    columns = [_tensor(n, datatype, x[:, i]) for i, n in enumerate("abcd")]
    with pytest.raises(InvalidInput) as info:
        V2Codec(IRIS).model_inputs(columns)
    assert info.value.details == [{"path": "b[2]", "message": what}]


def test_mixed_tables_refuse_nan_and_non_numbers_in_numeric_features() -> None:
    sig = Signature(features=(Feature("city", "string"), Feature("n")), task="regression")
    city = _tensor("city", "BYTES", np.array([b"Paris", b"Oslo"], dtype=object))
    for n, what in [
        (_tensor("n", "FP32", np.array([1.0, np.nan], dtype=np.float32)), "is NaN, not a number"),
        (_tensor("n", "BYTES", np.array([b"1", b"-inf"], dtype=object)), "is -Infinity, not a"),
        (_tensor("n", "BYTES", np.array([b"1", b"x"], dtype=object)), 'is a string ("x"), not a'),
    ]:
        with pytest.raises(InvalidInput) as info:
            V2Codec(sig).model_inputs([city, n])
        assert info.value.message.startswith(f'Input "n": row 1, feature n {what}')
    table = np.array([[b"Paris", b"nan"]], dtype=object)
    with pytest.raises(InvalidInput, match=r"row 0, feature n is NaN") as info:
        V2Codec(sig).model_inputs([_tensor("input", "BYTES", table)])
    assert info.value.details == [{"path": "input[0][1]", "message": "is NaN, not a number"}]


def test_data_of_several_json_types_names_them() -> None:
    body = _request({"name": "input", "datatype": "FP64", "shape": [3], "data": [1, None, "a"]})
    with pytest.raises(InvalidInput) as info:
        decode_request(body)
    assert info.value.message == (
        'Input "input": data of JSON type null, number and string does not fit datatype FP64'
    )


def test_v2_string_features_longer_than_the_limit_are_refused() -> None:
    sig = Signature(features=(Feature("city", "string"), Feature("n")), task="regression")
    codec = V2Codec(sig, max_string_length=5)
    ok = [
        _tensor("city", "BYTES", np.array([b"Paris"], dtype=object)),
        _tensor("n", "FP32", np.array([1.0], dtype=np.float32)),
    ]
    assert codec.model_inputs(ok)["input"].tolist() == [["Paris", 1.0]]
    with pytest.raises(InvalidInput, match="longer than 5 characters"):
        codec.model_inputs(
            [_tensor("input", "BYTES", np.array([["Reykjavik", "2"]], dtype=object))]
        )
