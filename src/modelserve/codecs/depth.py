"""JSON nesting depth of a request body, measured without recursion, and its limit.

orjson refuses documents nested deeper than 1024 levels by itself (``depth limit exceeded``);
a much lower limit (``MODELSERVE_MAX_JSON_DEPTH``) keeps every later walk over the parsed
document (schema validation, numpy conversion, error reporting) cheap and far from Python's
recursion limit. The depth is measured on the raw bytes of a body that already parsed, so
it is valid JSON: brackets only count outside strings, and only strings hold quotes and
backslashes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput

#: The message orjson gives for documents deeper than its own limit.
ORJSON_DEPTH_ERROR = "depth limit exceeded"
#: orjson's own limit, which no setting can raise.
ORJSON_MAX_DEPTH = 1024

_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1
#: Every byte but brackets and quotes, for ``bytes.translate`` to drop: a C pass over the
#: body, several times faster than a numpy mask over it.
_INSIGNIFICANT = bytes(b for b in range(256) if b not in b'[]{}"')


def json_depth(body: bytes, payload: Any) -> int:
    """The deepest nesting of arrays and objects in ``body`` (0 for a scalar).

    :param payload: the document ``body`` parsed to; walked instead of the bytes when a
        string holds an escape (``\\"`` would confuse a byte scan).
    """
    return _depth(body, payload, body.translate(None, _INSIGNIFICANT))


#: Objects' braces as brackets: in a document that parsed they pair up like brackets.
_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")


def _depth(body: bytes, payload: Any, significant: bytes) -> int:
    if b"\\" in body:
        return _walk(payload)
    # Without the strings' own quote pairs no quote is left unless some string holds a
    # bracket (the first quote pair removed across two strings leaves a quote behind).
    brackets = significant.replace(b'""', b"")
    if b'"' not in brackets:
        peeled = _peel(brackets.translate(_AS_BRACKETS))
        if peeled is not None:
            return peeled
    return _count(significant)


#: Rounds :func:`_peel` takes at most: batches nest three or four deep; a document nested
#: deeper is counted instead, so a body of deep nests costs a few passes, not one per level.
_PEEL_ROUNDS = 8


def _peel(brackets: bytes) -> int | None:
    """The nesting depth of well-paired ``[`` and ``]``, or ``None`` past :data:`_PEEL_ROUNDS`.

    Each round removes the innermost pairs (``[]``), so the rounds are the depth:
    ``bytes.replace`` finds its matches in the text as it was, so a pair that a round's
    removals close up waits for the next round. A batch of rows is three rounds in C, far
    cheaper than counting symbol by symbol.
    """
    for depth in range(_PEEL_ROUNDS + 1):
        if not brackets:
            return depth
        brackets = brackets.replace(b"[]", b"")
    return None


def _count(significant: bytes) -> int:
    """The depth by a running count of brackets outside strings (for strings holding
    brackets, which :func:`_peel` would count)."""
    symbols = np.frombuffer(significant, dtype=np.uint8)  # brackets and quotes: usually few
    if not symbols.size:
        return 0
    outside = (np.cumsum(symbols == ord('"'), dtype=np.int64) & 1) == 0
    steps = np.where(outside, _OPEN[symbols], 0).astype(np.int64)
    return max(0, int(np.cumsum(steps).max()))


def value_depth(value: Any) -> int:
    """The nesting depth of a parsed value (0 for a scalar), walked without recursion."""
    return _walk(value)


def _walk(payload: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest


def check_depth(body: bytes, payload: Any, limit: int) -> None:
    """Refuse a document nested deeper than ``limit`` levels.

    :raises InvalidInput: naming the limit and its setting.
    """
    # Fewer brackets than the limit cannot nest deeper: most bodies stop here, after one
    # pass in C that keeps only brackets and quotes.
    significant = body.translate(None, _INSIGNIFICANT)
    if len(significant) - significant.count(b'"') <= limit:
        return
    if _depth(body, payload, significant) > limit:
        raise too_deep(limit)


def too_deep(limit: int) -> InvalidInput:
    """The 400 for a document nested deeper than ``limit`` levels."""
    return InvalidInput(
        f"The JSON body is nested deeper than {limit} levels (MODELSERVE_MAX_JSON_DEPTH)",
        [{"path": "(root)", "message": "is nested too deeply"}],
    )
