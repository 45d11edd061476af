"""The tutorial's JSON shapes (``/predict``, ``/predict_batch``) to and from numpy arrays.

Requests: one object of named features, or ``{"instances": [...]}`` whose items are objects or
lists in feature order. Responses: ``prediction`` (the label as the model knows it),
``probability`` (a list aligned with the classes, ``null`` for regressors).
"""

from __future__ import annotations

import math
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..errors import PayloadTooLarge
from ..floats import widen_float32
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import Signature
from ..types import Tensor
from ..types import TensorDict
from ._wording import describe
from ._wording import json_value
from ._wording import malformed
from ._wording import summary
from .cells import CellCheck
from .columns import ColumnCheck
from .depth import ORJSON_DEPTH_ERROR
from .depth import ORJSON_MAX_DEPTH
from .depth import check_depth
from .depth import too_deep
from .depth import value_depth
from .numeric_json import NumericRows
from .rows_json import rows_answer
from .schema import Validator
from .schema import array_schema
from .schema import object_schema
from .tables import ForeignColumn


def parse_json(body: bytes, max_depth: int | None = None, *, measure: bool = True) -> Any:
    """Parse a JSON body; NaN, Infinity and out-of-range numbers are rejected as invalid JSON.

    :param max_depth: the deepest nesting of arrays and objects allowed.
    :param measure: ``False`` when the caller checks the depth itself (as
        :meth:`SeedCodec.decode_batch` given ``max_depth`` does); only a document deeper
        than the parser's own limit is refused here then.
    :raises InvalidInput: with the parser's position of the problem, or the depth limit.
    """
    if not body:
        raise InvalidInput("The request body is empty; send a JSON document")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if ORJSON_DEPTH_ERROR in str(exc):
            raise too_deep(max_depth or ORJSON_MAX_DEPTH) from None
        raise InvalidInput(malformed(exc)) from None
    if max_depth is not None and measure:
        check_depth(body, payload, max_depth)
    return payload


