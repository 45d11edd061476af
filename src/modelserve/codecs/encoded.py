"""Binary payloads carried inside JSON: base64 strings and ``data:`` URLs, to bytes.

No image library, so JSON routes can decode before any image library is imported.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..errors import InvalidInput
from ._wording import describe

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


def decode_base64_images(payload: object) -> list[bytes]:
    """The image files of a ``/predict_image_base64`` body: exactly one of
    ``{"image": "<base64>"}`` (one image) or ``{"images": ["<base64>", ...]}`` (a batch).

    Strict on purpose: given both keys, the old parser silently used ``image`` and ignored the
    batch, so a client got one answer for N images and no hint why. Every problem found is
    listed in ``details`` (``{"path", "message"}``), not just the first. Other keys are allowed,
    as the seed's clients may send metadata alongside. Payload limits (how many images, how
    many pixels) are the service's to check.

    :param payload: the parsed JSON body.
    :raises InvalidInput: not an object, both keys or neither, ``images`` not a non-empty list,
        or an item that is not a base64 string.
    """
    if not isinstance(payload, dict):
        raise InvalidInput(
            'Expected a JSON object {"image": "<base64>"} or {"images": [...]}',
            [{"path": "(root)", "message": f"is {describe(payload)}, not an object"}],
        )
    if "image" in payload and "images" in payload:
        raise InvalidInput(
            'Send either {"image": "<base64>"} or {"images": [...]}, not both',
            [
                {"path": "image", "message": "cannot be given together with images"},
                {"path": "images", "message": "cannot be given together with image"},
            ],
        )
    if "image" in payload:
        return [decode_base64_image(payload["image"], "image")]
    if "images" not in payload:
        raise InvalidInput(
            'Expected a JSON object {"image": "<base64>"} or {"images": [...]}',
            [{"path": "image", "message": "is required (or images, for several)"}],
        )
    items = payload["images"]
    if not isinstance(items, list):
        raise InvalidInput(
            "images must be an array of base64 strings",
            [{"path": "images", "message": f"is {describe(items)}, not an array"}],
        )
    if not items:
        raise InvalidInput(
            "images is empty; send at least one image",
            [{"path": "images", "message": "must not be empty"}],
        )
    images: list[bytes] = []
    problems: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            images.append(decode_base64_image(item, f"images[{i}]"))
        except InvalidInput as exc:
            problems += exc.details
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more, see details)" if len(problems) > 1 else ""
        raise InvalidInput(f"{first['path']} {first['message']}{more}", problems)
    return images
