"""Score a DataFrame chunk of rows as ``/predict_batch`` would, with one model call.

A chunk is checked column by column with numpy, against the same feature schema as online
requests (type, enum, bounds, whole numbers, string length, no unexpected field unless
``MODELSERVE_ALLOW_EXTRA_FIELDS``). Only the rows that fail are turned into Python objects,
so that the seed codec's validator can say what is wrong in the online wording; the valid
rows go to the version's runtime (its compiled graph when there is one) in one call. A row
the model itself refuses is isolated by halving the chunk, so one bad row costs a few calls
instead of the chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..codecs._wording import non_finite
from ..codecs.seed import SeedCodec
from ..errors import InferenceError
from ..errors import InvalidInput
from ..errors import ModelServeError
from ..floats import widen_float32
from ..protocols.seed import tabular_codec
from ..service import InferenceService
from ..serving import ServedVersion
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Feature
from ..types import Signature
from ..types import TensorDict
from .formats import InputFormat
from .formats import read_chunks

#: Python and numpy scalar types a JSON number can arrive as in an object column.
_NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})
_BOOL_TYPES = frozenset({bool, np.bool_})


@dataclass(frozen=True)
class RowError:
    """One input row that was not scored, and why."""

    #: 0-based row number in the whole input.
    row: int
    #: The id column's value, when an id column is used.
    id: object | None
    #: What is wrong, in the words of the online 400's details (``x is required``).
    reason: str

    def record(self) -> dict[str, Any]:
        """The row as a job's ``/errors`` and the offline errors file list it."""
        return {"row": self.row, "id": self.id, "reason": self.reason}


def error_lines(errors: Iterable[RowError]) -> bytes:
    """``errors`` as JSON lines, one :meth:`RowError.record` each: the one format of a job's
    error files and of the offline errors file (an id of another type is written as text)."""
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps(e.record(), option=option, default=str) for e in errors)


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk's answers: a row per valid input row, and an error per invalid one."""

    #: The id column (if any), ``row``, then the prediction columns, in input order.
    predictions: pd.DataFrame
    errors: list[RowError]


class ChunkScorer:
    """Validate and score DataFrame chunks on one model version.

    :param service: a loaded service.
    :param model: the model's name; ``None``: the default model.
    :param version: the version; ``None``: the model's default version at construction
        (kept for every chunk, so one input is scored by one version).
    :param id_column: a column carried through to the answers and errors, not a feature.
    :raises ModelNotFound: no such model or version.
    :raises InvalidInput: the model is not tabular, or ``id_column`` names a feature.
    """

    def __init__(
        self,
        service: InferenceService,
        model: str | None = None,
        version: int | None = None,
        id_column: str | None = None,
    ) -> None:
        sv = service.resolve(model, version)
        tabular_codec(sv)
        self._service = service
        self.model = sv.name
        self.version = sv.version
        self.id_column = id_column
        self.allow_extra = service.settings.allow_extra_fields
        self.max_string_length = service.settings.max_string_length
        if id_column is not None and id_column in sv.signature.feature_names:
            raise InvalidInput(
                f"The id column {id_column!r} is one of the model's features; name a column "
                "that is not"
            )
        self._plan: tuple[ServedVersion, _Plan] | None = None
        self._plan_for(sv)

    @property
    def signature(self) -> Signature:
        return self._plan_for(self._service.resolve(self.model, self.version)).signature

    @property
    def text_columns(self) -> list[str]:
        """The string features: a CSV reader should keep these columns as text."""
        return [f.name for f in self.signature.features if f.type == "string"]

    def read(
        self, source: Path, fmt: InputFormat, chunk_rows: int, start_chunk: int = 0
    ) -> Iterator[pd.DataFrame]:
        """The chunks of an input file as this model needs them read: its string features
        stay text (a CSV's ``"01"`` is not the number 1). Every driver reads through here.

        :raises MalformedFile: as :func:`~.formats.read_chunks`.
        """
        return read_chunks(source, fmt, chunk_rows, start_chunk, self.text_columns)

    @property
    def prediction_columns(self) -> list[str]:
        """The prediction columns every :class:`ScoredChunk` has, after ``row``."""
        return self._plan_for(self._service.resolve(self.model, self.version)).columns

    def _plan_for(self, sv: ServedVersion) -> _Plan:
        held = self._plan
        if held is None or held[0] is not sv:
            held = (sv, _Plan(sv, tabular_codec(sv), self.allow_extra, self.max_string_length))
            self._plan = held
        return held[1]

    def score(self, frame: pd.DataFrame, first_row: int) -> ScoredChunk:
        """Score ``frame``, whose first row is row ``first_row`` of the whole input.

        :raises InvalidInput: a feature column (or the id column) is missing: no row of the
            chunk can be scored.
        """
        sv = self._service.acquire(self.model, self.version)
        try:
            return self._plan_for(sv).score(frame, first_row, self.id_column)
        finally:
            sv.leave()


