"""Build image files, tiny torch modules and ONNX graphs in memory or a temporary folder."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    """``img`` saved as ``fmt`` (PNG, JPEG, WEBP, BMP, GIF)."""
    buf = io.BytesIO()
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if fmt == "WEBP":
        options.setdefault("lossless", True)
    img.save(buf, fmt, **options)
    return buf.getvalue()


def halves(size: tuple[int, int] = (40, 30), mode: str = "L") -> Image.Image:
    """Left half black, right half white: easy to check after any resize."""
    w, h = size
    arr = np.zeros((h, w), dtype=np.uint8)
    arr[:, w // 2 :] = 255
    img = Image.fromarray(arr, mode="L")
    return img.convert(mode) if mode != "L" else img


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few dozen bytes (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class TinyNet(nn.Module):
    """Mean of each channel, times a fixed matrix: 3 classes, deterministic, any input size."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.arange(channels * 3, dtype=torch.float32).view(3, -1))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.mean(dim=(2, 3)))
        return out


def write_image_model(
    root: Path, name: str, artifact: str, save: Any, manifest: dict[str, Any]
) -> Path:
    """Write ``root/name/1/artifact`` (via ``save(path)``) and ``root/name/model.yaml``."""
    vdir = root / name / "1"
    vdir.mkdir(parents=True, exist_ok=True)
    save(vdir / artifact)
    data = {"artifact": artifact, **manifest}
    (root / name / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / name


def save_torchscript(module: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates jit.script
        torch.jit.script(module.eval()).save(str(path))  # type: ignore[no-untyped-call]


def save_onnx(module: nn.Module, path: Path, shape: tuple[int, ...] = (1, 3, 16, 16)) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            (torch.zeros(*shape),),
            str(path),
            input_names=["pixels"],
            output_names=["scores"],
            dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}},
            dynamo=False,
        )
