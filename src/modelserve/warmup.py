"""The warm-up input of a model version, and the load error that says how to fix a failed one.

Pure functions of the signature: the repository scores :func:`warm_up_inputs` before a version
serves, and raises :func:`warm_up_error` when that fails.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import ModelLoadError
from .types import TABULAR_INPUT
from .types import Feature
from .types import Signature
from .types import TensorDict

#: Datatypes of tensor inputs that a zero-filled warm-up can feed.
ZERO_DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


def warm_up_inputs(signature: Signature) -> TensorDict | None:
    """One valid request's model input, or ``None`` for models without an example input.

    A tabular model gets one row of :meth:`Signature.example` values in feature order, as the
    seed codec would decode it: float64 when every feature is a number, else an object array
    holding each value of its own kind (``"A"`` for a category, ``4.93`` for a number). Tensor
    models get zeros of their declared shapes.
    """
    if signature.kind == "tabular" and not signature.tensor_inputs:
        row = list(signature.example().values())
        dtype: type = np.float64 if signature.numeric else object
        return {TABULAR_INPUT: np.array([row], dtype=dtype).reshape(1, len(row))}
    if signature.tensor_inputs and all(t.datatype in ZERO_DTYPES for t in signature.tensor_inputs):
        return {
            t.name: np.zeros([1 if d < 0 else d for d in t.shape], dtype=ZERO_DTYPES[t.datatype])
            for t in signature.tensor_inputs
        }
    return None


def warm_up_error(signature: Signature, exc: BaseException) -> ModelLoadError:
    """The load error for a model that failed its warm-up prediction on ``exc``.

    For a tabular model it names the column most likely at fault and the ``model.yaml``
    ``inputs`` that would fix it: a column the exception mentions, else one whose kind
    nothing fitted could tell (it was assumed to hold numbers), else every number column.
    """
    cause = f"{type(exc).__name__}: {exc}"
    if signature.kind != "tabular" or not signature.features:
        return ModelLoadError(f"The model failed its warm-up prediction: {cause}")
    suspects = _suspects(signature, str(exc))
    example = signature.example()
    shown = ", ".join(f"{name}={example[name]!r}" for name in signature.feature_names)
    guessed: dict[str, str] = signature.extra.get("guessed_columns", {})
    why = [
        f"{name!r} (read by {guessed[name]}, so modelserve assumed numbers)"
        if name in guessed
        else repr(name)
        for name in suspects
    ]
    fix = ", ".join(_yaml_feature(f, f.name in suspects) for f in signature.features)
    return ModelLoadError(
        f"The model failed its warm-up prediction on the example row ({shown}): {cause}. "
        f"Check column {', '.join(why)}: if it holds strings, declare every input in "
        f"model.yaml, for example inputs: [{fix}] (list the values the model knows under "
        "enum, or leave enum out to accept any string)."
    )


def _suspects(signature: Signature, message: str) -> list[str]:
    named = [
        f.name
        for f in signature.features
        if re.search(rf"(?<!\w){re.escape(f.name)}(?!\w)", message)
    ]
    if named:
        return named
    guessed = [
        n for n in signature.extra.get("guessed_columns", {}) if n in signature.feature_names
    ]
    if guessed:
        return guessed
    numbers = [f.name for f in signature.features if f.type in ("number", "integer")]
    return numbers or signature.feature_names


def _yaml_feature(feature: Feature, suspect: bool) -> str:
    if suspect and feature.type in ("number", "integer"):
        return f"{{name: {feature.name}, type: string, enum: [...]}}"
    if feature.enum is not None:
        values = ", ".join(str(v) for v in feature.enum)
        return f"{{name: {feature.name}, type: {feature.type}, enum: [{values}]}}"
    return f"{{name: {feature.name}, type: {feature.type}}}"
