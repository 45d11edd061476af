"""Open Inference Protocol (V2) JSON and binary-tensor bodies to and from numpy arrays.

Requests are ``{"id", "parameters", "inputs": [...], "outputs": [...]}``; with the binary
tensor extension the JSON header is followed by raw tensor bytes and its length travels in the
``Inference-Header-Content-Length`` HTTP header. This module knows model signatures (to derive
tensor specs for tabular models and to map inputs onto them), never models, never HTTP.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..errors import PayloadTooLarge
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Signature
from ..types import Tensor
from ..types import TensorDict
from ..types import TensorSpec
from ._wording import describe
from ._wording import json_type
from ._wording import json_value
from ._wording import non_finite
from .seed import parse_json

#: V2 datatype -> numpy dtype. ``BYTES`` tensors are object arrays of ``bytes`` or ``str``.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPE_OF: dict[np.dtype[Any], str] = {dt: name for name, dt in DATATYPES.items()}
#: Which kinds of the array numpy infers from JSON numbers each datatype accepts. JSON has no
#: integer/float distinction on the wire, but a ``1.5`` sent as INT64 is a client bug: say so.
_JSON_KINDS: dict[str, str] = {
    "BOOL": "b",
    **dict.fromkeys(("UINT8", "UINT16", "UINT32", "UINT64"), "iu"),
    **dict.fromkeys(("INT8", "INT16", "INT32", "INT64"), "iu"),
    **dict.fromkeys(("FP16", "FP32", "FP64"), "iuf"),
}
_NUMERIC = frozenset(DATATYPES) - {"BOOL", "BYTES"}
_U32 = struct.Struct("<I")

#: Extensions listed in the server metadata.
EXTENSIONS = ("binary_tensor_data", "model_repository")


def datatype_of(array: Tensor) -> str:
    """The V2 datatype for an array; strings and other objects are ``BYTES``."""
    name = _DATATYPE_OF.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in "USO":
        return "BYTES"
    raise InvalidInput(f"Cannot send a tensor of numpy dtype {array.dtype} over V2")


# -- requests ---------------------------------------------------------------------------------


@dataclass
class RequestInput:
    """One decoded input tensor of a V2 request."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Tensor
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestOutput:
    """One output the client asked for, and whether it wants it as binary data."""

    name: str
    binary: bool


@dataclass
class InferenceRequest:
    """A decoded V2 inference request."""

    id: str | None
    parameters: dict[str, Any]
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None
    binary_output: bool = False
    """``parameters.binary_data_output``: the default for outputs not listed explicitly."""


def decode_request(
    body: bytes, header_length: int | None = None, max_depth: int | None = None
) -> InferenceRequest:
    """Parse a V2 request body, JSON only or JSON header + binary tensors.

    :param header_length: the ``Inference-Header-Content-Length`` header, when present.
    :param max_depth: the deepest nesting of the JSON header allowed.
    :raises InvalidInput: naming the input and what is wrong with it.
    """
    if header_length is None:
        header, rest = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes"
            )
        header, rest = body[:header_length], body[header_length:]
    if not header:
        raise InvalidInput("The request body is empty; send a V2 inference request")
    payload = parse_json(header, max_depth)
    if not isinstance(payload, dict):
        raise InvalidInput("A V2 inference request must be a JSON object")
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("inputs must be a non-empty array of tensors")
    parameters = _parameters(payload.get("parameters"), "parameters")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string")
    view = memoryview(rest)
    offset = 0
    inputs: list[RequestInput] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_inputs):
        tensor, used = _decode_input(raw, i, view[offset:])
        if tensor.name in seen:
            raise InvalidInput(f"Input {json_value(tensor.name)} is given twice")
        seen.add(tensor.name)
        offset += used
        inputs.append(tensor)
    if offset != len(rest):
        raise InvalidInput(
            f"The body has {len(rest) - offset} bytes of binary data that no input claims "
            "(check binary_data_size and Inference-Header-Content-Length)"
        )
    binary_output = _flag(parameters, "binary_data_output", "parameters", False)
    outputs: list[RequestOutput] | None = None
    raw_outputs = payload.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("outputs must be an array")
        outputs = []
        for j, out in enumerate(raw_outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InvalidInput(f"outputs[{j}] must be an object with a string name")
            if any(o.name == out["name"] for o in outputs):
                raise InvalidInput(f"Output {json_value(out['name'])} is requested twice")
            where = f"outputs[{j}].parameters"
            params = _parameters(out.get("parameters"), where)
            outputs.append(
                RequestOutput(out["name"], _flag(params, "binary_data", where, binary_output))
            )
    return InferenceRequest(request_id, parameters, inputs, outputs, binary_output)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str, default: bool) -> bool:
    """A boolean parameter, which must be a JSON ``true``/``false``.

    ``bool(value)`` would read ``"no"`` or ``"false"`` as true and ``0`` as false; a client
    that sends those has a bug, and guessing would silently change the response format.
    """
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(
            f"{where}.{key} must be true or false, got {json_value(value)}",
            [{"path": f"{where}.{key}", "message": "is not a boolean"}],
        )
    return value


