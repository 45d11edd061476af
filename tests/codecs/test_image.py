from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modelserve.codecs.image import ImageTransform
from modelserve.codecs.image import open_image
from modelserve.errors import InvalidInput
from modelserve.errors import PayloadTooLarge
from modelserve.errors import UnsupportedMediaType

from ..images import encode
from ..images import halves
from ..images import png_header_only

MAX = 10_000_000
#: 0..255 straight through, to read pixels back: (p * 1/255 - 0) / (1/255) = p.
RAW_L = {"mode": "L", "mean": (0.0,), "std": (1 / 255,)}
RAW_RGB = {"mode": "RGB", "mean": (0.0,), "std": (1 / 255,)}


def run(data: bytes, **kwargs: object) -> np.ndarray:
    transform = ImageTransform(**{"size": (8, 8), **kwargs})  # type: ignore[arg-type]
    return transform.batch([data], MAX)[0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_format_decodes_to_the_same_picture(fmt: str) -> None:
    out = run(encode(halves(), fmt, **({"quality": 95} if fmt == "JPEG" else {})), **RAW_L)
    assert out.shape == (1, 8, 8) and out.dtype == np.float32
    assert out[0, :, :3].max() < 40  # left: black
    assert out[0, :, 5:].min() > 215  # right: white


def test_gif_uses_the_first_frame() -> None:
    white = Image.new("L", (16, 16), 255)
    black = Image.new("L", (16, 16), 0)
    data = encode(white, "GIF", save_all=True, append_images=[black])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert run(data, **RAW_L).min() > 250


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [
        (3, Image.Transpose.ROTATE_180),  # upside down
        (6, Image.Transpose.ROTATE_90),  # phone held upright: stored turned left
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(orientation: int, stored: Image.Transpose, fmt: str) -> None:
    upright = halves((32, 32))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(
        upright.transpose(stored), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {})
    )
    out = run(data, **RAW_L)
    assert out[0, :, :3].max() < 40 and out[0, :, 5:].min() > 215


def test_grayscale_input_feeds_an_rgb_model() -> None:
    out = run(encode(halves(), "PNG"), **RAW_RGB)
    assert out.shape == (3, 8, 8)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])


def test_rgb_input_feeds_a_grayscale_model() -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    out = run(encode(red, "PNG"), **RAW_L)
    assert out.shape == (1, 8, 8)
    assert np.allclose(out, 76, atol=1)  # ITU-R 601-2 luma of pure red


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_sit_on_the_background(mode: str) -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    img.paste((0, 0, 0, 255), (0, 0, 4, 8))  # opaque black left half
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
        img.info["transparency"] = img.getpixel((7, 0))
    out = run(
        encode(img, "PNG", **({"transparency": img.info["transparency"]} if mode == "P" else {})),
        **RAW_L,
    )
    assert out[0, :, :4].max() < 1
    assert out[0, :, 4:].min() > 254


def test_center_crop_cuts_the_long_side_and_stretch_keeps_it() -> None:
    # 20x60: red, a wide green middle, blue; the centre 20x20 crop lies inside the green.
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, :15] = (255, 0, 0)
    arr[:, 15:45] = (0, 255, 0)
    arr[:, 45:] = (0, 0, 255)
    data = encode(Image.fromarray(arr), "PNG")
    crop = run(data, size=(4, 4), resize="crop", **RAW_RGB)
    assert np.allclose(crop[1], 255) and np.allclose(crop[0], 0)
    stretched = run(data, size=(4, 12), resize="stretch", **RAW_RGB)
    assert stretched[0, :, 0].min() > 250 and stretched[2, :, -1].min() > 250


def test_resize_shorter_crops_a_margin() -> None:
    # A white frame 2 px wide around black: resizing the shorter side to 16 and cropping 8
    # keeps only the black centre.
    arr = np.full((16, 16), 255, dtype=np.uint8)
    arr[2:-2, 2:-2] = 0
    out = run(encode(Image.fromarray(arr), "PNG"), resize_shorter=16, **RAW_L)
    assert out.max() == 0


