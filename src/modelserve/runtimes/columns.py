"""Read what each input column of a fitted scikit-learn model takes, from the model itself.

A model fitted on a DataFrame knows more about its columns than their names: an encoder's
``categories_`` say a column holds strings (and which ones), a scaler's ``mean_`` says what a
typical value is. :func:`read_columns` walks ``Pipeline``, ``ColumnTransformer`` and
``FeatureUnion`` from the input side and collects that per input column, so the server can
validate requests, build a warm-up row that the model accepts, and compile the model with one
typed input per column. Only fitted attributes are read; the model is never called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..types import Feature
from ..types import FeatureType

#: ``handle_unknown`` values with which an encoder accepts categories it never saw.
_OPEN_UNKNOWN = frozenset({"ignore", "infrequent_if_exist", "use_encoded_value", "warn"})
#: Transformers whose output column ``i`` is input column ``i`` with the same values (missing
#: ones filled), so the next step still sees the raw column: an encoder after an imputer
#: still tells the column's categories.
_VALUE_KEEPING = frozenset({"SimpleImputer"})
#: Encoders whose ``categories_`` list each input column's values.
_ENCODERS = frozenset({"OneHotEncoder", "OrdinalEncoder", "TargetEncoder"})
#: Transformers of the ``sklearn`` package that read free text from one column.
_TEXT_READERS = frozenset({"CountVectorizer", "TfidfVectorizer", "HashingVectorizer"})
#: Other ``sklearn`` transformers that take values which need not be numbers; every other
#: scikit-learn estimator validates its input as numbers.
_ANY_READERS = frozenset({"FunctionTransformer", "DictVectorizer", "FeatureHasher"})


@dataclass
class Column:
    """What the walk learned about one input column (mutated while walking, then read)."""

    name: str
    type: FeatureType = "number"
    #: The values an encoder was fitted on, in its order; ``None`` when no encoder reads it.
    categories: tuple[Any, ...] | None = None
    #: True when values outside ``categories`` are accepted (``handle_unknown='ignore'``...).
    open: bool = True
    #: A typical value read from fitted statistics (a mean, a median, an imputer's fill).
    location: Any = None
    #: A typical spread around ``location`` (a standard deviation, a quarter of the range).
    scale: float | None = None
    #: What reads the column when that could not tell its kind (a ``FunctionTransformer``, a
    #: class from outside scikit-learn); ``None`` once the kind is known.
    unknown_reader: str | None = "nothing modelserve can inspect"

    @property
    def guessed(self) -> bool:
        """True when nothing fitted says what the column holds (it is assumed to be a number)."""
        return self.unknown_reader is not None

    def feature(self) -> Feature:
        """The column as a request feature: closed categories become an ``enum``."""
        enum = self.categories if self.categories is not None and not self.open else None
        return Feature(name=self.name, type=self.type, enum=enum, sample=self.sample())

    def sample(self) -> Any:
        """A typical valid value, or ``None`` when nothing fitted gives one."""
        if self.type == "string":
            if self.categories and self.location not in self.categories:
                return self.categories[0]
            return self.location if isinstance(self.location, str) else None
        if self.categories:
            # The category itself, not the fill value: 3 for an integer column, not 3.0.
            same = [c for c in self.categories if c == self.location]
            return same[0] if same else self.categories[0]
        if not isinstance(self.location, int | float) or not math.isfinite(self.location):
            return None
        if self.type == "integer":
            return round(self.location)
        # Four significant digits: a readable example, not the mean to the last bit.
        return float(f"{self.location:.4g}")


def read_columns(estimator: Any, names: Sequence[str]) -> list[Column]:
    """Return one :class:`Column` per input column of a fitted ``estimator``, in input order.

    :param names: the input column names (``feature_names_in_``, or ``x0``... for arrays).
    """
    columns = [Column(name) for name in names]
    _visit(estimator, list(range(len(columns))), columns)
    return columns


def _visit(est: Any, idx: list[int], columns: list[Column]) -> None:
    """Record what ``est`` tells about the input columns ``idx`` it reads, then its parts."""
    if est is None or (isinstance(est, str) and est == "passthrough"):
        return
    if isinstance(est, str):  # "drop": the model ignores these columns
        return
    kind = type(est).__name__
    steps = getattr(est, "steps", None)
    if steps is not None:  # Pipeline: the raw columns reach the first steps only
        for _, step in steps:
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            _visit(step, idx, columns)
            if not _keeps_values(step, len(idx)):
                return
        return
    if hasattr(est, "transformers_"):  # ColumnTransformer
        names_in = getattr(est, "feature_names_in_", None)
        for _, part, selection in est.transformers_:
            picked = _resolve(selection, names_in, len(idx))
            if picked is None:
                continue
            targets = [idx[i] for i in picked]
            if isinstance(part, str) and part == "passthrough":
                # Passed on to the final estimator, which takes numbers.
                for i in targets:
                    _known_number(columns[i])
            else:
                _visit(part, targets, columns)
        return
    if kind == "FeatureUnion":
        for _, part in est.transformer_list:
            _visit(part, idx, columns)
        return
    categories = getattr(est, "categories_", None)
    if categories is not None and kind in _ENCODERS:
        open_ = kind == "TargetEncoder" or getattr(est, "handle_unknown", "error") in _OPEN_UNKNOWN
        for i, values in zip(idx, categories, strict=False):
            _categorical(columns[i], values, open_)
        return
    if kind == "FunctionTransformer" and getattr(est, "func", None) is None:
        return  # the identity
    if kind in _TEXT_READERS:
        for i in idx:
            columns[i].type = "string"
            columns[i].unknown_reader = None
        return
    module = type(est).__module__
    if not module.startswith("sklearn.") or kind in _ANY_READERS:
        reader = _reader_name(est)
        for i in idx:
            if columns[i].unknown_reader is not None:
                columns[i].unknown_reader = reader
        return
    if kind == "SimpleImputer":
        _imputed(est, idx, columns)
        return
    for i in idx:
        _known_number(columns[i])
    _statistics(est, idx, columns)


def _keeps_values(step: Any, width: int) -> bool:
    """True when the step's output columns are its input columns, values unchanged."""
    if type(step).__name__ == "FunctionTransformer":
        return getattr(step, "func", None) is None
    if type(step).__name__ not in _VALUE_KEEPING or getattr(step, "add_indicator", False):
        return False
    # An imputer drops columns that were all missing at fit time: then the order shifts.
    n_out = getattr(step, "n_features_in_", width)
    stats = getattr(step, "statistics_", None)
    if stats is not None and np.asarray(stats).dtype.kind == "f":
        return bool(not np.isnan(np.asarray(stats)).any()) and n_out == width
    return n_out == width