class _Plan:
    """What scoring a chunk on one served version needs, worked out once."""

    def __init__(
        self, sv: ServedVersion, codec: SeedCodec, allow_extra: bool, max_string_length: int
    ) -> None:
        self.sv = sv
        self.codec = codec
        self.signature = sig = sv.signature
        self.features = sig.features
        self.names = sig.feature_names
        self.allow_extra = allow_extra
        self.max_string_length = max_string_length
        self.numeric = sig.numeric
        self.low = np.array([-np.inf if f.minimum is None else f.minimum for f in sig.features])
        self.high = np.array([np.inf if f.maximum is None else f.maximum for f in sig.features])
        self.integer = np.array([f.type == "integer" for f in sig.features], dtype=bool)
        self.vector = sig.numeric and all(f.enum is None for f in sig.features)
        self.class_labels = list(sig.classes) if sig.classes is not None else None
        self.names_of: dict[Any, str] | None = None
        if sig.classes is not None and sig.class_names is not None:
            self.names_of = dict(zip(sig.classes, sig.class_names, strict=True))
        self.proba_columns = (
            [f"probability_{c}" for c in self.class_labels]
            if sig.has_proba and self.class_labels is not None
            else []
        )
        self.columns = ["prediction"]
        if self.names_of is not None:
            self.columns.append("class_name")
        self.columns += self.proba_columns

    # -- validation -----------------------------------------------------------------------

    def score(self, frame: pd.DataFrame, first_row: int, id_column: str | None) -> ScoredChunk:
        self._check_columns(frame, id_column)
        n = len(frame)
        ok, x = self._check(frame)
        extras = [c for c in frame.columns if c not in self._feature_set and c != id_column]
        if extras and not self.allow_extra:
            ok &= frame[extras].isna().to_numpy().all(axis=1)
        ids = frame[id_column].to_numpy(dtype=object) if id_column is not None else None
        errors: dict[int, str] = {}
        for bad in np.flatnonzero(~ok).tolist():
            errors[bad] = self._reason(frame, bad, extras)
        rows = np.flatnonzero(ok)
        kept, outputs, refused = self._infer(x[ok] if len(rows) < n else x, rows)
        for i, reason in refused:
            errors[i] = reason
        predictions = self._frame(outputs, kept, first_row, id_column, ids)
        row_errors = [
            RowError(first_row + i, _scalar(ids[i]) if ids is not None else None, errors[i])
            for i in sorted(errors)
        ]
        return ScoredChunk(predictions, row_errors)

    @property
    def _feature_set(self) -> frozenset[str]:
        return self.codec._feature_names

    def _check_columns(self, frame: pd.DataFrame, id_column: str | None) -> None:
        present = set(frame.columns)
        missing = [name for name in self.names if name not in present]
        if missing:
            raise InvalidInput(
                f"The input has no column(s) {', '.join(missing)}: model "
                f"{self.sv.name!r} needs one per feature ({', '.join(self.names)})"
            )
        if id_column is not None and id_column not in present:
            raise InvalidInput(f"The input has no id column {id_column!r}")

    def _check(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Which rows are valid, and the model input for every row (garbage where invalid)."""
        n = len(frame)
        if self.vector and all(frame[name].dtype.kind in "iuf" for name in self.names):
            x = frame[self.names].to_numpy(dtype=np.float64, na_value=np.nan)
            good = np.isfinite(x)
            good &= (x >= self.low) & (x <= self.high)
            if self.integer.any():
                part = x[:, self.integer]
                good[:, self.integer] &= part == np.floor(part)
            return good.all(axis=1), x
        ok = np.ones(n, dtype=bool)
        x = np.empty((n, len(self.names)), dtype=np.float64 if self.numeric else object)
        for j, feature in enumerate(self.features):
            good, values = _column(frame[feature.name], feature, self.max_string_length)
            ok &= good
            x[:, j] = values
        return ok, x

    def _reason(self, frame: pd.DataFrame, i: int, extras: list[str]) -> str:
        """What is wrong with row ``i``, as the online validator words it."""
        row: dict[str, Any] = {}
        infinite: list[dict[str, str]] = []
        for name in [*self.names, *([] if self.allow_extra else extras)]:
            value = _scalar(frame[name].iat[i])
            if _missing(value):
                continue
            if isinstance(value, float) and not np.isfinite(value):
                # JSON cannot carry one, so the schema has no word for it: say it here.
                infinite.append({"path": name, "message": non_finite(value)})
                value = 0
            row[name] = value
        flagged = {p["path"] for p in infinite}
        problems = infinite + [
            p for p in self.codec.object_validator.errors(row) if p["path"] not in flagged
        ]
        if not problems:  # the two checks disagree: never let the row through unexplained
            problems = [{"path": "(root)", "message": "does not match the input schema"}]
        # In the validator's order: the row's own problems first, then by field name.
        problems.sort(key=lambda p: (p["path"] != "(root)", p["path"]))
        return "; ".join(f"{p['path']} {p['message']}" for p in problems)

    # -- inference ------------------------------------------------------------------------

    def _infer(
        self, x: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, TensorDict, list[tuple[int, str]]]:
        """Score ``x`` (input rows ``rows``) in one call; when the model refuses the batch,
        halve it until the rows it refuses are alone.

        :returns: the rows scored, their outputs, and ``(row, reason)`` for each refused row.
        """
        if len(rows) == 0:
            return rows, {}, []
        try:
            return rows, self._predict(x), []
        except (InferenceError, InvalidInput) as exc:
            if len(rows) == 1:
                return rows[:0], {}, [(int(rows[0]), exc.message)]
        half = len(rows) // 2
        kept_a, out_a, bad_a = self._infer(x[:half], rows[:half])
        kept_b, out_b, bad_b = self._infer(x[half:], rows[half:])
        outputs = out_a or out_b
        if out_a and out_b:
            outputs = {k: np.concatenate([out_a[k], out_b[k]]) for k in out_a}
        return np.concatenate([kept_a, kept_b]), outputs, bad_a + bad_b

    def _predict(self, x: np.ndarray) -> TensorDict:
        # Straight to the runtime, not through the batcher: a chunk is already a batch, and
        # the batcher's size cap is for request traffic.
        try:
            return self.sv.runtime.predict({TABULAR_INPUT: x})
        except ModelServeError:
            raise
        except Exception as exc:
            raise InferenceError(
                f"The model failed on this input: {type(exc).__name__}: {exc}"
            ) from exc

    def _frame(
        self,
        outputs: TensorDict,
        kept: np.ndarray,
        first_row: int,
        id_column: str | None,
        ids: np.ndarray | None,
    ) -> pd.DataFrame:
        data: dict[str, Any] = {}
        if id_column is not None and ids is not None:
            data[id_column] = ids[kept]
        data["row"] = (kept + first_row).astype(np.int64)
        if outputs:
            labels = widen_float32(outputs[PREDICT_OUTPUT])
            found = outputs.get(PROBA_OUTPUT)
            proba = widen_float32(found) if found is not None else None
        else:  # nothing valid: the same columns, empty
            labels = np.asarray(self.class_labels if self.class_labels else [0.0])[:0]
            proba = np.empty((0, len(self.proba_columns)))
        data["prediction"] = labels
        if self.names_of is not None:
            data["class_name"] = pd.Series(labels, dtype=object).map(self.names_of).to_numpy()
        if proba is not None:
            for j, column in enumerate(self.proba_columns):
                data[column] = proba[:, j]
        return pd.DataFrame(data)


def _column(series: pd.Series, feature: Feature, max_length: int) -> tuple[np.ndarray, Any]:
    """``(valid, values)`` of one feature's column: the values as the model takes them."""
    n = len(series)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    kind = series.dtype.kind
    if feature.type in ("number", "integer"):
        if kind in "iuf":  # numpy or nullable (Int64, Float64, Arrow-backed) numbers
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            good = np.isfinite(values)
        elif kind == "b":
            return np.zeros(n, dtype=bool), np.zeros(n)
        else:
            objects = series.to_numpy(dtype=object)
            good = _of_types(objects, _NUMBER_TYPES)
            values = np.where(good, objects, np.nan).astype(np.float64)
            good &= np.isfinite(values)
        if feature.minimum is not None:
            good &= values >= feature.minimum
        if feature.maximum is not None:
            good &= values <= feature.maximum
        if feature.type == "integer":
            good &= values == np.floor(values)
        if feature.enum is not None:
            good &= np.isin(values, np.asarray(feature.enum, dtype=np.float64))
        return good, values
    objects = series.to_numpy(dtype=object)
    if feature.type == "boolean":
        good = series.notna().to_numpy() if kind == "b" else _of_types(objects, _BOOL_TYPES)
    elif kind == "O" or pd.api.types.is_string_dtype(series.dtype):
        good = _of_types(objects, frozenset({str}))
        if good.any():
            lengths = series.where(good, "").str.len().to_numpy()
            good &= lengths <= max_length
    else:
        return np.zeros(n, dtype=bool), objects
    if feature.enum is not None:
        good &= series.isin(list(feature.enum)).to_numpy()
    return good, objects


def _of_types(values: np.ndarray, types: frozenset[type]) -> np.ndarray:
    kinds: Callable[[Any], bool] = lambda v: type(v) in types  # noqa: E731
    return np.fromiter(map(kinds, values), dtype=bool, count=len(values))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON-able, and as the validator types it)."""
    return value.item() if isinstance(value, np.generic) else value
