"""JSON Schemas generated from a model signature, and a validator that reports every problem.

The hot path runs a schema compiled to Python by fastjsonschema, which stops at the first
problem. Only when it fails does the (slower) jsonschema validator walk the same schema to list
every problem with its field path, so valid requests never pay for complete reporting.
"""

from __future__ import annotations

import math
from typing import Any

import fastjsonschema
from jsonschema import Draft7Validator
from jsonschema import ValidationError

from ..types import Feature
from ..types import Signature
from ._wording import describe
from ._wording import json_type
from ._wording import json_value
from ._wording import non_finite

_JSON_TYPES = {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}


def feature_schema(feature: Feature, max_string_length: int | None = None) -> dict[str, Any]:
    """The JSON Schema of one feature value.

    :param max_string_length: the longest value a string feature may have.
    """
    schema: dict[str, Any] = {"type": _JSON_TYPES[feature.type]}
    if feature.type == "string" and max_string_length is not None:
        schema["maxLength"] = max_string_length
    if feature.enum is not None:
        schema["enum"] = list(feature.enum)
    if feature.minimum is not None:
        schema["minimum"] = feature.minimum
    if feature.maximum is not None:
        schema["maximum"] = feature.maximum
    if feature.description:
        schema["description"] = feature.description
    return schema


def object_schema(
    signature: Signature, allow_extra: bool, max_string_length: int | None = None
) -> dict[str, Any]:
    """Schema of one instance given as an object of named features."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {f.name: feature_schema(f, max_string_length) for f in signature.features},
        "required": signature.feature_names,
        "additionalProperties": allow_extra,
    }


def array_schema(signature: Signature, max_string_length: int | None = None) -> dict[str, Any]:
    """Schema of one instance given as a list of values in feature order."""
    n = len(signature.features)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [feature_schema(f, max_string_length) for f in signature.features],
        "minItems": n,
        "maxItems": n,
        "additionalItems": False,
    }


def _path(error: ValidationError, prefix: str) -> str:
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(schema_type: str) -> str:
    return "an integer" if schema_type == "integer" else f"a {schema_type}"


def _describe(error: ValidationError, prefix: str) -> list[dict[str, str]]:
    """Say what is wrong in the JSON the client sent (jsonschema's messages use reprs:
    ``True is not of type 'number'`` for a JSON ``true``).

    :returns: one entry per problem; a ``required`` error names every missing field.
    """
    path = _path(error, prefix)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "required":
        # jsonschema reports a missing field at the parent; point at each field itself.
        missing = [n for n in expected if isinstance(instance, dict) and n not in instance]
        return [{"path": _join(path, n), "message": "is required"} for n in missing]
    if validator == "additionalProperties":
        extra = sorted(set(instance) - set(error.schema.get("properties", {})))
        message = f"unexpected field(s): {', '.join(extra)}"
    elif validator == "type":
        if isinstance(instance, float) and not math.isfinite(instance):
            message = non_finite(instance)
        elif json_type(instance) == "number" and expected == "integer":
            message = f"is {json_value(instance)}, not an integer"
        else:
            message = f"is {describe(instance)}, not {_type_name(str(expected))}"
    elif validator == "maxLength":
        # Not jsonschema's message: it quotes the whole (long) string back.
        message = f"is longer than {expected} characters (MODELSERVE_MAX_STRING_LENGTH)"
    elif validator == "enum":
        allowed = ", ".join(json_value(v) for v in expected)
        message = f"is {json_value(instance)}, not one of {allowed}"
    elif validator == "minimum":
        message = f"is {json_value(instance)}, less than the minimum {json_value(expected)}"
    elif validator == "maximum":
        message = f"is {json_value(instance)}, more than the maximum {json_value(expected)}"
    elif validator in ("minItems", "maxItems", "additionalItems"):
        # maxItems and additionalItems both fire for a long row: the same words, deduplicated.
        width = len(error.schema.get("items", []))
        count = f"{len(instance)} value" + ("" if len(instance) == 1 else "s")
        message = f"has {count}, not {width} (one per feature, in order)"
    else:  # not produced by the schemas built here; keep jsonschema's own words
        message = error.message
    return [{"path": path or "(root)", "message": message}]


class Validator:
    """One compiled schema plus the complete-error fallback.

    :param schema: a draft-07 JSON Schema.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._fast = fastjsonschema.compile(schema)
        self._full = Draft7Validator(schema)

    def errors(self, instance: Any, prefix: str = "") -> list[dict[str, str]]:
        """Return every problem with ``instance`` (empty when it is valid)."""
        try:
            self._fast(instance)
        except fastjsonschema.JsonSchemaException:
            found = sorted(self._full.iter_errors(instance), key=lambda e: list(e.absolute_path))
            if found:
                problems = [p for e in found for p in _describe(e, prefix)]
                return [dict(t) for t in dict.fromkeys(tuple(p.items()) for p in problems)]
            # The two validators disagree only on exotic inputs; never let one slip through.
            return [{"path": prefix or "(root)", "message": "does not match the input schema"}]
        return []
