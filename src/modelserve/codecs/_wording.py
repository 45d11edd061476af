"""Name values and types in error messages as the JSON the client sent, never as Python reprs.

A client writes ``true``, ``null`` and ``"x"``; a message that says ``True``, ``None`` or
``'x'`` (``repr``, and jsonschema's own messages) describes the server's Python, not the
request, and sends JSON users looking for a bug they did not write.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

#: Longest rendering of a value inside a message; a whole row or object would drown it.
_LIMIT = 40

#: What a parse error at this spot most likely means, for tokens JSON does not have.
_TOKENS: tuple[tuple[str, str], ...] = (
    ("NaN", "a value is NaN, not a number (JSON has no NaN)"),
    ("Infinity", "a value is Infinity, not a finite number (JSON has no Infinity)"),
    ("True", "True is Python; JSON writes true"),
    ("False", "False is Python; JSON writes false"),
    ("None", "None is Python; JSON writes null"),
    ("'", "JSON strings and keys are written in double quotes, not single ones"),
)
_NUMBER = re.compile(r"-?[0-9][0-9.eE+-]*")


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value: ``boolean``, ``number``, ``string``, ...

    Non-finite floats, which JSON cannot write, are ``number`` too; :func:`describe` names them.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def json_value(value: Any) -> str:
    """``value`` written as JSON (``NaN``/``Infinity`` for non-finite floats), shortened."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    try:
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # not a JSON value at all; say what it is rather than fail the error
        text = type(value).__name__
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"


def describe(value: Any) -> str:
    """A value with its type, for "is ..., not a number": ``a boolean (true)``, ``null``.

    Arrays and objects are named by type only: their text would drown the message.
    """
    kind = json_type(value)
    if value is None:
        return "null"
    if kind == "number":
        return json_value(value)
    if kind in ("array", "object"):
        return f"an {kind}"
    return f"a {kind} ({json_value(value)})"


def non_finite(value: float) -> str:
    """The message for a NaN or infinite number, which JSON cannot carry."""
    if math.isnan(value):
        return "is NaN, not a number"
    return f"is {json_value(value)}, not a finite number"


def malformed(exc: orjson.JSONDecodeError) -> str:
    """The 400 message for a body orjson refused, naming NaN, Infinity and Python literals.

    orjson's own message for ``NaN`` is "unexpected character, expected a JSON value", which
    does not tell a client whose ``json.dumps`` wrote ``float("nan")`` what to change.
    """
    doc: str = exc.doc
    at = f"line {exc.lineno} column {exc.colno} (char {exc.pos})"
    rest = doc[exc.pos :]
    if exc.msg == "no digit after sign" and rest.startswith("Infinity"):
        return f"Malformed JSON at {at}: a value is -Infinity, not a finite number"
    if exc.msg.startswith("number is infinity"):
        number = _NUMBER.match(rest)
        token = number.group() if number else "a number"
        return (
            f"Malformed JSON at {at}: {token} is too large for a double "
            "(it would be Infinity, not a finite number)"
        )
    for token, meaning in _TOKENS:
        if rest.startswith(token):
            return f"Malformed JSON at {at}: {meaning}"
    return f"Malformed JSON: {exc}"


def summary(problems: list[dict[str, str]]) -> str:
    """The message of a 400 that lists ``problems``: the first one, and how many follow."""
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem(s), see details)" if len(problems) > 1 else ""
    return f"Invalid input: {first['path']} {first['message']}{more}"