def _resolve(selection: Any, names_in: Any, width: int) -> list[int] | None:
    """Column positions from a fitted ColumnTransformer's selection, or ``None`` if unclear."""
    names = [str(n) for n in names_in] if names_in is not None else None
    if callable(selection):
        return None  # transformers_ holds resolved selections; a callable here is foreign
    if isinstance(selection, slice):
        if isinstance(selection.start, str) or isinstance(selection.stop, str):
            if names is None:
                return None
            start = names.index(selection.start) if selection.start is not None else 0
            stop = names.index(selection.stop) + 1 if selection.stop is not None else width
            return list(range(start, stop))
        return list(range(width))[selection]
    items = [selection] if isinstance(selection, str | int | np.integer) else list(selection)
    if not items:
        return []
    if all(isinstance(s, bool | np.bool_) for s in items):
        return [i for i, keep in enumerate(items) if keep]
    if all(isinstance(s, int | np.integer) for s in items):
        return [int(s) for s in items]
    if names is not None and all(isinstance(s, str) for s in items):
        try:
            return [names.index(str(s)) for s in items]
        except ValueError:
            return None
    return None


def _known_number(column: Column) -> None:
    if column.categories is None and column.type != "string":
        column.type = "number"
        column.unknown_reader = None


def _categorical(column: Column, values: Any, open_: bool) -> None:
    """Record an encoder's fitted categories of one column."""
    known = [v.item() if isinstance(v, np.generic) else v for v in np.asarray(values).tolist()]
    # Missing values are a category to the encoder but cannot be sent as one in JSON.
    known = [v for v in known if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if known and all(isinstance(v, str) for v in known):
        column.type = "string"
    elif known and all(isinstance(v, int) and not isinstance(v, bool) for v in known):
        column.type = "integer"
    elif known and all(isinstance(v, int | float) and not isinstance(v, bool) for v in known):
        column.type = "number"
    else:
        return  # mixed or empty: nothing certain to say
    column.categories = tuple(known)
    column.open = open_
    column.unknown_reader = None


def _imputed(est: Any, idx: list[int], columns: list[Column]) -> None:
    """An imputer's fill values are typical values; a string fill means a string column."""
    stats = getattr(est, "statistics_", None)
    if stats is None:
        return
    for i, value in zip(idx, np.asarray(stats, dtype=object).tolist(), strict=False):
        column = columns[i]
        if isinstance(value, str):
            column.type = "string"
            column.location = value
            column.unknown_reader = None
        elif isinstance(value, int | float) and math.isfinite(value):
            _known_number(column)
            column.location = float(value)


def _statistics(est: Any, idx: list[int], columns: list[Column]) -> None:
    """Typical value and spread of each column from a fitted scaler's statistics."""
    loc: Any = None
    scale: Any = None
    kind = type(est).__name__
    if kind == "StandardScaler":
        loc, scale = getattr(est, "mean_", None), getattr(est, "scale_", None)
    elif kind == "RobustScaler":
        loc, scale = getattr(est, "center_", None), getattr(est, "scale_", None)
    elif kind == "MinMaxScaler":
        low, high = getattr(est, "data_min_", None), getattr(est, "data_max_", None)
        if low is not None and high is not None:
            loc = (np.asarray(low) + np.asarray(high)) / 2
            scale = (np.asarray(high) - np.asarray(low)) / 4
    elif kind == "MaxAbsScaler":
        top = getattr(est, "max_abs_", None)
        if top is not None:
            loc, scale = np.zeros(len(top)), np.asarray(top) / 2
    if loc is None:
        return
    locs = np.asarray(loc, dtype=np.float64).ravel()
    scales = None if scale is None else np.asarray(scale, dtype=np.float64).ravel()
    if len(locs) != len(idx):
        return
    for j, i in enumerate(idx):
        columns[i].location = float(locs[j])
        if scales is not None and np.isfinite(scales[j]) and scales[j] > 0:
            columns[i].scale = float(scales[j])


def _reader_name(est: Any) -> str:
    func = getattr(est, "func", None)
    if func is not None:
        return f"{type(est).__name__}({getattr(func, '__name__', repr(func))})"
    return type(est).__name__


def selects_columns(estimator: Any) -> bool:
    """True when ``estimator`` (or a step or part of it) picks input columns itself."""
    if hasattr(estimator, "transformers_"):
        return True
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        return any(selects_columns(step) for _, step in steps)
    parts = getattr(estimator, "transformer_list", None)
    if parts is not None:
        return any(selects_columns(part) for _, part in parts)
    return False
