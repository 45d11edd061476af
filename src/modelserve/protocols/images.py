"""Image uploads (the seed's ``/predict_image`` and ``/predict_image_base64``, V2 ``BYTES``):
files in, the version's :class:`~modelserve.codecs.image.ImageTransform`, classes out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..codecs.encoded import decode_base64_images
from ..codecs.seed import parse_json
from ..errors import InvalidInput
from ..errors import PayloadTooLarge
from ..manifest import ImageSpec
from ..postprocess import classify
from ..service import InferenceService
from ..serving import ServedVersion
from ..types import TensorDict


class ImageProtocol:
    """Classify uploaded image files on image models.

    :param service: the service whose models it scores.
    """

    def __init__(self, service: InferenceService) -> None:
        self._service = service
        self._settings = service.settings

    def infer(
        self, sv: ServedVersion, images: Sequence[bytes], outputs: Sequence[str] | None = None
    ) -> TensorDict:
        """Decode raw image files, one per batch row, and run the (held) version on them.

        The entry point for any transport that carries encoded images (the seed's image
        routes, V2 ``BYTES`` inputs); returns the model's own outputs, by name.

        :raises InvalidInput: not an image model, or an image is corrupt or truncated.
        :raises UnsupportedMediaType: an item is not a supported image format.
        :raises PayloadTooLarge: too many images, or one declares too many pixels.
        """
        image_spec(sv)
        transform = sv.images
        if transform is None:  # pragma: no cover - built with every image spec
            raise InvalidInput(f"Model {sv.name!r} has no image preprocessing")
        if not images:
            raise InvalidInput("No image was sent")
        limit = self._settings.max_images_per_request
        if len(images) > limit:
            raise PayloadTooLarge(
                f"{len(images)} images is more than the {limit} allowed per request "
                "(MODELSERVE_MAX_IMAGES_PER_REQUEST)"
            )
        with sv.incoming():
            batch = transform.batch(images, self._settings.max_image_pixels)
            return sv.infer({sv.signature.tensor_inputs[0].name: batch}, outputs)

    def classify(
        self, name: str | None, version: int | None, images: Sequence[bytes]
    ) -> dict[str, Any]:
        """Classify image files (the seed's ``/predict_image``).

        One image answers ``{"predicted_class", "confidence", "all_probabilities", "top_k"}``;
        several answer ``{"predictions": [...]}`` with one such object per image, in order.
        """
        sv = self._service.acquire(name, version)
        try:
            spec = image_spec(sv)
            sig = sv.signature
            scores_name = sig.tensor_outputs[0].name
            scores = self.infer(sv, images, [scores_name])[scores_name]
        finally:
            sv.leave()
        names = sig.class_names or tuple(str(c) for c in sig.classes or ())
        answers = classify(scores, names, spec.top_k, spec.softmax)
        body: dict[str, Any]
        if len(answers) == 1:
            body = answers[0]
        else:
            body = {"predictions": [{"instance_id": i, **a} for i, a in enumerate(answers)]}
        body.update(model=sv.name, version=sv.label, status="success")
        return body

    def classify_base64(self, name: str | None, version: int | None, body: bytes) -> dict[str, Any]:
        """Classify ``{"image": "<base64 or data: URL>"}`` or ``{"images": [...]}``."""
        return self.classify(
            name, version, decode_base64_images(parse_json(body, self._settings.max_json_depth))
        )


def image_spec(sv: ServedVersion) -> ImageSpec:
    """The resolved preprocessing of an image model.

    :raises InvalidInput: when ``sv`` is not an image model (saying what to use).
    """
    if sv.image_spec is None:
        kind = sv.signature.kind
        use = "/predict or /predict_batch" if kind == "tabular" else "/v2"
        raise InvalidInput(f"Model {sv.name!r} is a {kind} model, not an image model: use {use}")
    return sv.image_spec


def image_metadata(sv: ServedVersion) -> dict[str, Any]:
    """What an image model takes and gives, replacing the tabular metadata fields."""
    base = f"/models/{sv.name}/versions/{sv.version}"
    return {
        "kind": "image",
        "inputs": [s.to_dict() for s in sv.signature.tensor_inputs],
        "outputs": [s.to_dict() for s in sv.signature.tensor_outputs],
        "image": image_spec(sv).model_dump(mode="json"),
        "input_schema": None,
        "input_schema_array": None,
        "example": None,
        "routes": [f"{base}/predict_image", f"{base}/predict_image_base64"],
    }
