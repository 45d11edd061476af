"""JSON Schemas generated from a model signature, and a validator that reports every problem.

The hot path runs a schema compiled to Python by fastjsonschema, which stops at the first
problem. Only when it fails does the (slower) jsonschema validator walk the same schema to list
every problem with its field path, so valid requests never pay for complete reporting.
"""

from __future__ import annotations

from typing import Any

import fastjsonschema
from jsonschema import Draft7Validator
from jsonschema import ValidationError

from ..types import Feature
from ..types import Signature

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


def _describe(error: ValidationError, prefix: str) -> dict[str, str]:
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = error.message
    if error.validator == "required":
        # jsonschema reports a missing field at the parent; point at the field itself.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path = f"{path}.{missing}" if path else missing
        message = "is required"
    elif error.validator == "maxLength":
        # Not jsonschema's message: it quotes the whole (long) string back.
        message = (
            f"is longer than {error.validator_value} characters (MODELSERVE_MAX_STRING_LENGTH)"
        )
    elif error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return {"path": path or "(root)", "message": f"unexpected field(s): {', '.join(extra)}"}
    return {"path": path or "(root)", "message": message}


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
                return [_describe(e, prefix) for e in found]
            # The two validators disagree only on exotic inputs; never let one slip through.
            return [{"path": prefix or "(root)", "message": "does not match the input schema"}]
        return []
