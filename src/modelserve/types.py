"""Type aliases and the model-signature values shared by runtimes, codecs and the service.

No behaviour lives here beyond small derived properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt

Tensor = npt.NDArray[Any]
TensorDict = dict[str, Tensor]
FeatureType = Literal["number", "integer", "string", "boolean"]
Task = Literal["classification", "regression"]

#: Output names every tabular runtime uses; the V2 protocol exposes the same names.
PREDICT_OUTPUT = "predict"
PROBA_OUTPUT = "predict_proba"
#: The one input name a tabular runtime takes: a 2-D ``[rows, features]`` array.
TABULAR_INPUT = "input"


@dataclass(frozen=True)
class Feature:
    """One named input column of a tabular model, with its validation bounds."""

    name: str
    type: FeatureType = "number"
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str | None = None
    #: A typical value read from the fitted model (a scaler's mean, an encoder's first
    #: category), preferred by :meth:`example` when it is valid; not part of the schema.
    sample: Any = None

    def example(self) -> Any:
        """A valid value: the fitted ``sample`` when valid, else the first enum value, else in
        bounds (the middle when both given)."""
        if self.sample is not None and self.accepts(self.sample):
            return self.sample
        if self.enum:
            return self.enum[0]
        if self.type == "boolean":
            return False
        if self.type == "string":
            return ""
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            value = (lo + hi) / 2
        elif lo is not None:
            value = lo
        elif hi is not None:
            value = min(hi, 0.0)
        else:
            value = 0.0
        return int(np.ceil(value)) if self.type == "integer" else float(value)

    def accepts(self, value: Any) -> bool:
        """True when ``value`` is of the feature's type, in its enum and within its bounds."""
        if self.type == "string":
            ok = isinstance(value, str)
        elif self.type == "boolean":
            ok = isinstance(value, bool)
        elif self.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or (self.enum is not None and value not in self.enum):
            return False
        if self.type in ("number", "integer"):
            if self.minimum is not None and value < self.minimum:
                return False
            if self.maximum is not None and value > self.maximum:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        for key in ("enum", "minimum", "maximum", "description"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "enum" else value
        return out


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor a model takes or gives, in Open Inference Protocol terms.

    ``datatype`` is a V2 datatype name (``FP32``, ``INT64``, ``BYTES``...); ``-1`` in ``shape``
    marks a variable dimension (the batch dimension first).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives: feature columns, task, class labels.

    ``classes`` are the labels as the model knows them (``classes_``); ``class_names`` are
    optional display names aligned with them. ``kind`` says which routes fit the model:
    ``tabular`` models take named ``features`` (seed ``/predict``); ``image`` and ``tensor``
    models are described by ``tensor_inputs``/``tensor_outputs`` instead. Tabular models may
    leave the tensor specs empty: transports derive them from the features.
    """

    features: tuple[Feature, ...]
    task: Task
    classes: tuple[Any, ...] | None = None
    class_names: tuple[str, ...] | None = None
    has_proba: bool = False
    kind: Literal["tabular", "image", "tensor"] = "tabular"
    tensor_inputs: tuple[TensorSpec, ...] = ()
    tensor_outputs: tuple[TensorSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> bool:
        """True when every feature is a number, so rows fit one float64 array."""
        return all(f.type in ("number", "integer") for f in self.features)

    def example(self) -> dict[str, Any]:
        """A valid instance of named features (docs, ``validate``, warm-up)."""
        return {f.name: f.example() for f in self.features}

    @property
    def outputs(self) -> list[str]:
        return [PREDICT_OUTPUT, PROBA_OUTPUT] if self.has_proba else [PREDICT_OUTPUT]


def to_python(value: Any) -> Any:
    """Turn a numpy scalar into the plain Python value JSON encoders expect."""
    if isinstance(value, np.generic):
        return value.item()
    return value
