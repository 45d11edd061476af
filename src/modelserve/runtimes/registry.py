"""Map a manifest's ``runtime`` value to its class, importing heavy libraries only on use."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ModelLoadError
from .base import Runtime

#: runtime name -> ("module:Class", the extra that provides its dependencies)
_RUNTIMES: dict[str, tuple[str, str]] = {
    "auto": ("modelserve.runtimes.auto:AutoRuntime", "sklearn"),
    "sklearn": ("modelserve.runtimes.sklearn:SKLearnRuntime", "sklearn"),
    "onnx": ("modelserve.runtimes.onnx:ONNXRuntime", "onnx"),
    "torch": ("modelserve.runtimes.torch:TorchRuntime", "torch"),
    "xgboost": ("modelserve.runtimes.xgboost:XGBoostRuntime", "xgboost"),
    "lightgbm": ("modelserve.runtimes.lightgbm:LightGBMRuntime", "lightgbm"),
}
#: Runtimes whose loaded models a server's main process may load before forking its workers
#: (each class says so in ``Runtime.fork_safe``; a test keeps the two in step). Known without
#: importing the runtime: importing onnxruntime or torch into the main process is what must
#: not happen (their thread pools do not survive the fork, and a worker then hangs at exit).
_FORK_SAFE: set[str] = {"sklearn"}
#: file extension -> runtime name, for manifests (or single files) that name no runtime.
_EXTENSIONS: dict[str, str] = {
    # scikit-learn artifacts are compiled to ONNX when that gives the same answers.
    ".pkl": "auto",
    ".pickle": "auto",
    ".joblib": "auto",
    ".skops": "auto",
    ".onnx": "onnx",
    ".pt": "torch",
    ".pth": "torch",
    ".torchscript": "torch",
    # Booster.save_model files. A version folder holding another .json or .txt file beside
    # the model must name its artifact in model.yaml.
    ".json": "xgboost",
    ".ubj": "xgboost",
    ".txt": "lightgbm",
}


def register_runtime(
    name: str, target: str, extra: str, extensions: tuple[str, ...] = (), fork_safe: bool = False
) -> None:
    """Make ``runtime: name`` in a manifest load ``target`` (``"package.module:Class"``)."""
    _RUNTIMES[name] = (target, extra)
    if fork_safe:
        _FORK_SAFE.add(name)
    else:
        _FORK_SAFE.discard(name)
    for ext in extensions:
        _EXTENSIONS[ext] = name


def runtime_names() -> list[str]:
    return sorted(_RUNTIMES)


def runtime_for_file(path: Path) -> str | None:
    """Guess the runtime from a file's extension, or ``None``."""
    return _EXTENSIONS.get(path.suffix.lower())


def is_fork_safe(name: str) -> bool:
    """Whether runtime ``name`` may be preloaded before the fork, without importing it."""
    return name in _FORK_SAFE


def known_extensions() -> list[str]:
    return sorted(_EXTENSIONS)


def get_runtime_class(name: str) -> type[Runtime]:
    """Import and return the runtime class for ``name``.

    :raises ModelLoadError: for an unknown runtime name.
    :raises RuntimeUnavailable: when its optional dependency is missing.
    """
    from ..errors import RuntimeUnavailable

    try:
        target, extra = _RUNTIMES[name]
    except KeyError:
        raise ModelLoadError(
            f"Unknown runtime {name!r}; known runtimes: {', '.join(runtime_names())}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeUnavailable(name, extra) from exc
    cls: type[Runtime] = getattr(module, class_name)
    return cls
