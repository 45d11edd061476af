"""Binary payloads carried inside JSON: base64 strings and ``data:`` URLs, to bytes.

Pure standard library, so JSON routes can decode before any image library is imported.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import InvalidInput

_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")


def decode_base64_image(value: object, path: str = "image") -> bytes:
    """Bytes of a base64 string or a ``data:image/...;base64,`` URL (URL-safe alphabet too).

    :raises InvalidInput: when ``value`` is not a string of valid base64.
    """
    if not isinstance(value, str):
        raise InvalidInput(
            f"{path} must be a base64 string", [{"path": path, "message": "is not a string"}]
        )
    match = _DATA_URL.match(value)
    text = value[match.end() :] if match else value
    raw = _WHITESPACE.sub(b"", text.encode("ascii", "replace"))
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"{path} is not valid base64", [{"path": path, "message": "is not valid base64"}]
        ) from None