class SeedCodec:
    """Convert seed-style JSON to a ``[rows, features]`` array and model outputs back.

    Built once per model version, so the validators and the column getter are compiled once.
    """

    def __init__(
        self,
        signature: Signature,
        allow_extra: bool,
        max_rows: int,
        max_string_length: int | None = None,
    ) -> None:
        self.signature = signature
        self.max_rows = max_rows
        self.object_validator = Validator(object_schema(signature, allow_extra, max_string_length))
        self.array_validator = Validator(array_schema(signature, max_string_length))
        names = signature.feature_names
        self._feature_names = frozenset(names)
        self._n = len(names)
        getter = itemgetter(*names)
        # itemgetter of one key returns the bare value, not a 1-tuple.
        self._row_of = getter if len(names) > 1 else (lambda obj: (getter(obj),))
        self._dtype: Any = np.float64 if signature.numeric else object
        self._fast = _VectorCheck.build(signature, allow_extra)
        self._numeric_rows = NumericRows(self._n, max_rows) if self._fast is not None else None
        self._cells = (
            CellCheck.build(signature, allow_extra, max_string_length)
            if self._fast is None
            else None
        )
        self._columns = ColumnCheck(signature, allow_extra, max_string_length)
        classes = signature.classes
        #: The keys of a columns answer's probabilities: the labels as JSON writes them.
        self._proba_keys: list[str] | None = (
            [c if isinstance(c, str) else json_value(c) for c in classes]
            if classes is not None
            else None
        )
        self._names_of: dict[Any, str] | None = None
        if signature.classes is not None and signature.class_names is not None:
            self._names_of = dict(zip(signature.classes, signature.class_names, strict=True))
        #: Numeric labels and their names, sorted by label, to name a column of labels with
        #: one ``searchsorted`` instead of a dict lookup per row.
        self._sorted_names: tuple[np.ndarray, np.ndarray] | None = None
        if self._names_of is not None and all(type(c) in (int, float) for c in self._names_of):
            labels = np.asarray(list(self._names_of), dtype=np.float64)
            order = np.argsort(labels)
            named = np.asarray(list(self._names_of.values()), dtype=object)
            self._sorted_names = (labels[order], named[order])

    # -- decoding ---------------------------------------------------------------------------

    def decode_one(self, payload: Any) -> np.ndarray:
        """One instance (an object of named features) -> a ``[1, features]`` array."""
        if not isinstance(payload, dict):
            raise InvalidInput(
                "Expected a JSON object of named features",
                [{"path": "(root)", "message": f"is {describe(payload)}, not an object"}],
            )
        if self._fast is not None:
            checked = self._fast.one(payload, self._row_of)
            if checked is not None:
                return checked
        if "instances" in payload and "instances" not in self._feature_names:
            # A batch sent to the single-instance route: say so, instead of listing every
            # feature as missing (or, with allow_extra, nothing about instances at all).
            raise InvalidInput(
                'This route scores one object of named features; send {"instances": [...]} '
                "to predict_batch",
                [{"path": "instances", "message": "is not a feature (a batch? use predict_batch)"}],
            )
        problems = self.object_validator.errors(payload)
        if problems:
            raise InvalidInput(summary(problems), problems)
        return np.array([self._row_of(payload)], dtype=self._dtype)

    def decode_batch_body(
        self, body: bytes, max_depth: int
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """A batch of number rows straight from its JSON body, with no Python object per
        value: ``(the [rows, features] array, the document's other members)``, or ``None``
        when the body is not proven such a batch, valid for this model (then parse it with
        :func:`parse_json` and :meth:`decode_batch`, which also word every problem).

        See :mod:`~modelserve.codecs.numeric_json` for the proof; the values then take the
        same bounds, integer and enum checks as :meth:`decode_batch`'s.
        """
        if self._numeric_rows is None or self._fast is None or max_depth < 3:
            return None  # 3: the object, instances, a row (its other members are scalars)
        parsed = self._numeric_rows.table(body)
        if parsed is None:
            return None
        x, others = parsed
        if self._fast.checked(x) is None:
            return None
        return x, others

    def decode_batch(
        self, payload: Any, body: bytes | None = None, max_depth: int | None = None
    ) -> np.ndarray:
        """``{"instances": [...]}`` -> a ``[rows, features]`` array, checking every row.

        :param body: the raw JSON the payload was parsed from; with it, all-numeric models
            check large batches with numpy instead of row by row (see :class:`_VectorCheck`).
        :param max_depth: with ``body``, check the document's depth here, first (parse it
            with ``parse_json(body, max_depth, measure=False)``): a batch proven to be a
            table of numbers has a known depth, so its body need not be scanned for it.
        :raises InvalidInput: a document nested deeper than ``max_depth`` first, as
            :func:`parse_json` would, then problems of the batch.
        """
        fast = self._fast is not None and body is not None
        if max_depth is not None and body is not None:
            proven = self._proven_table(payload, body, max_depth)
            if proven is not None:
                return proven
            check_depth(body, payload, max_depth)
            fast = False  # it was tried and did not prove the batch
        return self._decode_rows(payload, body, fast)

    def _proven_table(self, payload: Any, body: bytes, max_depth: int) -> np.ndarray | None:
        """The batch's table when the numeric fast path proves it valid and its depth is
        known from that proof, else ``None`` (the caller then measures the body).

        :raises InvalidInput: when that known depth is more than ``max_depth``.
        """
        if self._fast is None or not isinstance(payload, dict):
            return None
        rows = payload.get("instances")
        if type(rows) is not list or not rows or len(rows) > self.max_rows:
            return None  # the caller measures, then refuses it as before
        if self._fast.allow_extra and set(map(type, rows)) != {list}:
            return None  # extra fields of object rows may nest: not known
        checked = self._fast.array(rows, body, self._row_of, _top_quotes(payload))
        if checked is None:
            return None
        # Proven: each row is an object or array of numbers, in the instances array, in the
        # document's object; any other top-level value is measured by a walk.
        depth = max(
            3, 1 + max((value_depth(v) for k, v in payload.items() if k != "instances"), default=0)
        )
        if depth > max_depth:
            raise too_deep(max_depth)
        return checked

    def _decode_rows(self, payload: Any, body: bytes | None, fast: bool) -> np.ndarray:
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput(
                'Expected a JSON object {"instances": [...]}',
                [{"path": "instances", "message": "is required"}],
            )
        rows = payload["instances"]
        if not isinstance(rows, list):
            raise InvalidInput(
                "instances must be an array",
                [{"path": "instances", "message": f"is {describe(rows)}, not an array"}],
            )
        if not rows:
            raise InvalidInput(
                "instances is empty", [{"path": "instances", "message": "must not be empty"}]
            )
        if len(rows) > self.max_rows:
            raise PayloadTooLarge(
                f"{len(rows)} instances is more than the {self.max_rows} allowed per request "
                "(MODELSERVE_MAX_BATCH_ROWS)"
            )
        if fast and self._fast is not None and body is not None:
            checked = self._fast.array(rows, body, self._row_of, _top_quotes(payload))
            if checked is not None:
                return checked
        if self._cells is not None:
            proven = self._cells.table(rows, self._row_of)
            if proven is not None:
                return np.array(proven, dtype=self._dtype).reshape(len(rows), self._n)
        problems: list[dict[str, str]] = []
        obj_errors = self.object_validator.errors
        arr_errors = self.array_validator.errors
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                problems += obj_errors(row, f"instances[{i}]")
            elif isinstance(row, list):
                problems += arr_errors(row, f"instances[{i}]")
            else:
                problems.append(
                    {
                        "path": f"instances[{i}]",
                        "message": f"is {describe(row)}, not an object or array",
                    }
                )
        if problems:
            raise InvalidInput(summary(problems), problems)
        row_of = self._row_of
        table = [row_of(r) if isinstance(r, dict) else r for r in rows]
        return np.array(table, dtype=self._dtype).reshape(len(rows), self._n)

    def batch_format(self, payload: dict[str, Any]) -> str:
        """The answer layout a batch asks for: ``"rows"`` (the default) or ``"columns"``.

        :raises InvalidInput: for any other ``format``.
        """
        fmt = payload.get("format", "rows")
        if fmt not in ("rows", "columns"):
            raise InvalidInput(
                f'format must be "rows" or "columns", got {json_value(fmt)}',
                [{"path": "format", "message": f'is {describe(fmt)}, not "rows" or "columns"'}],
            )
        return str(fmt)

    def decode_table(self, data: dict[str, Tensor | ForeignColumn] | Tensor) -> np.ndarray:
        """Named columns (Arrow, Parquet) or one number array in feature order (``.npy``),
        as :func:`~modelserve.codecs.tables.read_table` gives them -> the model's table.

        :raises InvalidInput: naming each feature and the first row that breaks a rule.
        """
        if isinstance(data, dict):
            return self._columns.table(data)
        return self._columns.matrix(data)

    # -- encoding ---------------------------------------------------------------------------

    def _class_names(self, labels: list[Any]) -> list[str] | None:
        if self._names_of is None:
            return None
        return [self._names_of[label] for label in labels]

    def encode_one(self, outputs: TensorDict) -> dict[str, Any]:
        """One answer; float32 values are written at float32 precision (``0.85``, not
        ``0.8500000238418579``), float64 ones as they are."""
        labels = widen_float32(outputs[PREDICT_OUTPUT]).tolist()
        proba = _widened(outputs.get(PROBA_OUTPUT))
        body: dict[str, Any] = {
            "prediction": labels[0],
            "probability": proba[0].tolist() if proba is not None else None,
            "status": "success",
        }
        names = self._class_names(labels)
        if names is not None:
            body["class_name"] = names[0]
        return body

    def encode_batch(self, outputs: TensorDict) -> dict[str, Any]:
        """Every row's answer, float32 values written as :meth:`encode_one` does."""
        return self._rows(
            widen_float32(outputs[PREDICT_OUTPUT]), _widened(outputs.get(PROBA_OUTPUT))
        )

    def _rows(self, widened: np.ndarray, proba: np.ndarray | None) -> dict[str, Any]:
        """:meth:`encode_batch` of the labels and probabilities, already widened."""
        labels = widened.tolist()
        probs: list[Any] = proba.tolist() if proba is not None else [None] * len(labels)
        names = self._class_names(labels)
        # zip with a range, not enumerate: no nested tuple to unpack per row (15% faster).
        ids = range(len(labels))
        if names is None:
            items = [
                {"instance_id": i, "prediction": p, "probability": q}
                for i, p, q in zip(ids, labels, probs, strict=True)
            ]
        else:
            items = [
                {"instance_id": i, "prediction": p, "probability": q, "class_name": n}
                for i, p, q, n in zip(ids, labels, probs, names, strict=True)
            ]
        return {"predictions": items, "status": "success"}

    def encode_batch_json(self, outputs: TensorDict) -> dict[str, Any]:
        """:meth:`encode_batch`'s answer for an answer that is only written as JSON: its
        ``predictions`` may be that array's text already (an ``orjson.Fragment``, which
        ``orjson.dumps`` writes as it is), the same bytes once written."""
        labels = widen_float32(outputs[PREDICT_OUTPUT])
        proba = _widened(outputs.get(PROBA_OUTPUT))
        text = rows_answer(labels, proba, self._names_of)
        if text is None:
            return self._rows(labels, proba)  # widened once, not again
        return {"predictions": orjson.Fragment(text), "status": "success"}

    def encode_columns(self, outputs: TensorDict) -> dict[str, Any]:
        """Every row's answer as one array per field, in row order: ``predictions``,
        ``class_names`` (when the model names its classes) and ``probabilities`` (one array
        per class, keyed by the label as JSON writes it; ``null`` for regressors).

        The arrays stay numpy arrays: orjson writes them without a Python object per value,
        float32 ones at float32 precision as :meth:`encode_one` does.
        """
        labels = outputs[PREDICT_OUTPUT]
        body: dict[str, Any] = {"format": "columns", "predictions": _json_array(labels)}
        if self._names_of is not None:
            body["class_names"] = self._name_column(labels)
        proba = outputs.get(PROBA_OUTPUT)
        if proba is None:
            body["probabilities"] = None
        else:
            by_class = np.ascontiguousarray(proba.T)
            keys = self._proba_keys
            if keys is None or len(keys) != len(by_class):
                keys = [str(j) for j in range(len(by_class))]
            body["probabilities"] = dict(zip(keys, by_class, strict=True))
        body["status"] = "success"
        return body

    def _name_column(self, labels: np.ndarray) -> list[str]:
        """The class name of each label, in one numpy pass where labels are numbers."""
        if self._sorted_names is not None and labels.dtype.kind in "iuf" and labels.size:
            known, names = self._sorted_names
            at = np.minimum(np.searchsorted(known, labels), len(known) - 1)
            if (known[at] == labels).all():
                found: list[str] = names[at].tolist()
                return found
        names_of = self._names_of or {}
        return [names_of[label] for label in labels.tolist()]

    @staticmethod
    def table_columns(answer: dict[str, Any]) -> dict[str, Any]:
        """A columns answer (:meth:`encode_columns`) as flat named columns for a table:
        ``prediction``, ``class_name``, then ``probability_<label>`` per class."""
        columns: dict[str, Any] = {"prediction": answer["predictions"]}
        if "class_names" in answer:
            columns["class_name"] = answer["class_names"]
        for key, values in (answer.get("probabilities") or {}).items():
            columns[f"probability_{key}"] = values
        return columns


def _top_quotes(payload: dict[str, Any]) -> int:
    """The ``"`` a batch's top level accounts for: its keys, and string values ("format")."""
    return 2 * sum(1 + (type(v) is str and k != "instances") for k, v in payload.items())


def _json_array(values: np.ndarray) -> Any:
    """An array orjson can write as it is (contiguous numbers), else a list."""
    if values.dtype.kind in "biuf":
        return np.ascontiguousarray(values)
    return values.tolist()


#: Every byte but the letters of JSON's true, false and null.
_NOT_TOKEN_LETTERS = bytes(b for b in range(256) if b not in b"truefalsn")
#: The types a number parses to (``bool`` is a subclass of ``int``, not one of these).
_NUMBER_TYPES = frozenset((int, float))


def _numbers_only(body: bytes, quotes: int) -> bool:
    """Whether the body holds no ``true``, ``false`` or ``null`` and exactly ``quotes``
    quotes (those its keys account for), so every other value is a number or a container.
    """
    # Searching 2 MB for "true" is slow: its last letter, e, fills exponents. Keeping only
    # the letters of true/false/null (one pass in C) leaves any such token contiguous,
    # in a far shorter text; letters of keys may form false alarms, never misses.
    letters = body.translate(None, _NOT_TOKEN_LETTERS)
    if b"true" in letters or b"false" in letters or b"null" in letters:
        return False
    # A string value somewhere (or an odd key): not proven.
    return body.count(b'"') == quotes


class _VectorCheck:
    """Validate a whole numeric batch at once, accepting only what the schema accepts.

    Every condition below is a proof, not a guess; when one does not hold, the caller falls
    back to validating row by row (which also lists every problem):

    - in a batch of objects, every feature value is exactly an ``int`` or a ``float`` (so
      not a boolean, null, string or container; numpy would silently turn booleans and
      numeric strings into numbers); otherwise, no ``true``, ``false`` or ``null`` token
      anywhere in the body and exactly as many ``"`` as the keys need (``"instances"`` and,
      per object row, each key), so no value is a boolean, null or string;
    - every object row has exactly the feature keys (unless extra fields are allowed), every
      list row exactly as many values as there are features;
    - the values form a ``[rows, features]`` float array (a nested container does not
      convert), within each feature's bounds, with whole numbers in integer features, in
      each feature's enum (``np.isin``).
    """

    def __init__(self, signature: Signature, allow_extra: bool) -> None:
        features = signature.features
        self.width = len(features)
        self.allow_extra = allow_extra
        self.low = np.array([-np.inf if f.minimum is None else f.minimum for f in features])
        self.high = np.array([np.inf if f.maximum is None else f.maximum for f in features])
        self.bounded = bool(np.isfinite(self.low).any() or np.isfinite(self.high).any())
        self.integer = np.array([f.type == "integer" for f in features])
        #: (column, allowed values) of each feature with an enum.
        self.enums = [
            (j, np.asarray(f.enum, dtype=np.float64))
            for j, f in enumerate(features)
            if f.enum is not None
        ]
        #: For :meth:`one`: the position, bounds and integer flag of every feature that has a
        #: bound or must be whole; a single row is checked in Python, which for one row costs
        #: less than numpy's comparisons building three arrays.
        self.row_limits = tuple(
            (
                i,
                -math.inf if f.minimum is None else f.minimum,
                math.inf if f.maximum is None else f.maximum,
                f.type == "integer",
            )
            for i, f in enumerate(features)
            if f.minimum is not None or f.maximum is not None or f.type == "integer"
        )
        #: For :meth:`one`: (position, allowed values) of every feature with an enum.
        self.row_enums = tuple(
            (i, frozenset(f.enum)) for i, f in enumerate(features) if f.enum is not None
        )

    @classmethod
    def build(cls, signature: Signature, allow_extra: bool) -> _VectorCheck | None:
        if not signature.numeric:
            return None
        for f in signature.features:
            # Enums of plain numbers compare by value in numpy as in the schema; anything
            # else (a boolean or a string in a number's enum) is left to the schema.
            if f.enum is not None and any(type(v) not in (int, float) for v in f.enum):
                return None
        if any('"' in f.name or "\\" in f.name for f in signature.features):
            return None
        return cls(signature, allow_extra)

    def one(self, payload: dict[str, Any], row_of: Any) -> np.ndarray | None:
        """One object of named numbers as a ``[1, features]`` array, or ``None`` when it
        needs the schema's check (a missing or extra key, a non-number, out of bounds)."""
        if len(payload) != self.width and not self.allow_extra:
            return None
        try:
            row = row_of(payload)
        except KeyError:
            return None
        for value in row:
            # Exact types: bool is an int subclass, and numpy would parse numeric strings.
            if type(value) is not float and type(value) is not int:
                return None
        for i, low, high, integer in self.row_limits:
            value = row[i]
            # ``value % 1`` is NaN (true) for an infinity: that row takes the schema's check.
            if value < low or value > high or (integer and value % 1):
                return None
        for i, allowed in self.row_enums:
            if row[i] not in allowed:
                return None
        return np.array([row], dtype=np.float64)

    def checked(self, x: np.ndarray) -> np.ndarray | None:
        if self.bounded and ((x < self.low) | (x > self.high)).any():
            return None
        if self.integer.any() and (x[:, self.integer] != np.floor(x[:, self.integer])).any():
            return None
        for j, allowed in self.enums:
            if not np.isin(x[:, j], allowed).all():
                return None
        return x

    def array(
        self, rows: list[Any], body: bytes, row_of: Any, quotes: int = 2
    ) -> np.ndarray | None:
        """The validated array, or ``None`` when the batch needs the row-by-row check.

        :param quotes: how many ``"`` the body's top level holds (``"instances"`` and any
            other key, and string values such as ``"format": "columns"``).
        """
        width = self.width
        kinds = set(map(type, rows))
        table: Any
        if kinds == {dict}:
            # Objects, by C loops: the key counts, one itemgetter call per row, then the type
            # of every feature value (exactly int or float: bool is neither). Cheaper than the
            # body scans below, whose letters and quotes the keys would swamp.
            if not self.allow_extra and set(map(len, rows)) != {width}:
                return None
            try:
                table = list(map(row_of, rows))
            except KeyError:
                return None
            if not set(map(type, chain.from_iterable(table))) <= _NUMBER_TYPES:
                return None
        else:
            if kinds == {list}:
                # Rows in feature order are the table already; ragged ones are not proven.
                if set(map(len, rows)) != {width}:
                    return None
                table = rows
            else:
                table = self._mixed(rows, row_of)
                if table is None:
                    return None
                quotes += 2 * sum(len(row) for row in rows if type(row) is dict)
            if not _numbers_only(body, quotes):
                return None
        try:
            # One C pass over every value (rows are proven width long, values are proven
            # numbers or nested lists, which raise): faster than np.array's shape discovery.
            flat = np.fromiter(chain.from_iterable(table), np.float64, len(rows) * width)
        except (ValueError, TypeError, OverflowError):
            return None
        return self.checked(flat.reshape(len(rows), width))

    def _mixed(self, rows: list[Any], row_of: Any) -> list[Any] | None:
        """A table of object and list rows, or ``None`` when a row is neither, or is not the
        right width, or an object lacks a feature (or has others, unless allowed)."""
        table: list[Any] = []
        append = table.append
        width = self.width
        for row in rows:
            if type(row) is dict:
                if len(row) != width and not self.allow_extra:
                    return None
                try:
                    append(row_of(row))
                except KeyError:
                    return None
            elif type(row) is list:
                if len(row) != width:
                    return None
                append(row)
            else:
                return None
        return table


def _widened(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else widen_float32(values)