def test_normalisation_uses_mean_and_std() -> None:
    gray = Image.new("RGB", (8, 8), (128, 128, 128))
    out = run(encode(gray, "PNG"))  # ImageNet defaults
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    assert np.allclose(out[:, 0, 0], (128 / 255 - mean) / std, atol=1e-5)


def test_nhwc_layout_is_nchw_transposed() -> None:
    data = encode(Image.fromarray(np.arange(192, dtype=np.uint8).reshape(8, 8, 3)), "PNG")
    nchw = run(data)
    nhwc = run(data, layout="NHWC")
    assert nhwc.shape == (8, 8, 3)
    assert np.array_equal(nhwc, nchw.transpose(1, 2, 0))


def test_a_large_jpeg_is_drafted_and_still_right() -> None:
    big = halves((2400, 1800), "RGB")
    out = run(encode(big, "JPEG", quality=90), **RAW_L)
    assert out[0, :, :3].max() < 40 and out[0, :, 5:].min() > 215


def test_batch_stacks_images_in_order() -> None:
    black = encode(Image.new("L", (8, 8), 0), "PNG")
    white = encode(Image.new("L", (8, 8), 255), "PNG")
    out = ImageTransform(size=(8, 8), **RAW_L).batch([white, black, white], MAX)  # type: ignore[arg-type]
    assert out.shape == (3, 1, 8, 8)
    assert [float(x.mean()) for x in out] == [255.0, 0.0, 255.0]


@pytest.mark.parametrize("data", [b"hello, not an image", b"%PDF-1.4 ...", b"<svg></svg>"])
def test_not_an_image_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="not a supported image"):
        open_image(data, MAX)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_image_is_invalid(fmt: str) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(InvalidInput, match="corrupt|truncated") as info:
        run(data[: len(data) // 2], **RAW_L)
    assert not isinstance(info.value, UnsupportedMediaType | PayloadTooLarge)


def test_empty_image_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        open_image(b"", MAX)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    data = png_header_only(9_000, 9_000)
    assert len(data) < 100
    with pytest.raises(PayloadTooLarge, match="9000x9000 pixels"):
        open_image(data, MAX)


def test_pillow_own_bomb_limit_is_also_a_413() -> None:
    with pytest.raises(PayloadTooLarge, match="MODELSERVE_MAX_IMAGE_PIXELS"):
        open_image(png_header_only(100_000, 100_000), 10**12)


def test_pillow_bomb_warning_is_not_emitted_for_an_image_we_refuse(
    recwarn: pytest.WarningsRecorder,
) -> None:
    """Over Pillow's MAX_IMAGE_PIXELS (not twice over) Pillow only warns; we refuse with 413
    naming the size, and the warning does not reach the log."""
    side = 10_000
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(PayloadTooLarge, match="10000x10000 pixels"):
        open_image(png_header_only(side, side), MAX)
    assert not [w for w in recwarn.list if issubclass(w.category, Image.DecompressionBombWarning)]


def test_other_warnings_while_opening_still_show(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = Image.open

    def noisy_open(*args: Any, **kwargs: Any) -> Image.Image:
        warnings.warn("bomb", Image.DecompressionBombWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", noisy_open)
    with pytest.warns(UserWarning, match="something else") as record:
        open_image(encode(Image.new("L", (8, 8)), "PNG"), MAX).close()
    assert [w.category for w in record.list] == [UserWarning]
    # and the filter list is left as it was found
    with pytest.raises(Image.DecompressionBombWarning):
        warnings.warn("after", Image.DecompressionBombWarning, stacklevel=1)


def test_batch_error_names_the_image() -> None:
    good = encode(Image.new("L", (8, 8)), "PNG")
    with pytest.raises(UnsupportedMediaType, match="Image 1: "):
        ImageTransform(size=(8, 8)).batch([good, b"nope"], MAX)