def _decode_input(raw: Any, index: int, binary: memoryview) -> tuple[RequestInput, int]:
    """Decode one input; return it and how many bytes of binary data it consumed."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}].name must be a non-empty string")
    datatype = raw.get("datatype")
    # (a list or object is unhashable: test the type before the lookup)
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(
            f"Input {json_value(name)}: datatype {json_value(datatype)} is not one of "
            f"{', '.join(DATATYPES)}"
        )
    shape_raw = raw.get("shape")
    if not isinstance(shape_raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape_raw
    ):
        raise InvalidInput(
            f"Input {json_value(name)}: shape must be an array of non-negative integers"
        )
    shape = tuple(shape_raw)
    count = math.prod(shape)
    where = f"inputs[{index}].parameters"
    parameters = _parameters(raw.get("parameters"), where)
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(
                f"Input {json_value(name)}: binary_data_size must be a non-negative integer, "
                f"got {json_value(size)}",
                [{"path": f"{where}.binary_data_size", "message": "is not a non-negative integer"}],
            )
        if size > len(binary):
            raise InvalidInput(
                f"Input {json_value(name)}: binary_data_size {json_value(size)} does not fit the "
                f"{len(binary)} bytes of binary data left in the body"
            )
        if "data" in raw:
            raise InvalidInput(f"Input {json_value(name)} has both data and binary_data_size")
        array = _from_binary(name, datatype, shape, count, binary[:size])
        return RequestInput(name, datatype, shape, array, parameters), size
    if "data" not in raw:
        raise InvalidInput(f"Input {json_value(name)} has no data")
    array = _from_json(name, datatype, shape, count, raw["data"])
    return RequestInput(name, datatype, shape, array, parameters), 0


def _from_json(name: str, datatype: str, shape: tuple[int, ...], count: int, data: Any) -> Tensor:
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            array = np.array(data, dtype=object)
        else:
            array = np.array(data)
    except ValueError:  # ragged nesting
        raise InvalidInput(
            f"Input {json_value(name)}: data is not a regular nested array (rows differ in length)"
        ) from None
    if array.size != count:
        raise InvalidInput(
            f"Input {json_value(name)}: shape {list(shape)} needs {count} elements, "
            f"data has {array.size}"
        )
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in array.flat):
            raise InvalidInput(f"Input {json_value(name)}: BYTES data must be strings")
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    if count and dtype.kind in "iu" and array.dtype.kind not in "iu":
        # numpy falls back to float (or object) when ints mix int64 and uint64 ranges.
        array = _exact_ints(name, datatype, data, array)
    if count and array.dtype.kind not in _JSON_KINDS[datatype]:
        raise InvalidInput(
            f"Input {json_value(name)}: data of JSON type {_json_kind(array)} does not fit "
            f"datatype {datatype}"
        )
    if count and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(f"Input {json_value(name)}: a value is out of range for {datatype}")
    return array.astype(dtype, copy=False).reshape(shape)


def _exact_ints(name: str, datatype: str, data: Any, array: Tensor) -> Tensor:
    """Slow path for integer data numpy could not hold in one integer dtype."""
    values = np.array(data, dtype=object).reshape(-1)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return array  # not all integers: the kind check reports it
    info = np.iinfo(DATATYPES[datatype])
    if min(values) < info.min or max(values) > info.max:
        raise InvalidInput(f"Input {json_value(name)}: a value is out of range for {datatype}")
    return values.astype(DATATYPES[datatype])


def _json_kind(array: Tensor) -> str:
    kind = {"b": "boolean", "i": "integer", "u": "integer", "f": "number", "U": "string"}.get(
        array.dtype.kind
    )
    if kind is not None:
        return kind
    # An object array: numpy found values of several JSON types (or nulls) in the data.
    kinds = sorted({json_type(v) for v in array.flat})
    return ", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]


def _from_binary(
    name: str, datatype: str, shape: tuple[int, ...], count: int, raw: memoryview
) -> Tensor:
    if datatype == "BYTES":
        items = _split_bytes(name, raw)
        if len(items) != count:
            raise InvalidInput(
                f"Input {json_value(name)}: shape {list(shape)} needs {count} elements, "
                f"binary data has {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"Input {json_value(name)}: shape {list(shape)} of {datatype} needs "
            f"{count * dtype.itemsize} bytes, binary_data_size is {len(raw)}"
        )
    # Little-endian on the wire; numpy's native order on every platform we serve from.
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def _split_bytes(name: str, raw: memoryview) -> list[bytes]:
    """Split the protocol's BYTES layout: each element is a 4-byte little-endian length,
    then that many bytes."""
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise InvalidInput(f"Input {json_value(name)}: truncated BYTES element length")
        (length,) = _U32.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInput(f"Input {json_value(name)}: truncated BYTES element")
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    return items


# -- responses --------------------------------------------------------------------------------


def _tensor_item(name: str, array: Tensor, binary: bool, blobs: list[bytes]) -> dict[str, Any]:
    """One tensor of a request or response: JSON ``data``, or appended to ``blobs`` as binary
    data (the binary tensor extension) with its size in ``parameters``."""
    datatype = datatype_of(array)
    item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if binary:
        blob = _to_binary(datatype, array)
        item["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    else:
        item["data"] = _to_json(datatype, array)
    return item


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[tuple[str, Tensor, bool]],
) -> tuple[bytes, int | None]:
    """Serialise a V2 response: ``outputs`` are ``(name, array, as_binary)``.

    :returns: the body and, when any output is binary, the JSON header's length (the value of
        ``Inference-Header-Content-Length``); ``None`` for a pure JSON body.
    """
    items: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        items.append(_tensor_item(name, array, binary, blobs))
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        body["id"] = request_id
    body["parameters"] = {}
    body["outputs"] = items
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _to_json(datatype: str, array: Tensor) -> Any:
    if datatype == "BYTES":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.flat
        ]
    # orjson writes contiguous numeric arrays without a Python loop.
    return np.ascontiguousarray(array).reshape(-1)


def _to_binary(datatype: str, array: Tensor) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in array.flat:
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(_U32.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


# -- the client side ----------------------------------------------------------------------------


def encode_request(
    inputs: Sequence[tuple[str, Tensor, bool]],
    outputs: Sequence[RequestOutput] | None = None,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    binary_output: bool = False,
) -> tuple[bytes, int | None]:
    """Build a V2 request body from ``(name, array, as_binary)`` inputs (the client's half).

    :returns: the body and the JSON header's length when any input is binary, else ``None``.
    """
    items: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in inputs:
        items.append(_tensor_item(name, array, binary, blobs))
    body: dict[str, Any] = {}
    if request_id is not None:
        body["id"] = request_id
    params = dict(parameters or {})
    if binary_output and outputs is None:
        params["binary_data_output"] = True
    if params:
        body["parameters"] = params
    body["inputs"] = items
    if outputs is not None:
        body["outputs"] = [
            {"name": o.name, "parameters": {"binary_data": o.binary}} for o in outputs
        ]
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def decode_response(
    body: bytes, header_length: int | None = None
) -> tuple[dict[str, Any], TensorDict]:
    """Split a V2 response into its JSON (without the tensors) and the output arrays.

    ``BYTES`` outputs come back as object arrays of ``str`` from JSON and of ``bytes`` from
    binary data, as the protocol carries them.
    """
    header = body if header_length is None else body[:header_length]
    meta = orjson.loads(header)
    view = memoryview(body)[len(header) :]
    offset = 0
    arrays: TensorDict = {}
    for out in meta.get("outputs", []):
        name, datatype, shape = out["name"], out["datatype"], tuple(out["shape"])
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            arrays[name] = _from_binary(
                name, datatype, shape, math.prod(shape), view[offset : offset + size]
            )
            offset += size
        else:
            arrays[name] = _from_json(name, datatype, shape, math.prod(shape), out.pop("data"))
    return meta, arrays


# -- signatures -------------------------------------------------------------------------------


def tabular_specs(signature: Signature) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Derive V2 tensor specs for a tabular model from its features and classes."""
    n = len(signature.features)
    inputs = (TensorSpec(TABULAR_INPUT, "FP64" if signature.numeric else "BYTES", (-1, n)),)
    if signature.task == "classification" and signature.classes is not None:
        label = datatype_of(np.asarray(signature.classes))
    else:
        label = "FP64"
    outputs = [TensorSpec(PREDICT_OUTPUT, label, (-1,))]
    if signature.has_proba:
        n_classes = len(signature.classes) if signature.classes is not None else -1
        outputs.append(TensorSpec(PROBA_OUTPUT, "FP64", (-1, n_classes)))
    return inputs, tuple(outputs)


class V2Codec:
    """Map decoded V2 inputs onto one model version's runtime inputs, and check outputs.

    Built once per model version. Tabular models take either one ``input`` tensor
    ``[N, F]`` or one ``[N]``/``[N, 1]`` tensor per feature, named after the features
    (MLServer-style columns); other models take their ``tensor_inputs`` by name.
    """

    def __init__(
        self,
        signature: Signature,
        max_rows: int | None = None,
        max_string_length: int | None = None,
    ) -> None:
        self.signature = signature
        self.max_rows = max_rows
        self.max_string_length = max_string_length
        self.tabular = signature.kind == "tabular" and not signature.tensor_inputs
        if self.tabular:
            self.inputs, self.outputs = tabular_specs(signature)
        else:
            self.inputs, self.outputs = signature.tensor_inputs, signature.tensor_outputs
        self.output_names = tuple(spec.name for spec in self.outputs)
        self._input_specs = {spec.name: spec for spec in self.inputs}
        self._features = signature.feature_names
        self._feature_index = {n: i for i, n in enumerate(self._features)}
        self._numeric_columns = np.array(
            [f.type in ("number", "integer") for f in signature.features], dtype=bool
        )

    def metadata(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [s.to_dict() for s in self.inputs], [s.to_dict() for s in self.outputs]

    def check_outputs(self, outputs: list[RequestOutput] | None) -> list[str]:
        """The output names to compute; every requested name must exist."""
        if outputs is None:
            return list(self.output_names)
        names = []
        for out in outputs:
            if out.name not in self.output_names:
                raise InvalidInput(
                    f"Unknown output {json_value(out.name)}; this model has "
                    f"{', '.join(self.output_names)}"
                )
            names.append(out.name)
        return names

    def model_inputs(self, inputs: list[RequestInput]) -> TensorDict:
        """Turn request tensors into the runtime's inputs.

        An empty batch (zero rows: shape ``[0, ...]`` on the batch axis) is refused with a
        400, as the seed routes refuse ``{"instances": []}``: runtimes disagree on it (sklearn
        raises, onnxruntime logs an ``ArrayFeatureExtractor`` error line), and a request
        without rows is a client bug, not a question with an empty answer.

        :raises InvalidInput: unknown or missing inputs, wrong datatypes or shapes, no rows.
        """
        if self.tabular:
            table = self._tabular(inputs)
            if table.shape[0] == 0:
                raise InvalidInput(
                    "The request has no rows (shape [0, ...]); send at least one",
                    [
                        {"path": f"inputs[{i}].shape", "message": "has 0 rows"}
                        for i in range(len(inputs))
                    ],
                )
            if self.max_rows is not None and table.shape[0] > self.max_rows:
                raise PayloadTooLarge(
                    f"{table.shape[0]} rows is more than the {self.max_rows} allowed per request "
                    "(MODELSERVE_MAX_BATCH_ROWS)"
                )
            return {TABULAR_INPUT: table}
        return self._tensors(inputs)

    # -- tabular ---------------------------------------------------------------------------

    def _tabular(self, inputs: list[RequestInput]) -> Tensor:
        n = len(self._features)
        if len(inputs) == 1 and inputs[0].name == TABULAR_INPUT:
            tensor = inputs[0]
            shape = tensor.shape
            if len(shape) == 1 and n == 1:
                shape = (shape[0], 1)
            if len(shape) != 2 or shape[1] != n:
                raise InvalidInput(
                    f"Input {json_value(TABULAR_INPUT)} must have shape [rows, {n}], "
                    f"got {list(tensor.shape)}"
                )
            return self._as_table(tensor, tensor.data.reshape(shape))
        columns: list[Tensor | None] = [None] * n
        rows: int | None = None
        for tensor in inputs:
            index = self._feature_index.get(tensor.name)
            if index is None:
                raise InvalidInput(
                    f"Unknown input {json_value(tensor.name)}: send one "
                    f"{json_value(TABULAR_INPUT)} tensor "
                    f"[rows, {n}] or one tensor per feature ({', '.join(self._features)})"
                )
            shape = tensor.shape
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise InvalidInput(
                    f"Input {json_value(tensor.name)} must have shape [rows] or [rows, 1], "
                    f"got {list(shape)}"
                )
            if rows is None:
                rows = shape[0]
            elif shape[0] != rows:
                raise InvalidInput(
                    f"Input {json_value(tensor.name)} has {shape[0]} rows, other inputs have {rows}"
                )
            columns[index] = self._as_table(tensor, tensor.data.reshape(shape[0], 1))
        missing = [self._features[i] for i, c in enumerate(columns) if c is None]
        if missing:
            raise InvalidInput(f"Missing input(s): {', '.join(missing)}")
        present = [c for c in columns if c is not None]
        dtype: Any = np.float64 if self.signature.numeric else object
        return np.concatenate(present, axis=1).astype(dtype, copy=False)

    def _as_table(self, tensor: RequestInput, data: Tensor) -> Tensor:
        """Cast to the model's table dtype: float64 when every feature is a number.

        Numeric features must be finite, as on the JSON routes (where JSON cannot carry NaN):
        binary FP32/FP64 tensors can, ``BYTES`` can spell ``"nan"``, and a compiled graph
        answers NaN probabilities and an arbitrary label for them instead of an error.
        """
        names = self._features if data.shape[1] == len(self._features) else (tensor.name,)
        if self.signature.numeric:
            if tensor.datatype not in _NUMERIC:
                raise InvalidInput(
                    f"Input {json_value(tensor.name)}: datatype {tensor.datatype} does not fit "
                    "a model whose features are all numbers (send FP32/FP64/INT*)"
                )
            table = data.astype(np.float64, copy=False)
            if data.dtype.kind == "f":
                _check_finite(tensor.name, table, names)
            return table
        table = data.astype(object)
        numeric = (
            self._numeric_columns
            if len(names) == len(self._features)
            else self._numeric_columns[[self._feature_index[tensor.name]]]
        )
        if tensor.datatype == "BYTES":
            table = np.vectorize(_text, otypes=[object])(table) if table.size else table
            # Numeric columns of a mixed table still have to be numbers for the model.
            if numeric.any():
                try:
                    table[:, numeric] = table[:, numeric].astype(np.float64)
                except ValueError:
                    raise _not_a_number(tensor.name, table, names, numeric) from None
            self._check_string_length(tensor.name, table[:, ~numeric])
        if numeric.any() and (tensor.datatype == "BYTES" or data.dtype.kind == "f"):
            values = np.zeros(table.shape)  # the other columns are strings: never NaN
            values[:, numeric] = table[:, numeric].astype(np.float64)
            _check_finite(tensor.name, values, names)
        return table

    def _check_string_length(self, name: str, strings: Tensor) -> None:
        limit = self.max_string_length
        if limit is None or not strings.size:
            return
        longest = max((len(v) for v in strings.ravel().tolist() if isinstance(v, str)), default=0)
        if longest > limit:
            raise InvalidInput(
                f"Input {name!r}: a string feature is longer than {limit} characters "
                "(MODELSERVE_MAX_STRING_LENGTH)"
            )

    # -- tensors ---------------------------------------------------------------------------

    def _tensors(self, inputs: list[RequestInput]) -> TensorDict:
        out: TensorDict = {}
        for i, tensor in enumerate(inputs):
            spec = self._input_specs.get(tensor.name)
            if spec is None:
                raise InvalidInput(
                    f"Unknown input {json_value(tensor.name)}; this model takes "
                    f"{', '.join(self._input_specs)}"
                )
            if tensor.datatype != spec.datatype:
                raise InvalidInput(
                    f"Input {json_value(tensor.name)} must be {spec.datatype}, "
                    f"got {tensor.datatype}"
                )
            if len(tensor.shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, tensor.shape, strict=True)
            ):
                raise InvalidInput(
                    f"Input {json_value(tensor.name)} must have shape {list(spec.shape)} "
                    f"(-1: any), got {list(tensor.shape)}"
                )
            if spec.shape and spec.shape[0] == -1 and tensor.shape[0] == 0:
                raise InvalidInput(
                    f"Input {json_value(tensor.name)} has no rows (shape {list(tensor.shape)}); "
                    "send at least one",
                    [{"path": f"inputs[{i}].shape", "message": "has 0 rows"}],
                )
            out[tensor.name] = tensor.data
        missing = [name for name in self._input_specs if name not in out]
        if missing:
            raise InvalidInput(f"Missing input(s): {', '.join(missing)}")
        return out


def _check_finite(name: str, table: Tensor, features: Sequence[str]) -> None:
    """Refuse NaN and infinities in a ``[rows, features]`` float table, naming the first."""
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = (int(k) for k in np.argwhere(bad)[0])
        what = non_finite(float(table[row, col]))
        raise InvalidInput(
            f"Input {json_value(name)}: row {row}, feature {features[col]} {what}",
            [{"path": _cell(name, row, col, features), "message": what}],
        )


def _cell(name: str, row: int, col: int, features: Sequence[str]) -> str:
    """The path of one value: ``input[3][1]`` in a table, ``petal_width[3]`` in a column."""
    return (
        f"{name}[{row}]" if features == [name] or features == (name,) else f"{name}[{row}][{col}]"
    )


def _not_a_number(
    name: str, table: Tensor, features: Sequence[str], numeric: Tensor
) -> InvalidInput:
    """The error for the first value of a numeric feature that does not read as a number."""
    for row, values in enumerate(table):
        for col in (int(c) for c in np.flatnonzero(numeric)):
            try:
                float(values[col])
            except (TypeError, ValueError):
                what = f"is {describe(values[col])}, not a number"
                return InvalidInput(
                    f"Input {json_value(name)}: row {row}, feature {features[col]} {what}",
                    [{"path": _cell(name, row, col, features), "message": what}],
                )
    return InvalidInput(f"Input {json_value(name)}: a numeric feature is not a number")


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value
