from __future__ import annotations

import base64

import pytest

from modelserve.codecs.encoded import decode_base64_image
from modelserve.errors import InvalidInput


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(b"\x89PNG-data").decode(),
        "data:image/png;base64," + base64.b64encode(b"\x89PNG-data").decode(),
        base64.urlsafe_b64encode(b"\x89PNG-data").decode().rstrip("="),
        "\n".join(base64.b64encode(b"\x89PNG-data").decode()),
    ],
)
def test_base64_variants_decode(text: str) -> None:
    assert decode_base64_image(text) == b"\x89PNG-data"


@pytest.mark.parametrize("value", ["not base64!!", 12, None, "data:image/png;base64,@@@"])
def test_bad_base64_is_invalid(value: object) -> None:
    with pytest.raises(InvalidInput, match="base64"):
        decode_base64_image(value)
