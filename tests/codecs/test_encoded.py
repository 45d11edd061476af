from __future__ import annotations

import base64

import pytest

from modelserve.codecs.encoded import decode_base64_image
from modelserve.codecs.encoded import decode_base64_images
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


B64 = base64.b64encode(b"\x89PNG-data").decode()


def test_one_image_or_a_batch_decodes() -> None:
    assert decode_base64_images({"image": B64}) == [b"\x89PNG-data"]
    assert decode_base64_images({"images": [B64, B64]}) == [b"\x89PNG-data"] * 2
    assert decode_base64_images({"image": B64, "filename": "x.png"}) == [b"\x89PNG-data"]


@pytest.mark.parametrize(
    ("payload", "message", "details"),
    [
        (
            {"image": B64, "images": [B64]},
            "not both",
            [
                {"path": "image", "message": "cannot be given together with images"},
                {"path": "images", "message": "cannot be given together with image"},
            ],
        ),
        (
            {},
            "Expected a JSON object",
            [{"path": "image", "message": "is required (or images, for several)"}],
        ),
        (
            {"imgs": [B64]},
            "Expected a JSON object",
            [{"path": "image", "message": "is required (or images, for several)"}],
        ),
        (
            [B64],
            "Expected a JSON object",
            [{"path": "(root)", "message": "is an array, not an object"}],
        ),
        (
            None,
            "Expected a JSON object",
            [{"path": "(root)", "message": "is null, not an object"}],
        ),
        (
            {"images": B64},
            "must be an array",
            [{"path": "images", "message": 'is a string ("iVBORy1kYXRh"), not an array'}],
        ),
        ({"images": []}, "empty", [{"path": "images", "message": "must not be empty"}]),
        ({"image": None}, "base64 string", [{"path": "image", "message": "is not a string"}]),
        ({"image": ["x"]}, "base64 string", [{"path": "image", "message": "is not a string"}]),
        (
            {"images": [B64, 7, "@@@"]},
            r"images\[1\] is not a string \(and 1 more",
            [
                {"path": "images[1]", "message": "is not a string"},
                {"path": "images[2]", "message": "is not valid base64"},
            ],
        ),
    ],
)
def test_ambiguous_or_wrong_payloads_are_invalid(
    payload: object, message: str, details: list[dict[str, str]]
) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        decode_base64_images(payload)
    assert info.value.details == details
