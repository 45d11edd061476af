from __future__ import annotations

import pytest

from modelserve.errors import ModelLoadError
from modelserve.manifest import ImageSpec
from modelserve.manifest import parse_manifest
from modelserve.runtimes._image import resolve_image_spec


def test_image_section_defaults_and_square_size() -> None:
    manifest = parse_manifest({"image": {"size": 224, "resize_shorter": 256}}, "m.yaml")
    assert manifest.image is not None
    assert manifest.image.size == (224, 224)
    assert manifest.image.resize == "crop" and manifest.image.top_k == 5
    assert manifest.torch.threads == 1 and manifest.torch.device == "cpu"
    assert manifest.onnx.providers is None


@pytest.mark.parametrize(
    ("image", "path"),
    [
        ({"mean": [0.1, 0.2]}, "image.mean"),
        ({"std": [0.0]}, "image"),
        ({"layout": "CHW"}, "image.layout"),
        ({"mode": "CMYK"}, "image.mode"),
        ({"top_k": 0}, "image.top_k"),
        ({"sizes": 3}, "image.sizes"),
    ],
)
def test_bad_image_fields_are_named(image: dict[str, object], path: str) -> None:
    with pytest.raises(ModelLoadError, match=path):
        parse_manifest({"image": image}, "m.yaml")


def test_bad_torch_options_are_named() -> None:
    with pytest.raises(ModelLoadError, match="torch.device"):
        parse_manifest({"torch": {"device": "tpu"}}, "m.yaml")


def test_resolution_fills_gaps_from_the_graph() -> None:
    spec = resolve_image_spec(None, [None, 1, 28, 28])
    assert (spec.size, spec.mode, spec.layout, spec.mean, spec.std) == (
        (28, 28),
        "L",
        "NCHW",
        [0.0],
        [1.0],
    )
    nhwc = resolve_image_spec(ImageSpec(), [None, 224, 224, 3])
    assert (nhwc.layout, nhwc.mode, nhwc.mean) == ("NHWC", "RGB", [0.485, 0.456, 0.406])


def test_resolution_refuses_what_cannot_be_served() -> None:
    with pytest.raises(ModelLoadError, match="4 channels"):
        resolve_image_spec(None, [None, 4, 8, 8])
    with pytest.raises(ModelLoadError, match="4-D"):
        resolve_image_spec(None, [None, 8, 8])
    with pytest.raises(ModelLoadError, match="3 values; a grayscale model needs 1"):
        resolve_image_spec(ImageSpec(mean=[0.1, 0.2, 0.3]), [None, 1, 8, 8])
