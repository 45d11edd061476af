"""InferenceService: the data plane every transport calls (seed routes today, V2 next).

It resolves a model version, decodes the request with that version's codec, runs the runtime
and encodes the answer. It knows nothing of HTTP: transports hand it bytes and parsed values
and map its exceptions (see ``api/errors.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from .codecs.encoded import decode_base64_image
from .codecs.schema import array_schema
from .codecs.schema import object_schema
from .codecs.seed import SeedCodec
from .codecs.seed import parse_json
from .errors import InferenceError
from .errors import InvalidInput
from .errors import ModelNotFound
from .errors import PayloadTooLarge
from .manifest import ImageSpec
from .postprocess import classify
from .repository import ModelRepository
from .repository import ModelVersion
from .settings import ServerSettings
from .types import TABULAR_INPUT
from .types import Feature
from .types import Signature
from .types import TensorDict

if TYPE_CHECKING:  # pragma: no cover
    from .codecs.image import ImageTransform


class InferenceService:
    """Serve the models of one repository.

    :param settings: server settings.
    :param repository: a repository to serve; built from ``settings`` when omitted.
    """

    def __init__(self, settings: ServerSettings, repository: ModelRepository | None = None) -> None:
        self.settings = settings
        self.repository = repository or ModelRepository(settings)
        self.started_at = time.time()
        self._codecs: dict[ModelVersion, SeedCodec] = {}
        self._codec_lock = threading.Lock()
        self._image_transforms: dict[ModelVersion, ImageTransform] = {}

    def load(self) -> None:
        """Load every model version now (called once at start-up, never per request)."""
        self.repository.load_all()
        for entry in self.repository.entries():
            for mv in entry.versions.values():
                if mv.ready and mv.signature is not None and mv.signature.kind == "tabular":
                    self.codec(mv)

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, name: str | None, version: str | None = None) -> ModelVersion:
        """Find the version a request addresses; ``name=None`` means the default model.

        :raises ModelNotFound: no such model/version, or no default model is configured.
        :raises ModelNotReady: the version exists but did not load.
        """
        if name is None:
            name = self.repository.default_name()
            if name is None:
                raise ModelNotFound(None)
        return self.repository.get(name, version)

    def codec(self, mv: ModelVersion) -> SeedCodec:
        """The version's seed codec, built once (validators are compiled at build).

        :raises InvalidInput: when the version is not a tabular model.
        """
        codec = self._codecs.get(mv)
        if codec is None:
            assert mv.signature is not None
            if mv.signature.kind != "tabular":
                raise InvalidInput(
                    f"Model {mv.name!r} is an {mv.signature.kind} model, not a tabular one: "
                    f"use /models/{mv.name}/predict_image"
                    if mv.signature.kind == "image"
                    else f"Model {mv.name!r} takes tensors, not named features: use /v2"
                )
            with self._codec_lock:
                codec = self._codecs.get(mv)
                if codec is None:
                    codec = SeedCodec(
                        mv.signature, self.settings.allow_extra_fields, self.settings.max_batch_rows
                    )
                    self._codecs[mv] = codec
        return codec

    # -- inference --------------------------------------------------------------------------

    def infer(
        self, mv: ModelVersion, inputs: TensorDict, outputs: Sequence[str] | None = None
    ) -> TensorDict:
        """Run the version's runtime: the one place every transport's inference goes through."""
        assert mv.runtime is not None
        try:
            return mv.runtime.predict(inputs, outputs)
        except InferenceError:
            raise
        except Exception as exc:
            # A model raising something unusual on validated input is still the model's
            # answer to this input, not a server fault; say what it raised, not where.
            raise InferenceError(
                f"The model failed on this input: {type(exc).__name__}: {exc}"
            ) from exc

    def predict_one(self, name: str | None, version: str | None, body: bytes) -> dict[str, Any]:
        """Score one JSON object of named features (the seed's ``/predict``)."""
        mv = self.resolve(name, version)
        codec = self.codec(mv)
        x = codec.decode_one(parse_json(body))
        out = codec.encode_one(self.infer(mv, {TABULAR_INPUT: x}))
        out["model"] = mv.name
        out["version"] = mv.version
        return out

    def predict_batch(self, name: str | None, version: str | None, body: bytes) -> dict[str, Any]:
        """Score ``{"instances": [...]}`` (the seed's ``/predict_batch``)."""
        mv = self.resolve(name, version)
        codec = self.codec(mv)
        x = codec.decode_batch(parse_json(body))
        out = codec.encode_batch(self.infer(mv, {TABULAR_INPUT: x}))
        out["model"] = mv.name
        out["version"] = mv.version
        return out

    # -- images -----------------------------------------------------------------------------

    def image_transform(self, mv: ModelVersion) -> ImageTransform:
        """The version's image preprocessing, built once from its resolved ``image`` spec.

        :raises InvalidInput: when the version is not an image model.
        """
        transform = self._image_transforms.get(mv)
        if transform is None:
            # Pillow is the optional ``images`` extra: imported once an image model is used.
            from .codecs.image import ImageTransform

            spec = _image_spec(mv)
            assert spec.size is not None and spec.mode is not None and spec.layout is not None
            transform = ImageTransform(
                size=spec.size,
                mode=spec.mode,
                resize=spec.resize,
                resize_shorter=spec.resize_shorter,
                mean=tuple(spec.mean or ()),
                std=tuple(spec.std or ()),
                scale=spec.scale,
                layout=spec.layout,
                background=spec.background,
            )
            # Built outside a lock: two threads may both build it, and either copy is right.
            self._image_transforms[mv] = transform
        return transform

    def infer_images(
        self, mv: ModelVersion, images: Sequence[bytes], outputs: Sequence[str] | None = None
    ) -> TensorDict:
        """Decode raw image files, one per batch row, and run the model on them.

        The entry point for any transport that carries encoded images (the seed's image
        routes, V2 ``BYTES`` inputs); returns the model's own outputs, by name.

        :raises InvalidInput: not an image model, or an image is corrupt or truncated.
        :raises UnsupportedMediaType: an item is not a supported image format.
        :raises PayloadTooLarge: too many images, or one declares too many pixels.
        """
        transform = self.image_transform(mv)
        if not images:
            raise InvalidInput("No image was sent")
        limit = self.settings.max_images_per_request
        if len(images) > limit:
            raise PayloadTooLarge(
                f"{len(images)} images is more than the {limit} allowed per request "
                "(MODELSERVE_MAX_IMAGES_PER_REQUEST)"
            )
        assert mv.signature is not None
        batch = transform.batch(images, self.settings.max_image_pixels)
        return self.infer(mv, {mv.signature.tensor_inputs[0].name: batch}, outputs)

    def classify_images(
        self, name: str | None, version: str | None, images: Sequence[bytes]
    ) -> dict[str, Any]:
        """Classify image files (the seed's ``/predict_image``).

        One image answers ``{"predicted_class", "confidence", "all_probabilities", "top_k"}``;
        several answer ``{"predictions": [...]}`` with one such object per image, in order.
        """
        mv = self.resolve(name, version)
        spec = _image_spec(mv)
        assert mv.signature is not None and mv.signature.classes is not None
        scores_name = mv.signature.tensor_outputs[0].name
        scores = self.infer_images(mv, images, [scores_name])[scores_name]
        sig = mv.signature
        names = sig.class_names or tuple(str(c) for c in sig.classes or ())
        answers = classify(scores, names, spec.top_k, spec.softmax)
        body: dict[str, Any]
        if len(answers) == 1:
            body = answers[0]
        else:
            body = {"predictions": [{"instance_id": i, **a} for i, a in enumerate(answers)]}
        body.update(model=mv.name, version=mv.version, status="success")
        return body

    def image_metadata(self, mv: ModelVersion) -> dict[str, Any]:
        """What an image model takes and gives, replacing the tabular metadata fields."""
        assert mv.signature is not None
        base = f"/models/{mv.name}/versions/{mv.version}"
        return {
            "kind": "image",
            "inputs": [s.to_dict() for s in mv.signature.tensor_inputs],
            "outputs": [s.to_dict() for s in mv.signature.tensor_outputs],
            "image": _image_spec(mv).model_dump(mode="json"),
            "input_schema": None,
            "input_schema_array": None,
            "example": None,
            "routes": [f"{base}/predict_image", f"{base}/predict_image_base64"],
        }

    def classify_images_base64(
        self, name: str | None, version: str | None, body: bytes
    ) -> dict[str, Any]:
        """Classify ``{"image": "<base64 or data: URL>"}`` or ``{"images": [...]}``."""
        payload = parse_json(body)
        if isinstance(payload, dict) and "image" in payload:
            images = [decode_base64_image(payload["image"])]
        elif isinstance(payload, dict) and isinstance(payload.get("images"), list):
            images = [
                decode_base64_image(item, f"images[{i}]")
                for i, item in enumerate(payload["images"])
            ]
        else:
            raise InvalidInput(
                'Expected a JSON object {"image": "<base64>"} (or {"images": [...]})',
                [{"path": "image", "message": "is required"}],
            )
        return self.classify_images(name, version, images)

    # -- metadata ---------------------------------------------------------------------------

    def health(self) -> tuple[dict[str, Any], bool]:
        """Overall readiness: every model has a loaded default version."""
        models = []
        ready = bool(self.repository.entries())
        for entry in self.repository.entries():
            default = entry.default
            ready = ready and default is not None
            item: dict[str, Any] = {
                "name": entry.name,
                "version": default.version if default else None,
                "loaded": default is not None,
            }
            failed = [v.status() for v in entry.versions.values() if not v.ready]
            if failed:
                item["failed_versions"] = failed
            models.append(item)
        body = {
            "status": "healthy" if ready else "unhealthy",
            "models": models,
            "default_model": self.repository.default_name(),
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
        return body, ready

    def list_models(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.repository.entries():
            default = entry.default
            out.append(
                {
                    "name": entry.name,
                    "default_version": default.version if default else None,
                    "versions": [
                        v.status()
                        for v in sorted(entry.versions.values(), key=lambda v: int(v.version))
                    ],
                    "task": default.signature.task if default and default.signature else None,
                }
            )
        return out

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Everything a client needs to call a model: features, classes, input JSON Schemas."""
        mv = self.resolve(name, version)
        entry = self.repository.find_entry(mv.name)
        assert mv.signature is not None and mv.runtime is not None and entry is not None
        sig = mv.signature
        body = {
            "name": mv.name,
            "version": mv.version,
            "versions": sorted(entry.versions, key=int),
            "description": mv.manifest.description,
            "task": sig.task,
            "inputs": [f.to_dict() for f in sig.features],
            "classes": list(sig.classes) if sig.classes is not None else None,
            "class_names": list(sig.class_names) if sig.class_names is not None else None,
            "outputs": sig.outputs,
            "runtime": mv.runtime.describe(),
            "sha256": mv.hashes,
            "input_schema": object_schema(sig, self.settings.allow_extra_fields),
            "input_schema_array": array_schema(sig),
            "example": sample_instance(sig),
        }
        if sig.kind == "image":
            body.update(self.image_metadata(mv))
        return body


def sample_instance(signature: Signature) -> dict[str, Any]:
    """A valid example instance: enum values, in-range numbers; used by docs and `validate`."""
    return {f.name: _sample_value(f) for f in signature.features}


def _sample_value(feature: Feature) -> Any:
    if feature.enum:
        return feature.enum[0]
    if feature.type == "boolean":
        return False
    if feature.type == "string":
        return ""
    lo, hi = feature.minimum, feature.maximum
    if lo is not None and hi is not None:
        value = (lo + hi) / 2
    elif lo is not None:
        value = lo
    elif hi is not None:
        value = min(hi, 0.0)
    else:
        value = 0.0
    return int(np.ceil(value)) if feature.type == "integer" else float(value)


def _image_spec(mv: ModelVersion) -> ImageSpec:
    """The resolved preprocessing of an image model.

    :raises InvalidInput: when ``mv`` is not an image model.
    """
    assert mv.signature is not None
    spec = mv.signature.extra.get("image")
    if mv.signature.kind != "image" or not isinstance(spec, ImageSpec):
        use = "/predict or /predict_batch" if mv.signature.kind == "tabular" else "/v2"
        raise InvalidInput(
            f"Model {mv.name!r} is a {mv.signature.kind} model, not an image model: use {use}"
        )
    return spec
