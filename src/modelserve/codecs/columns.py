"""Check a batch given as whole columns (Arrow, Parquet, ``.npy``) against a model's features.

One numpy pass per feature and rule instead of one schema check per value: types by dtype,
nulls, non-finite numbers, bounds and whole numbers by array comparison, enums by
``np.isin``, string lengths by one ``max``. Problems name the feature and the first row that
breaks each rule (``mean_radius[17]``), in the JSON routes' words (``is -1.0, less than the
minimum 0.0``); one entry per rule and feature, as ten thousand rows could break it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..types import Feature
from ..types import Signature
from ..types import Tensor
from ._wording import json_value
from ._wording import non_finite
from ._wording import summary
from .tables import ForeignColumn

_WHAT = {"number": "numbers", "integer": "numbers", "string": "strings", "boolean": "booleans"}
_ONE = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "a boolean"}


class ColumnCheck:
    """Validate columns for one model version and stack them into its ``[rows, features]``
    table (float64 when every feature is a number, else objects, as the JSON routes build).

    :param allow_extra: accept (and drop) columns that are not features.
    :param max_string_length: the longest value a string feature may have.
    """

    def __init__(
        self, signature: Signature, allow_extra: bool, max_string_length: int | None = None
    ) -> None:
        self.features = signature.features
        self.names = signature.feature_names
        self.numeric = signature.numeric
        self.allow_extra = allow_extra
        self.max_string_length = max_string_length
        # Features with an enum are left to the column checks (np.isin per column).
        usable = self.numeric and all(f.enum is None for f in self.features)
        self._clean = _CleanCheck(self.features) if usable else None

    def table(self, columns: Mapping[str, Tensor | ForeignColumn]) -> Tensor:
        """The model's table from named columns.

        :raises InvalidInput: missing or unexpected columns, or values a feature refuses.
        """
        problems = [{"path": n, "message": "is required"} for n in self.names if n not in columns]
        extra = sorted(set(columns) - set(self.names))
        if extra and not self.allow_extra:
            problems.append(
                {"path": "(columns)", "message": f"unexpected column(s): {', '.join(extra)}"}
            )
        if not problems and self._clean is not None:
            # float64 columns (what pandas and Arrow send): stack first, then one check of
            # the whole table; a table it does not pass gets the column checks below.
            given = [columns[n] for n in self.names]
            floats = [a for a in given if isinstance(a, np.ndarray) and a.dtype == np.float64]
            if len(floats) == len(given):
                x = np.column_stack(floats)
                if self._clean.passes(x):
                    return x
        for feature in self.features:
            values = columns.get(feature.name)
            if values is not None:
                problems += _column_problems(feature, values, self.max_string_length)
        if problems:
            raise InvalidInput(summary(problems), problems)
        # No problems: every feature's column is an array now (a ForeignColumn is one).
        arrays = [np.asarray(columns[n]) for n in self.names]
        if self.numeric:
            return np.column_stack([a.astype(np.float64, copy=False) for a in arrays])
        table: Tensor = np.empty((len(arrays[0]), len(arrays)), dtype=object)
        for j, values in enumerate(arrays):
            # Numbers become Python ints and floats here, as the JSON routes hand them over.
            table[:, j] = values.tolist()
        return table

    def matrix(self, x: Tensor) -> Tensor:
        """The model's table from one ``[rows, features]`` number array in feature order.

        :raises InvalidInput: a model with string features, the wrong width, or values a
            feature refuses.
        """
        if not self.numeric:
            text = [f.name for f in self.features if f.type not in ("number", "integer")]
            raise InvalidInput(
                "A .npy body carries numbers only, and this model has non-numeric feature(s) "
                f"{', '.join(text)}: send Arrow, Parquet or JSON"
            )
        if x.shape[1] != len(self.names):
            raise InvalidInput(
                f"The array has {x.shape[1]} columns; this model takes {len(self.names)} "
                f"features, in this order: {', '.join(self.names)}",
                [{"path": "(root)", "message": f"has {x.shape[1]} columns, not {len(self.names)}"}],
            )
        table = x.astype(np.float64, copy=False)
        if self._clean is not None and self._clean.passes(table):
            return np.ascontiguousarray(table)
        problems = [
            p
            for j, feature in enumerate(self.features)
            for p in _column_problems(feature, table[:, j], self.max_string_length)
        ]
        if problems:
            raise InvalidInput(summary(problems), problems)
        return np.ascontiguousarray(table)


class _CleanCheck:
    """Whether a float64 ``[rows, features]`` table breaks no feature's rule, in a few
    whole-table passes (finite, bounds, whole numbers) instead of several per column.

    It only says yes or no: a table that fails is checked column by column, which names
    each problem. It compares exactly as those checks do (the same float64 values against
    the same bounds), so it never passes a table they would refuse. For numeric features
    without an enum only.
    """

    def __init__(self, features: tuple[Feature, ...]) -> None:
        self.width = len(features)
        lows = [f.minimum for f in features]
        highs = [f.maximum for f in features]
        self.lows = _bounds(lows, -np.inf)
        self.highs = _bounds(highs, np.inf)
        whole = [j for j, f in enumerate(features) if f.type == "integer"]
        self.whole = np.array(whole, dtype=np.intp) if whole else None

    def passes(self, x: Tensor) -> bool:
        if x.ndim != 2 or x.shape[1] != self.width:
            return False
        if not np.isfinite(x).all():
            return False
        if self.lows is not None and (x < self.lows).any():
            return False
        if self.highs is not None and (x > self.highs).any():
            return False
        if self.whole is not None:
            part = x[:, self.whole]
            if (part != np.floor(part)).any():
                return False
        return True


def _bounds(values: list[float | None], missing: float) -> Tensor | None:
    """One bound per feature as a row to compare with, ``missing`` where a feature has
    none; ``None`` when no feature has one (no pass needed)."""
    if all(v is None for v in values):
        return None
    return np.array([missing if v is None else v for v in values], dtype=np.float64)


def _column_problems(
    feature: Feature, values: Tensor | ForeignColumn, max_length: int | None
) -> list[dict[str, str]]:
    name = feature.name
    if isinstance(values, ForeignColumn):
        return [
            {
                "path": name,
                "message": f"is a column of {values.arrow_type}, not {_WHAT[feature.type]}",
            }
        ]
    if values.dtype == object:
        nulls = [i for i, v in enumerate(values.tolist()) if v is None]
        if nulls:
            what = f"is null, not {_ONE[feature.type]}"
            return [{"path": f"{name}[{nulls[0]}]", "message": what}]
    kind = values.dtype.kind
    if feature.type in ("number", "integer"):
        if kind not in "iuf":
            return [{"path": name, "message": f"is a column of {_kind(values)}, not numbers"}]
        return _number_problems(feature, values)
    if feature.type == "boolean":
        if kind != "b":
            return [{"path": name, "message": f"is a column of {_kind(values)}, not booleans"}]
        return _enum_problems(feature, values)
    if kind != "O" or not all(type(v) is str for v in values.tolist()):
        return [{"path": name, "message": f"is a column of {_kind(values)}, not strings"}]
    problems = _enum_problems(feature, values)
    if max_length is not None and values.size:
        lengths = np.fromiter((len(v) for v in values.tolist()), dtype=np.int64, count=values.size)
        if lengths.max() > max_length:
            row = int(np.argmax(lengths > max_length))
            problems.append(
                {
                    "path": f"{name}[{row}]",
                    "message": f"is longer than {max_length} characters "
                    "(MODELSERVE_MAX_STRING_LENGTH)",
                }
            )
    return problems


def _number_problems(feature: Feature, values: Tensor) -> list[dict[str, str]]:
    name = feature.name
    problems: list[dict[str, str]] = []
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            problems.append({"path": f"{name}[{row}]", "message": non_finite(float(values[row]))})
            return problems  # NaN compares false: the bounds below would miss or misname it
        if feature.type == "integer":
            _first(problems, name, values, values != np.floor(values), "not an integer")
    if feature.minimum is not None:
        _first(
            problems,
            name,
            values,
            values < feature.minimum,
            f"less than the minimum {json_value(feature.minimum)}",
        )
    if feature.maximum is not None:
        _first(
            problems,
            name,
            values,
            values > feature.maximum,
            f"more than the maximum {json_value(feature.maximum)}",
        )
    return problems + _enum_problems(feature, values)


def _enum_problems(feature: Feature, values: Tensor) -> list[dict[str, str]]:
    if feature.enum is None:
        return []
    if values.dtype == object:
        allowed = set(feature.enum)
        outside = np.fromiter((v not in allowed for v in values.tolist()), bool, values.size)
    else:
        choices = [v for v in feature.enum if not isinstance(v, str)]
        outside = ~np.isin(values, np.asarray(choices)) if choices else np.ones(values.size, bool)
    problems: list[dict[str, str]] = []
    words = ", ".join(json_value(v) for v in feature.enum)
    _first(problems, feature.name, values, outside, f"not one of {words}")
    return problems


def _first(
    problems: list[dict[str, str]], name: str, values: Tensor, bad: Tensor, what: str
) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        problems.append({"path": f"{name}[{row}]", "message": f"is {_value(values[row])}, {what}"})


def _value(value: Any) -> str:
    return json_value(value.item() if isinstance(value, np.generic) else value)


def _kind(values: Tensor) -> str:
    kind = values.dtype.kind
    if kind in "iuf":
        return "numbers"
    if kind == "b":
        return "booleans"
    return "strings"
