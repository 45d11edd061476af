"""What the server serves, for people and load balancers: health, the model list, and each
model's metadata (features, classes, input JSON Schemas, runtime)."""

from __future__ import annotations

import time
from typing import Any

from .codecs.schema import array_schema
from .codecs.schema import object_schema
from .protocols.images import image_metadata
from .service import InferenceService


class ModelListing:
    """Describe the models of one service.

    :param service: the service to describe.
    """

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    def health(self) -> tuple[dict[str, Any], bool]:
        """Overall readiness (every model has a loaded default version) and the details."""
        service = self._service
        models = []
        for model in service.models():
            default = model.default
            item: dict[str, Any] = {
                "name": model.name,
                "version": default.label if default else None,
                "loaded": default is not None,
            }
            failed = model.entry.failures()
            if failed:
                item["failed_versions"] = failed
            models.append(item)
        ready = service.ready()
        body = {
            "status": "healthy" if ready else "unhealthy",
            "models": models,
            "default_model": service.default_name(),
            "uptime_seconds": round(time.time() - service.started_at, 3),
        }
        return body, ready

    def models(self) -> list[dict[str, Any]]:
        """Every model with its versions and their states."""
        out = []
        for model in self._service.models():
            default = model.default
            out.append(
                {
                    "name": model.name,
                    "default_version": default.label if default else None,
                    "versions": [mv.status() for mv in model.entry.sorted_versions()],
                    "task": default.signature.task if default else None,
                }
            )
        return out

    def metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Everything a client needs to call a model: features, classes, input JSON Schemas."""
        service = self._service
        sv = service.resolve(name, version)
        model = service.find_model(sv.name)
        sig = sv.signature
        longest = service.settings.max_string_length
        allow_extra = service.settings.allow_extra_fields
        body = {
            "name": sv.name,
            "version": sv.label,
            "versions": [str(v) for v in sorted(model.entry.versions)] if model else [sv.label],
            "description": sv.model.manifest.description,
            "task": sig.task,
            "inputs": [f.to_dict() for f in sig.features],
            "classes": list(sig.classes) if sig.classes is not None else None,
            "class_names": list(sig.class_names) if sig.class_names is not None else None,
            "outputs": sig.outputs,
            "runtime": sv.runtime.describe(),
            "sha256": sv.model.hashes,
            "cache": sv.cache.stats() if sv.cache is not None else None,
            "input_schema": object_schema(sig, allow_extra, longest),
            "input_schema_array": array_schema(sig, longest),
            "example": sig.example(),
        }
        if sig.kind == "image":
            body.update(image_metadata(sv))
        return body
