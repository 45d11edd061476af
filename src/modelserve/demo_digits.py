"""Train the demo image classifier: a small CNN on scikit-learn's bundled 8x8 ``digits``.

Digits are served as pictures people would upload: dark ink on a white background, one
grayscale channel. The network is trained on exactly what the server's preprocessing makes of
such a picture, ``(pixel / 255 - 0.5) / 0.5``, and exported twice: as TorchScript (``digits``,
the ``torch`` runtime) and as ONNX (``digits-onnx``). Nothing is downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .manifest import MANIFEST_NAME
from .manifest import ImageSpec
from .manifest import Manifest
from .manifest import dump_manifest
from .repository import sha256_file

#: The digits data set's images are 8x8 with values 0 (background) to 16 (ink).
SIZE = 8
_INK_MAX = 16
MEAN = 0.5
STD = 0.5
CLASS_NAMES = tuple(str(d) for d in range(10))
#: The preprocessing both demo digits models declare in their manifests.
IMAGE_SPEC = ImageSpec(
    size=(SIZE, SIZE), mode="L", resize="stretch", mean=[MEAN], std=[STD], top_k=3
)


class DigitsNet(nn.Module):
    """Two 3x3 convolutions, one pooling, two dense layers: ~40k weights, trains in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def digit_pixels(values: np.ndarray) -> np.ndarray:
    """``digits`` values (0..16, ink high) -> uint8 grayscale pictures (dark ink on white)."""
    return (255 - np.rint(np.asarray(values, dtype=np.float64) * (255 / _INK_MAX))).astype(np.uint8)


def render_digit(values: np.ndarray, scale: int = 4) -> Image.Image:
    """One 8x8 digit as a grayscale picture, ``scale`` times larger (nearest neighbour)."""
    img = Image.fromarray(digit_pixels(np.asarray(values).reshape(SIZE, SIZE)), mode="L")
    return img.resize((SIZE * scale, SIZE * scale), Image.Resampling.NEAREST) if scale > 1 else img


def load_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, x_test, y_train, y_test)``: 8x8 images (0..16) and labels, 20% held out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float64)
    split: list[np.ndarray] = train_test_split(
        images, np.asarray(data.target), test_size=0.2, random_state=seed, stratify=data.target
    )
    x_train, x_test, y_train, y_test = split
    return x_train, x_test, y_train, y_test


def model_input(values: np.ndarray) -> np.ndarray:
    """What the server's preprocessing makes of rendered digits: ``[N, 1, 8, 8]`` float32."""
    pixels = digit_pixels(values).astype(np.float32)
    return ((pixels / 255 - MEAN) / STD)[:, None, :, :]


def train_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 15, seed: int = 0) -> DigitsNet:
    """Fit :class:`DigitsNet` on 8x8 digits (0..16) with Adam, shifting each batch by up to
    one pixel so slightly off-centre uploads still classify."""
    threads = torch.get_num_threads()
    # Batches this small train fastest on one thread; more threads mostly wait on each other.
    torch.set_num_threads(1)
    try:
        return _fit(x, y, epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _fit(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> DigitsNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    inputs = torch.from_numpy(model_input(x))
    # Pad with white (1.0 after normalising) so a shifted digit keeps a clean background.
    padded = nn.functional.pad(inputs, (1, 1, 1, 1), value=(1 - MEAN) / STD)
    targets = torch.from_numpy(np.asarray(y, dtype=np.int64))
    model = DigitsNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(inputs)))
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            dy, dx = (int(v) for v in rng.integers(0, 3, size=2))
            batch = padded[idx, :, dy : dy + SIZE, dx : dx + SIZE]
            optimiser.zero_grad()
            loss = loss_fn(model(batch), targets[idx])
            loss.backward()
            optimiser.step()
    return model.eval()


def export_torchscript(model: nn.Module, path: Path) -> None:
    """Save ``model`` as TorchScript, loadable without its Python class."""
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript in favour of torch.export, but TorchScript is
        # still the one format torch loads without the model's Python source.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
        scripted.save(str(path))  # type: ignore[no-untyped-call]


def export_onnx(model: nn.Module, path: Path) -> None:
    """Save ``model`` as ONNX with a variable batch dimension."""
    with warnings.catch_warnings():
        # torch 2.9+ prefers its dynamo exporter, which needs onnxscript; the TorchScript
        # exporter is deprecated but exact for a plain CNN and needs nothing more.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, SIZE, SIZE),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )


def _write(model_dir: Path, filename: str, manifest: Manifest, save: Any) -> Path:
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    save(version_dir / filename)
    pins = {f"1/{filename}": sha256_file(version_dir / filename)}
    manifest = manifest.model_copy(update={"artifact": filename, "sha256": pins})
    (model_dir / MANIFEST_NAME).write_text(dump_manifest(manifest), encoding="utf-8")
    return model_dir


def train_digits(models_dir: Path, epochs: int = 15) -> list[Path]:
    """Train the digits CNN once and write it as ``digits`` (TorchScript) and ``digits-onnx``."""
    x_train, _, y_train, _ = load_split()
    model = train_cnn(x_train, y_train, epochs=epochs)
    common = Manifest(task="classification", class_names=list(CLASS_NAMES), image=IMAGE_SPEC)
    description = "Handwritten digit 0-9 in a picture (CNN trained on scikit-learn's digits)"
    torch_dir = _write(
        models_dir / "digits",
        "model.pt",
        common.model_copy(
            update={"runtime": "torch", "description": f"{description}, TorchScript."}
        ),
        lambda p: export_torchscript(model, p),
    )
    onnx_dir = _write(
        models_dir / "digits-onnx",
        "model.onnx",
        common.model_copy(update={"runtime": "onnx", "description": f"{description}, ONNX."}),
        lambda p: export_onnx(model, p),
    )
    return [torch_dir, onnx_dir]
