"""Image bytes to model-ready arrays with Pillow and numpy: decode, orient, resize, normalise.

Knows nothing of models or HTTP: it is given the preprocessing values (from the model's
resolved ``image`` spec) and raw file bytes, and returns one float32 batch. Pillow reads only
the header in ``Image.open``, so the pixel-count guard runs before anything is decoded.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Literal

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from ..errors import InvalidInput
from ..errors import PayloadTooLarge
from ..errors import UnsupportedMediaType
from ..types import Tensor

#: Formats served; Pillow knows more, but each extra decoder is attack surface.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_EXIF_ORIENTATION = 0x0112
#: ``warnings.catch_warnings`` swaps the process-wide filter list and is not thread-safe:
#: two overlapping blocks can restore each other's list. Serialising ours keeps them from
#: leaking filters into each other; only the header parse runs under it.
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageTransform:
    """The preprocessing of one model, with its normalisation folded into one multiply-add.

    ``(pixel * scale - mean) / std`` is computed as ``pixel * mul + add`` in float32.
    """

    size: tuple[int, int]
    mode: Literal["RGB", "L"] = "RGB"
    resize: Literal["crop", "stretch"] = "crop"
    resize_shorter: int | None = None
    mean: Sequence[float] = (0.485, 0.456, 0.406)
    std: Sequence[float] = (0.229, 0.224, 0.225)
    scale: float = 1 / 255
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    background: tuple[int, int, int] = (255, 255, 255)
    _mul: Tensor = field(init=False, repr=False, compare=False)
    _add: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        channels = self.channels
        mean = np.broadcast_to(np.asarray(self.mean, dtype=np.float64), (channels,))
        std = np.broadcast_to(np.asarray(self.std, dtype=np.float64), (channels,))
        mul = (self.scale / std).astype(np.float32)
        add = (-mean / std).astype(np.float32)
        # Shaped to broadcast over one image in its layout: [C, 1, 1] or [C].
        axes = (channels, 1, 1) if self.layout == "NCHW" else (channels,)
        object.__setattr__(self, "_mul", mul.reshape(axes))
        object.__setattr__(self, "_add", add.reshape(axes))

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one preprocessed image, without the batch axis."""
        h, w = self.size
        c = self.channels
        return (c, h, w) if self.layout == "NCHW" else (h, w, c)

    def batch(self, images: Sequence[bytes], max_pixels: int) -> Tensor:
        """Decode and preprocess every image into one ``[N, ...]`` float32 array.

        :raises InvalidInput: naming the image (by index) that failed and why.
        """
        out = np.empty((len(images), *self.shape), dtype=np.float32)
        for i, data in enumerate(images):
            try:
                with open_image(data, max_pixels) as img:
                    self.preprocess_into(img, out[i])
            except InvalidInput as exc:
                if len(images) == 1:
                    raise
                # Same class (so the same status), with the image's position in the message.
                raise type(exc)(f"Image {i}: {exc.message}", exc.details) from exc
        return out

    def preprocess_into(self, img: Image.Image, out: Tensor) -> None:
        """Resize, convert and normalise an opened image, writing into ``out`` (one image)."""
        target_h, target_w = self.size
        if img.format == "JPEG":
            # Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding (much faster on
            # photos); it never goes below the requested size. Square: EXIF may swap axes.
            side = max(self.resize_shorter or 0, target_h, target_w)
            img.draft(self.mode, (side, side))
        try:
            img = _oriented(img)
            img = self._resized(img)
            img = self._flattened(img)
            if img.mode != self.mode:
                img = img.convert(self.mode)
            pixels = np.asarray(img)
        except (OSError, ValueError, SyntaxError) as exc:
            # Pillow reports truncated and corrupt data while decoding, i.e. here.
            raise InvalidInput(f"The image data is corrupt or truncated ({exc})") from exc
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        np.multiply(pixels, self._mul, out=out)
        out += self._add

    def _resized(self, img: Image.Image) -> Image.Image:
        target_h, target_w = self.size
        w, h = img.size
        if self.resize == "stretch":
            box = (0.0, 0.0, float(w), float(h))
        else:
            # Scale so the shorter side is resize_shorter, then center-crop the target: the
            # same as resizing then cropping, done by resizing only the cropped source box.
            shorter = self.resize_shorter or max(target_h, target_w)
            factor = shorter / min(w, h)
            crop_w, crop_h = min(w, target_w / factor), min(h, target_h / factor)
            left, top = (w - crop_w) / 2, (h - crop_h) / 2
            box = (left, top, left + crop_w, top + crop_h)
        if img.size == (target_w, target_h) and box == (0.0, 0.0, float(w), float(h)):
            return img
        if img.mode not in ("RGB", "RGBA", "L", "LA", "RGBa", "La", "I", "F"):
            img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        return img.resize(
            (target_w, target_h), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0
        )

    def _flattened(self, img: Image.Image) -> Image.Image:
        """Compose transparent pixels over the background instead of dropping alpha."""
        if not _has_alpha(img):
            return img
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*self.background, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _oriented(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored sideways), copying only if needed."""
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        # Without in_place=True it always returns a new image (typed as Optional).
        oriented = ImageOps.exif_transpose(img)
        return oriented if oriented is not None else img
    return img


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open image bytes (header only) and refuse decompression bombs before decoding.

    GIFs are served by their first frame.

    :raises UnsupportedMediaType: the bytes are not a PNG, JPEG, WebP, BMP or GIF image.
    :raises PayloadTooLarge: the image declares more than ``max_pixels`` pixels.
    :raises InvalidInput: the header is corrupt.
    """
    if not data:
        raise InvalidInput("The image is empty (0 bytes)")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow warns (through ``warnings``, so into the server's log) about images over
            # its own MAX_IMAGE_PIXELS before this function refuses them with a 413 below:
            # noise for input we handle. Only that category is silenced; others still show.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedMediaType(
            f"The data is not a supported image (send {', '.join(FORMATS)})"
        ) from None
    except Image.DecompressionBombError:
        # Over twice Pillow's MAX_IMAGE_PIXELS Pillow raises instead of warning; ours is far
        # lower by default, so this only fires when MODELSERVE_MAX_IMAGE_PIXELS is raised.
        raise _too_many_pixels(None, max_pixels) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"The image header is corrupt ({exc})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise _too_many_pixels((w, h), max_pixels)
    if w == 0 or h == 0:
        raise InvalidInput("The image has no pixels")
    return img


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> PayloadTooLarge:
    shown = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return PayloadTooLarge(
        f"The image declares {shown}; at most {max_pixels} are allowed "
        "(MODELSERVE_MAX_IMAGE_PIXELS)"
    )
