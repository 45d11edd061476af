"""Fill an image model's preprocessing spec from its graph's input shape, and check the two agree.

Shared by the ONNX and torch runtimes; pure Python, so it imports neither library.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Literal

from ..errors import InvalidInput
from ..errors import ModelLoadError
from ..manifest import IMAGENET_MEAN
from ..manifest import IMAGENET_STD
from ..manifest import ImageSpec
from ..types import Signature
from ..types import Tensor
from ..types import TensorSpec

#: A dimension the graph leaves open (symbolic or unknown).
Dim = int | None


def _layout_of(shape: Sequence[Dim]) -> Literal["NCHW", "NHWC"] | None:
    """Guess NCHW or NHWC from a 4-D shape: the channel axis is the one of size 1 or 3."""
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3) and shape[1] not in (1, 3):
        return "NHWC"
    return None


def resolve_image_spec(spec: ImageSpec | None, shape: Sequence[Dim] | None) -> ImageSpec:
    """Return ``spec`` with size, mode, layout, mean and std all set.

    :param spec: the manifest's ``image`` section, if any.
    :param shape: the model input's shape when the model file records it (ONNX), with
        ``None`` for open dimensions; ``None`` when it does not (TorchScript).
    :raises ModelLoadError: when the manifest and the graph disagree, or a value is missing.
    """
    if importlib.util.find_spec("PIL") is None:
        raise ModelLoadError(
            "Image models decode uploads with Pillow: pip install 'modelserve[images]'"
        )
    spec = spec or ImageSpec()
    layout, size, mode = spec.layout, spec.size, spec.mode
    if shape is not None:
        if len(shape) != 4:
            raise ModelLoadError(
                f"An image model takes a 4-D [batch, ...] input; this one's shape is {list(shape)}"
            )
        layout = layout or _layout_of(shape) or "NCHW"
        c, h, w = (
            (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
        )
        if c is not None:
            if c not in (1, 3):
                raise ModelLoadError(f"The model's input has {c} channels; only 1 or 3 are served")
            graph_mode: Literal["RGB", "L"] = "L" if c == 1 else "RGB"
            if mode is not None and mode != graph_mode:
                raise ModelLoadError(
                    f"image.mode is {mode} but the model's input has {c} channel(s)"
                )
            mode = graph_mode
        if h is not None and w is not None:
            if size is not None and tuple(size) != (h, w):
                raise ModelLoadError(f"image.size is {list(size)} but the model's input is {h}x{w}")
            size = (h, w)
    if size is None:
        raise ModelLoadError(
            "Cannot tell the model's input image size: set image.size ([height, width]) "
            "in model.yaml"
        )
    mode = mode or "RGB"
    channels = 1 if mode == "L" else 3
    default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.0,), (1.0,))
    mean = list(spec.mean if spec.mean is not None else default_mean)
    std = list(spec.std if spec.std is not None else default_std)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            need = "an RGB model needs 1 or 3" if channels == 3 else "a grayscale model needs 1"
            raise ModelLoadError(f"image.{key} has {len(values)} values; {need}")
    return spec.model_copy(
        update={
            "size": size,
            "mode": mode,
            "layout": layout or "NCHW",
            "mean": mean,
            "std": std,
        }
    )


def image_input_shape(spec: ImageSpec) -> tuple[int, ...]:
    """The ``[-1, ...]`` shape of a resolved spec's input tensor."""
    if spec.size is None:
        raise ModelLoadError("image.size is not resolved: set it in model.yaml")
    h, w = spec.size
    c = spec.channels
    return (-1, c, h, w) if spec.layout == "NCHW" else (-1, h, w, c)


def check_input(x: Tensor, expected: TensorSpec) -> None:
    """Reject a tensor whose rank or fixed dimensions differ from the model's input.

    :raises InvalidInput: naming the expected and the given shape.
    """
    shape = expected.shape
    ok = x.ndim == len(shape) and all(d < 0 or d == g for d, g in zip(shape, x.shape, strict=True))
    if not ok:
        raise InvalidInput(
            f"Input {expected.name!r} must have shape {list(shape)} (-1: any size); "
            f"got {list(x.shape)}"
        )


def image_signature(
    class_names: Sequence[str] | None, input_spec: TensorSpec, output: TensorSpec, spec: ImageSpec
) -> Signature:
    """The signature of an image classifier: ``output`` is ``[-1, classes]`` scores.

    The resolved preprocessing rides along as ``extra["image"]`` for the image codec.

    :raises ModelLoadError: when ``class_names`` does not match the number of classes.
    """
    n_classes = output.shape[-1]
    if class_names is not None and len(class_names) != n_classes:
        raise ModelLoadError(
            f"The manifest has {len(class_names)} class_names but the model outputs "
            f"{n_classes} scores"
        )
    return Signature(
        features=(),
        task="classification",
        classes=tuple(range(n_classes)),
        class_names=tuple(class_names) if class_names else None,
        kind="image",
        tensor_inputs=(input_spec,),
        tensor_outputs=(output,),
        extra={"image": spec},
    )
