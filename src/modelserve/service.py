"""InferenceService: the data plane every transport calls (seed routes today, V2 next).

It resolves a model version, decodes the request with that version's codec, runs the runtime
and encodes the answer. It knows nothing of HTTP: transports hand it bytes and parsed values
and map its exceptions (see ``api/errors.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import nullcontext
from typing import Any

import numpy as np

from .batching.batcher import Batcher
from .codecs.schema import array_schema
from .codecs.schema import object_schema
from .codecs.seed import SeedCodec
from .codecs.seed import parse_json
from .errors import InferenceError
from .errors import ModelNotFound
from .errors import ServerBusy
from .repository import ModelRepository
from .repository import ModelVersion
from .settings import ServerSettings
from .types import TABULAR_INPUT
from .types import Feature
from .types import Signature
from .types import TensorDict


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

    def load(self) -> None:
        """Load every model version now (called once at start-up, never per request)."""
        self.repository.load_all()
        for entry in self.repository.entries():
            for mv in entry.versions.values():
                if mv.ready:
                    self.prepare(mv)

    def prepare(self, mv: ModelVersion) -> None:
        """Build what a loaded version needs per request (codec, batcher) once, up front."""
        if mv.signature is not None and mv.signature.kind == "tabular":
            self.codec(mv)
        batcher = self._create_batcher(mv)
        if batcher is not None:
            self._batchers[mv] = batcher

    def release(self, mv: ModelVersion) -> None:
        """Drop what :meth:`prepare` built (after the version stops serving)."""
        self._codecs.pop(mv, None)
        batcher = self._batchers.pop(mv, None)
        if batcher is not None:
            batcher.close()

    def _create_batcher(self, mv: ModelVersion) -> Batcher | None:
        spec = mv.manifest.batching
        size = (spec.max_batch_size if spec else None) or self.settings.max_batch_size
        latency = spec.max_latency_ms if spec and spec.max_latency_ms is not None else None
        if size <= 1 or mv.runtime is None:
            return None
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
        """The version's seed codec, built once (validators are compiled at build)."""
        codec = self._codecs.get(mv)
        if codec is None:
            assert mv.signature is not None
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

    def predict_one(self, name: str | None, version: str | None, body: bytes) -> dict[str, Any]:
        """Score one JSON object of named features (the seed's ``/predict``)."""
        mv = self.resolve(name, version)
        codec = self.codec(mv)
        with self.incoming(mv):
            x = codec.decode_one(parse_json(body))
            out = codec.encode_one(self.infer(mv, {TABULAR_INPUT: x}))
        out["model"] = mv.name
        out["version"] = mv.version
        return out

    def predict_batch(self, name: str | None, version: str | None, body: bytes) -> dict[str, Any]:
        """Score ``{"instances": [...]}`` (the seed's ``/predict_batch``)."""
        mv = self.resolve(name, version)
        codec = self.codec(mv)
        with self.incoming(mv):
            x = codec.decode_batch(parse_json(body))
            out = codec.encode_batch(self.infer(mv, {TABULAR_INPUT: x}))
        out["model"] = mv.name
        out["version"] = mv.version
        return out

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
        return {
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
