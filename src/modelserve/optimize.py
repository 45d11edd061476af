"""`modelserve optimize`: compile a scikit-learn model to ONNX offline, as a new version.

The same conversion and check as ``runtime: auto`` at load, done once ahead of time, so
servers load a small ONNX graph instead of unpickling and converting (and need no pickle at
all). The new version folder is built aside and renamed into place, so a running server's
hot reload never sees half of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from .errors import ModelLoadError
from .errors import ModelNotFound
from .manifest import MANIFEST_NAME
from .repository import sha256_file
from .runtimes.auto import AutoRuntime
from .service import InferenceService
from .settings import ServerSettings


def optimize_model(settings: ServerSettings, name: str | None = None) -> Path:
    """Write the default version of model ``name`` compiled to ONNX as the next version.

    :returns: the new version folder.
    :raises ModelNotFound: unknown model, or several models and no ``name``.
    :raises ModelLoadError: the model cannot be compiled (with the reason).
    """
    if settings.model_path is not None and Path(settings.model_path).is_file():
        raise ModelLoadError(
            "optimize writes a new version into a model folder: give a folder, not a file "
            "(`modelserve validate FILE --write-manifest` turns a file's folder into one)"
        )
    service = InferenceService(settings)
    service.repository.load_all()
    names = service.repository.names()
    if name is None:
        if len(names) != 1:
            raise ModelNotFound(None)
        name = names[0]
    entry = service.repository.find_entry(name)
    if entry is None:
        raise ModelNotFound(name)
    mv = service.repository.get(name)
    runtime = mv.runtime
    if not isinstance(runtime, AutoRuntime):
        raise ModelLoadError(
            f"{name} v{mv.version} is served by the {mv.manifest.runtime or 'given'} runtime; "
            "optimize compiles scikit-learn models (runtime: auto)"
        )
    if not runtime.compiled or runtime.cache_path is None:
        raise ModelLoadError(f"{name} v{mv.version} cannot be compiled: {runtime.reason}")
    on_disk = [int(p.name) for p in entry.path.iterdir() if p.is_dir() and p.name.isdigit()]
    version = str(max([*on_disk, *entry.versions]) + 1)
    staging = entry.path / f".optimize-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copyfile(runtime.cache_path, staging / "model.onnx")
    sig = mv.signature
    manifest: dict[str, object] = {
        "runtime": "onnx",
        "artifact": "model.onnx",
        "preprocessor": None,  # compiled into the graph
        "task": sig.task,
        "inputs": [f.to_dict() for f in sig.features],
        "description": f"{name} v{mv.version} compiled to ONNX by `modelserve optimize`.",
        "sha256": {"model.onnx": sha256_file(staging / "model.onnx")},
    }
    if sig.class_names is not None:
        manifest["class_names"] = list(sig.class_names)
    (staging / MANIFEST_NAME).write_text(yaml.safe_dump(manifest, sort_keys=False))
    target = entry.path / version
    staging.rename(target)
    return target
