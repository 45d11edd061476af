"""InferenceService: the data plane every transport calls (seed routes today, V2 next).

It resolves a model version, decodes the request with that version's codec, runs the runtime
and encodes the answer. It knows nothing of HTTP: transports hand it bytes and parsed values
and map its exceptions (see ``api/errors.py``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import nullcontext
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import orjson

from .batching.batcher import Batcher
from .cache import LocalCache
from .cache import PredictionCache
from .cache import RedisCache
from .cache import input_digest
from .cache import redis_client
from .codecs.encoded import decode_base64_image
from .codecs.schema import array_schema
from .codecs.schema import object_schema
from .codecs.seed import SeedCodec
from .codecs.seed import parse_json
from .codecs.v2 import RequestInput
from .codecs.v2 import V2Codec
from .codecs.v2 import decode_request
from .codecs.v2 import encode_response
from .errors import InferenceError
from .errors import InvalidInput
from .errors import ModelNotFound
from .errors import PayloadTooLarge
from .errors import ServerBusy
from .manifest import ImageSpec
from .postprocess import classify
from .repository import ModelRepository
from .repository import ModelVersion
from .repository import ReloadReport
from .settings import ServerSettings
from .types import TABULAR_INPUT
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
        self._batchers: dict[ModelVersion, Batcher] = {}
        self._caches: dict[ModelVersion, PredictionCache] = {}
        self._v2_codecs: dict[ModelVersion, V2Codec] = {}
        self._image_transforms: dict[ModelVersion, ImageTransform] = {}

    def load(self) -> None:
        """Load every model version now (called once at start-up, never per request)."""
        self.repository.load_all()
        self._sync()

    def prepare(self, mv: ModelVersion) -> None:
        """Build what a loaded version needs per request (codecs, batcher) once, up front.

        Idempotent: a version already prepared is left as it is.
        """
        if mv.signature is not None and mv.signature.kind == "tabular":
            self.codec(mv)
        self.v2_codec(mv)
        with self._codec_lock:
            if mv not in self._batchers:
                batcher = self._create_batcher(mv)
                if batcher is not None:
                    self._batchers[mv] = batcher
            if mv not in self._caches:
                cache = self._create_cache(mv)
                if cache is not None:
                    self._caches[mv] = cache

    def release(self, mv: ModelVersion) -> None:
        """Drop what :meth:`prepare` built, once the version no longer serves.

        A request that resolved the version before the swap still finishes on it: without a
        batcher, :meth:`infer` calls the runtime directly.
        """
        with self._codec_lock:
            self._codecs.pop(mv, None)
            self._v2_codecs.pop(mv, None)
            self._image_transforms.pop(mv, None)
            batcher = self._batchers.pop(mv, None)
            cache = self._caches.pop(mv, None)
        if batcher is not None:
            batcher.close()
        if cache is not None:
            cache.close()

    def _sync(self) -> None:
        """Prepare every version that serves and release every one that stopped serving."""
        live = {
            mv for entry in self.repository.entries() for mv in entry.versions.values() if mv.ready
        }
        with self._codec_lock:
            known = (
                set(self._codecs)
                | set(self._v2_codecs)
                | set(self._batchers)
                | set(self._caches)
                | set(self._image_transforms)
            )
        for mv in known - live:
            self.release(mv)
        for mv in live:
            self.prepare(mv)

    def _create_cache(self, mv: ModelVersion) -> PredictionCache | None:
        spec = mv.manifest.cache
        if spec is None or not spec.enabled:
            return None
        # The artifacts' hashes make a changed copy under the same version number a new key.
        pins = hashlib.blake2b(orjson.dumps(sorted(mv.hashes.items())), digest_size=8).hexdigest()
        prefix = f"modelserve:{mv.name}:{mv.version}:{pins}"
        if self.settings.cache_backend == "redis":
            return RedisCache(prefix, spec.ttl_seconds, redis_client(self.settings.redis_url))
        return LocalCache(prefix, spec.ttl_seconds, spec.max_entries)

    def cache_stats(self, mv: ModelVersion) -> dict[str, Any] | None:
        cache = self._caches.get(mv)
        return cache.stats() if cache is not None else None

    def _create_batcher(self, mv: ModelVersion) -> Batcher | None:
        spec = mv.manifest.batching
        size = (spec.max_batch_size if spec else None) or self.settings.max_batch_size
        latency = spec.max_latency_ms if spec and spec.max_latency_ms is not None else None
        if size <= 1 or mv.runtime is None:
            return None
        cheap = mv.call_ms is not None and mv.call_ms < self.settings.batch_min_cost_ms
        if spec is None and cheap:
            return None  # too cheap to share: the hand-off would cost more than the call
        return Batcher(
            mv.runtime.predict,
            max_batch_size=size,
            max_latency_ms=self.settings.max_latency_ms if latency is None else latency,
            max_queue=self.settings.max_queue,
            timeout=float(self.settings.timeout),
            name=f"{mv.name}-v{mv.version}",
        )

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
        """Run the version's runtime: the one place every transport's inference goes through.

        With batching on, the call joins the version's batcher and gets back its own rows.
        """
        assert mv.runtime is not None
        batcher = self._batchers.get(mv)
        try:
            if batcher is not None:
                return batcher.submit(inputs, outputs)
            return mv.runtime.predict(inputs, outputs)
        except (InferenceError, ServerBusy):
            raise
        except Exception as exc:
            # A model raising something unusual on validated input is still the model's
            # answer to this input, not a server fault; say what it raised, not where.
            raise InferenceError(
                f"The model failed on this input: {type(exc).__name__}: {exc}"
            ) from exc

    def incoming(self, mv: ModelVersion) -> AbstractContextManager[None]:
        """Wrap a request's decode + :meth:`infer`, so the batcher knows company is coming."""
        batcher = self._batchers.get(mv)
        return batcher.incoming() if batcher is not None else nullcontext()

    def _cached(
        self, mv: ModelVersion, kind: str, x: np.ndarray, answer: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The cached answer for this validated input, or ``answer()`` (then cached)."""
        cache = self._caches.get(mv)
        if cache is None:
            return answer()
        key = input_digest(kind, x)
        found = cache.get(key)
        if found is not None:
            return found
        out = answer()
        cache.put(key, out)
        return out

    def predict_one(self, name: str | None, version: str | None, body: bytes) -> dict[str, Any]:
        """Score one JSON object of named features (the seed's ``/predict``)."""
        return self._predict_seed(name, version, body, batch=False)

    def predict_batch(self, name: str | None, version: str | None, body: bytes) -> dict[str, Any]:
        """Score ``{"instances": [...]}`` (the seed's ``/predict_batch``)."""
        return self._predict_seed(name, version, body, batch=True)

    def _predict_seed(
        self, name: str | None, version: str | None, body: bytes, batch: bool
    ) -> dict[str, Any]:
        mv = self.resolve(name, version)
        codec = self.codec(mv)
        with self.incoming(mv):
            payload = parse_json(body)
            if batch:
                x = codec.decode_batch(payload, body)
                encode = codec.encode_batch
            else:
                x = codec.decode_one(payload)
                encode = codec.encode_one
            out = self._cached(
                mv,
                "batch" if batch else "one",
                x,
                lambda: encode(self.infer(mv, {TABULAR_INPUT: x})),
            )
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
        with self.incoming(mv):
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
            failed = entry.failures()
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
            "cache": self.cache_stats(mv),
            "input_schema": object_schema(sig, self.settings.allow_extra_fields),
            "input_schema_array": array_schema(sig),
            "example": sig.example(),
        }
        if sig.kind == "image":
            body.update(self.image_metadata(mv))
        return body

    # -- open inference protocol ------------------------------------------------------------

    #: Called after this process changed the repository through the load/unload API, so that
    #: sibling worker processes rescan too. The server sets it; in-process it stays ``None``.
    peer_notifier: Callable[[], None] | None = None

    def v2_codec(self, mv: ModelVersion) -> V2Codec:
        """The version's V2 codec (tensor specs, input mapping), built once."""
        codec = self._v2_codecs.get(mv)
        if codec is None:
            assert mv.signature is not None
            with self._codec_lock:
                codec = self._v2_codecs.get(mv)
                if codec is None:
                    codec = V2Codec(mv.signature, self.settings.max_batch_rows)
                    self._v2_codecs[mv] = codec
        return codec

    def v2_ready(self) -> bool:
        """Server readiness: every model has a loaded version."""
        return self.health()[1]

    def v2_model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the model (version) can serve now.

        :raises ModelNotFound: for an unknown name or version.
        """
        entry = self.repository.find_entry(name)
        if entry is None:
            raise ModelNotFound(name)
        if version is None:
            return entry.default is not None
        mv = entry.versions.get(version)
        if mv is None:
            raise ModelNotFound(name, version)
        return mv.ready

    def v2_model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """V2 model metadata: name, ready versions, platform, input and output tensor specs."""
        mv = self.resolve(name, version)
        entry = self.repository.find_entry(mv.name)
        assert mv.runtime is not None and entry is not None
        inputs, outputs = self.v2_codec(mv).metadata()
        return {
            "name": mv.name,
            "versions": [
                v.version
                for v in sorted(entry.versions.values(), key=lambda v: int(v.version))
                if v.ready
            ],
            "platform": mv.runtime.name,
            "inputs": inputs,
            "outputs": outputs,
        }

    def v2_infer(
        self, name: str, version: str | None, body: bytes, header_length: int | None = None
    ) -> tuple[bytes, int | None]:
        """Run a V2 inference request (JSON, or JSON header + binary tensors).

        The version is resolved once, so the request finishes on it even if a reload swaps
        in a newer one meanwhile.

        :returns: the response body and the length of its JSON header when it carries binary
            outputs (``Inference-Header-Content-Length``), else ``None``.
        """
        mv = self.resolve(name, version)
        codec = self.v2_codec(mv)
        request = decode_request(body, header_length)
        wanted = codec.check_outputs(request.outputs)
        images = _encoded_images(mv, request.inputs)
        if images is not None:
            result = self.infer_images(mv, images, wanted)
        else:
            result = self.infer(mv, codec.model_inputs(request.inputs), wanted)
        binary = (
            {o.name: o.binary for o in request.outputs}
            if request.outputs is not None
            else dict.fromkeys(wanted, request.binary_output)
        )
        missing = [n for n in wanted if n not in result]
        if missing:
            raise InferenceError(f"The model did not produce output(s) {', '.join(missing)}")
        return encode_response(
            mv.name, mv.version, request.id, [(n, result[n], binary[n]) for n in wanted]
        )

    def reload(self, names: Collection[str] | None = None) -> ReloadReport:
        """Rescan the repository (hot reload) and prepare codecs for what was loaded.

        Codecs of versions that are no longer served are dropped so they can be collected.
        """
        report = self.repository.refresh(names)
        if report.changed:
            self._sync()
        return report

    def v2_repository_index(self) -> list[dict[str, Any]]:
        """Every model version on disk that the server knows, with its state."""
        out: list[dict[str, Any]] = []
        for entry in sorted(self.repository.entries(), key=lambda e: e.name):
            for mv in sorted(entry.versions.values(), key=lambda v: int(v.version)):
                item: dict[str, Any] = {
                    "name": entry.name,
                    "version": mv.version,
                    "state": "READY" if mv.ready else "UNAVAILABLE",
                }
                if mv.error:
                    item["reason"] = mv.error
                out.append(item)
        for name in self.repository.unloaded():
            out.append({"name": name, "state": "UNAVAILABLE", "reason": "unloaded"})
        return out

    def v2_load(self, name: str) -> None:
        """Load or reload one model now, here and (through the server) in every worker.

        :raises ModelNotFound: no such model on disk.
        :raises ModelLoadError: none of its versions loads.
        """
        try:
            self.repository.load_model(name)
        finally:
            self._sync()
            self._notify_peers()

    def v2_unload(self, name: str) -> None:
        """Stop serving one model, here and in every worker, until it is loaded again."""
        self.repository.unload_model(name)
        self._sync()
        self._notify_peers()

    def _notify_peers(self) -> None:
        if self.peer_notifier is not None:
            self.peer_notifier()


def _encoded_images(mv: ModelVersion, inputs: Sequence[RequestInput]) -> list[bytes] | None:
    """Image files sent to an image model as one V2 ``BYTES`` tensor (one file per row):
    raw bytes with the binary extension, base64 strings in JSON. ``None`` otherwise."""
    if mv.signature is None or mv.signature.kind != "image" or len(inputs) != 1:
        return None
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        return None
    return [
        item if isinstance(item, bytes) else decode_base64_image(str(item), f"{tensor.name}[{i}]")
        for i, item in enumerate(tensor.data.reshape(-1).tolist())
    ]


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
