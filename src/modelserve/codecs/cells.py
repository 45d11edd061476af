"""Prove a JSON batch valid column by column, for models the numeric whole-batch check skips.

Models with string or boolean features (or enums that are not plain numbers) were checked
row by row with the compiled schema, ~30 µs a row. Here each feature's values are gathered
once (``zip(*rows)``) and checked in C where possible: exact types through ``set(map(type))``,
strings' lengths through ``max(map(len))``, enums through set inclusion, numbers' bounds and
whole-ness with numpy. Like :class:`~modelserve.codecs.seed._VectorCheck` this only ever
*accepts*: any doubt returns ``None``, and the row-by-row check then finds and words every
problem, so messages never depend on which path ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import Feature
from ..types import Signature

#: Integers beyond this are not exact in float64, where the bounds are compared: left to the
#: schema, which compares Python ints exactly.
_EXACT = 2**53
_NUMBER = frozenset({int, float})


class CellCheck:
    """Column-wise proof that a JSON batch matches a model's object and array schemas.

    :param allow_extra: object rows may carry keys that are not features.
    :param max_string_length: the longest value a string feature may have.
    """

    def __init__(
        self, signature: Signature, allow_extra: bool, max_string_length: int | None
    ) -> None:
        self.features = signature.features
        self.width = len(self.features)
        self.allow_extra = allow_extra
        self.max_string_length = max_string_length
        self._enums = [
            frozenset(f.enum) if f.enum is not None and _hashable(f.enum) else None
            for f in self.features
        ]

    @classmethod
    def build(
        cls, signature: Signature, allow_extra: bool, max_string_length: int | None
    ) -> CellCheck | None:
        if any(f.enum is not None and not _hashable(f.enum) for f in signature.features):
            return None
        return cls(signature, allow_extra, max_string_length)

    def table(self, rows: list[Any], row_of: Any) -> list[Any] | None:
        """The rows as value tuples in feature order, or ``None`` when not proven valid."""
        width = self.width
        table: list[Any] = []
        append = table.append
        for row in rows:
            if type(row) is dict:
                if len(row) != width and not self.allow_extra:
                    return None
                try:
                    append(row_of(row))
                except KeyError:
                    return None
            elif type(row) is list and len(row) == width:
                append(row)
            else:
                return None
        columns = zip(*table, strict=True)  # every row has width values by now
        for feature, enum, column in zip(self.features, self._enums, columns, strict=True):
            if not self._valid(feature, enum, column):
                return None
        return table

    def _valid(
        self, feature: Feature, enum: frozenset[Any] | None, column: tuple[Any, ...]
    ) -> bool:
        types = set(map(type, column))
        if feature.type == "string":
            if types != {str}:
                return False
            limit = self.max_string_length
            if limit is not None and max(map(len, column)) > limit:
                return False
        elif feature.type == "boolean":
            if types != {bool}:
                return False
        else:
            if not types <= _NUMBER:
                return False
            if not _numbers_valid(feature, column, int in types):
                return False
        if enum is not None:
            # True == 1 in a set, but the schema tells booleans from numbers: unless the
            # enum holds booleans exactly when the feature is one, leave it to the schema.
            booleans = sum(type(v) is bool for v in enum)
            if booleans != (len(enum) if feature.type == "boolean" else 0):
                return False
            return set(column) <= enum
        return True


def _numbers_valid(feature: Feature, column: tuple[Any, ...], has_ints: bool) -> bool:
    values = np.array(column, dtype=np.float64)
    if has_ints and (np.abs(values) >= _EXACT).any():
        return False
    if feature.type == "integer" and (values != np.floor(values)).any():
        return False
    if feature.minimum is not None and (values < feature.minimum).any():
        return False
    return not (feature.maximum is not None and (values > feature.maximum).any())


def _hashable(values: tuple[Any, ...]) -> bool:
    try:
        frozenset(values)
    except TypeError:
        return False
    return True
