from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelserve.errors import InvalidInput
from modelserve.errors import PayloadTooLarge
from modelserve.protocols.images import ImageProtocol
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings

from .images import encode


@pytest.fixture(scope="module")
def service(demo_repo: Path) -> InferenceService:
    svc = InferenceService(
        ServerSettings(profile="testing", model_path=demo_repo, max_images_per_request=4)
    )
    svc.load()
    return svc


@pytest.mark.parametrize(("model", "output"), [("digits", "output"), ("digits-onnx", "logits")])
def test_infer_images_gives_the_model_outputs_per_row(
    service: InferenceService, model: str, output: str
) -> None:
    """What a V2 BYTES input calls: raw image files in, the model's own tensors out."""
    sv = service.resolve(model)
    blank = encode(Image.new("L", (8, 8), 255), "PNG")
    out = ImageProtocol(service).infer(sv, [blank, blank, blank])
    assert list(out) == [output]
    assert out[output].shape == (3, 10) and out[output].dtype == np.float32
    assert sv.images is service.resolve(model).images is not None  # built once, at publication


def test_infer_images_limits_and_kinds(service: InferenceService) -> None:
    blank = encode(Image.new("L", (8, 8), 255), "PNG")
    digits = service.resolve("digits")
    images = ImageProtocol(service)
    with pytest.raises(PayloadTooLarge):
        images.infer(digits, [blank] * 5)
    with pytest.raises(InvalidInput, match="No image"):
        images.infer(digits, [])
    with pytest.raises(InvalidInput, match="'iris' is a tabular model, not an image model"):
        images.infer(service.resolve("iris"), [blank])
