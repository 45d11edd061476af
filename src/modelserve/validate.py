"""`modelserve validate`: load, verify, sample-predict, and optionally write manifests back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson

from .errors import ModelServeError
from .manifest import MANIFEST_NAME
from .manifest import FeatureSpec
from .manifest import Manifest
from .manifest import dump_manifest
from .manifest import parse_manifest
from .manifest import read_manifest_data
from .protocols.images import ImageProtocol
from .protocols.seed import SeedProtocol
from .repository import FailedVersion
from .repository import LoadedVersion
from .repository import ModelEntry
from .service import InferenceService
from .settings import ServerSettings


def validate_repository(
    settings: ServerSettings, write_manifest: bool, echo: Callable[[str], None]
) -> bool:
    """Check every model version; return True when all load and answer a sample request."""
    service = InferenceService(settings)
    service.load()
    seed, images = SeedProtocol(service), ImageProtocol(service)
    ok = True
    for entry in service.repository.entries():
        for mv in entry.sorted_versions():
            if isinstance(mv, FailedVersion):
                ok = False
                echo(f"FAIL {mv.name} v{mv.version}: {mv.error}")
                continue
            image = mv.signature.kind == "image"
            try:
                if image:
                    answer = images.classify(mv.name, mv.version, [_sample_image()])
                else:
                    sample = orjson.dumps(mv.signature.example())
                    answer = seed.predict_one(mv.name, mv.version, sample)
            except ModelServeError as exc:
                ok = False
                echo(f"FAIL {mv.name} v{mv.version}: sample prediction failed: {exc.message}")
                continue
            if image:
                n_classes = len(mv.signature.classes or ())
                echo(
                    f"ok   {mv.name} v{mv.version}: image model, {n_classes} classes, "
                    f"sample prediction {answer['predicted_class']!r}"
                )
                continue
            echo(
                f"ok   {mv.name} v{mv.version}: {len(mv.signature.features)} features, "
                f"{mv.signature.task}, sample prediction {answer['prediction']!r}"
            )
        if write_manifest and entry.default is not None:
            target = write_entry_manifest(entry, entry.default, settings)
            echo(f"wrote {target}")
    return ok


def write_entry_manifest(entry: ModelEntry, mv: LoadedVersion, settings: ServerSettings) -> Path:
    """Write the inferred signature and every version's sha256 pins into ``model.yaml``.

    Fields already in the manifest are kept; inferred ones fill the gaps.
    """
    single_file = mv.path.is_file()
    model_dir = mv.path.parent if single_file else entry.path
    target = model_dir / MANIFEST_NAME
    existing = read_manifest_data(target) if target.is_file() and not single_file else {}
    current = parse_manifest(existing, target)
    sig = mv.signature
    pins = dict(current.sha256)
    for version in entry.versions.values():
        pins.update(version.hashes)
    update: dict[str, object] = {
        "runtime": current.runtime or mv.runtime.name,
        "task": current.task or sig.task,
        "inputs": current.inputs
        or ([FeatureSpec.model_validate(f.to_dict()) for f in sig.features] or None),
        "sha256": pins,
    }
    if single_file:
        update["artifact"] = mv.artifacts.artifact.name
        if mv.artifacts.preprocessor is not None:
            update["preprocessor"] = mv.artifacts.preprocessor.name
    manifest: Manifest = current.model_copy(update=update)
    target.write_text(dump_manifest(manifest), encoding="utf-8")
    return target


def _sample_image() -> bytes:
    """A small white PNG: any image model must answer it (the preprocessing resizes it)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(buf, "PNG")
    return buf.getvalue()
