"""scikit-learn runtime: joblib, pickle and skops artifacts, Pipelines, a separate preprocessor.

Pickle and joblib files run code when loaded: only load files you trust, and pin their sha256
in the manifest. ``.skops`` files are loaded with skops' type allow-list instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from ..errors import InferenceError
from ..errors import ModelLoadError
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Signature
from ..types import TensorDict
from .base import Runtime
from .columns import Column
from .columns import read_columns

logger = logging.getLogger(__name__)

#: Estimators whose ``predict`` is exactly ``classes_[argmax(predict_proba)]`` in scikit-learn's
#: own source, so one model call can answer both outputs.
_LABELS_FROM_PROBA = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
    }
)


#: Modules whose types a ``.skops`` file may use without being listed in the manifest:
#: this process already runs their code, so trusting their classes adds no new code.
_TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.")


def _ours(type_name: str) -> bool:
    return type_name.startswith(_TRUSTED_MODULES)


def load_estimator(path: Path, trusted_types: Sequence[str] = ()) -> Any:
    """Load one scikit-learn object from a joblib, pickle or skops file.

    :raises ModelLoadError: naming the file and, for skops, the types it would not trust.
    """
    try:
        if path.suffix.lower() == ".skops":
            import skops.io as sio

            found = sio.get_untrusted_types(file=path)
            untrusted = [t for t in found if t not in trusted_types and not _ours(t)]
            if untrusted:
                raise ModelLoadError(
                    f"{path.name} contains types skops does not trust: {', '.join(untrusted)}. "
                    "If you trust them, list them under trusted_types in model.yaml."
                )
            return sio.load(path, trusted=found)
        # joblib reads both its own format and plain pickles.
        return joblib.load(path)
    except ModelLoadError:
        raise
    except Exception as exc:  # any unpickling failure is a load failure of this file
        raise ModelLoadError(f"Cannot load {path.name}: {type(exc).__name__}: {exc}") from exc


#: The DataFrame column dtype of each feature type (strings stay Python objects).
_FRAME_DTYPES: dict[str, Any] = {"number": np.float64, "integer": np.int64, "boolean": np.bool_}


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _single_threaded(model: Any) -> None:
    """Pin every ``n_jobs`` in the estimator tree to 1: a server scores from many threads
    already, and joblib pools per request would oversubscribe the cores."""
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return
    keys = [k for k in get_params(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")]
    if keys:
        model.set_params(**dict.fromkeys(keys, 1))


class SKLearnRuntime(Runtime):
    """Serve any fitted scikit-learn estimator or Pipeline, with an optional preprocessor."""

    name = "sklearn"
    # Unpickling builds numpy arrays and Python objects; ``n_jobs`` is pinned to 1 at load,
    # and the OpenMP/BLAS pools that some estimators use start at their first prediction,
    # which happens in the worker (warm-up), after the fork.
    fork_safe = True

    _model: Any
    _pre: Any

    def load(self) -> None:
        manifest = self.artifacts.manifest
        self._model = load_estimator(self.artifacts.artifact, manifest.trusted_types)
        if not hasattr(self._model, "predict"):
            raise ModelLoadError(
                f"{self.artifacts.artifact.name} holds a {type(self._model).__name__}, "
                "which has no predict method"
            )
        self._pre = None
        if self.artifacts.preprocessor is not None:
            self._pre = load_estimator(self.artifacts.preprocessor, manifest.trusted_types)
            if not hasattr(self._pre, "transform"):
                raise ModelLoadError(
                    f"Preprocessor {self.artifacts.preprocessor.name} holds a "
                    f"{type(self._pre).__name__}, which has no transform method"
                )
        for est in (self._model, self._pre):
            _single_threaded(est)
        self._signature = self._infer_signature()
        first = self._pre if self._pre is not None else self._model
        # A model fitted on a DataFrame selects or checks columns by name: give it one.
        self._frame_columns: list[str] | None = None
        if getattr(first, "feature_names_in_", None) is not None:
            try:
                import pandas  # noqa: F401
            except ImportError:
                raise ModelLoadError(
                    "This model was fitted on a pandas DataFrame and needs pandas to score: "
                    "pip install pandas"
                ) from None
            self._frame_columns = [str(c) for c in first.feature_names_in_]
        final = _final_estimator(self._model)
        self._labels_from_proba = (
            self._signature.has_proba and type(final).__name__ in _LABELS_FROM_PROBA
        )

    def _infer_signature(self) -> Signature:
        manifest = self.artifacts.manifest
        first = self._pre if self._pre is not None else self._model
        fitted_names = getattr(first, "feature_names_in_", None)
        n_in = getattr(first, "n_features_in_", None)
        names: list[str] | None = None
        if fitted_names is not None:
            names = [str(n) for n in fitted_names]
        elif n_in is not None:
            names = [f"x{i}" for i in range(int(n_in))]
        self._columns = read_columns(first, names) if names is not None else []
        extra: dict[str, Any] = {}
        if manifest.inputs is not None:
            features = tuple(f.to_feature() for f in manifest.inputs)
            if n_in is not None and len(features) != int(n_in):
                raise ModelLoadError(
                    f"The manifest lists {len(features)} inputs but the model was fitted on "
                    f"{int(n_in)} features"
                )
            if fitted_names is not None and [f.name for f in features] != names:
                raise ModelLoadError(
                    "The manifest's input names differ from the names the model was fitted "
                    f"with ({', '.join(str(n) for n in fitted_names)})"
                )
            # The manifest decides types and bounds; fitted statistics give the examples it
            # does not (an MLflow input example is the manifest's).
            # Matched by position: names are equal when fitted, x0... otherwise.
            if len(self._columns) == len(features):
                features = tuple(
                    f if f.sample is not None else dataclasses.replace(f, sample=c.sample())
                    for f, c in zip(features, self._columns, strict=True)
                )
        elif names is not None:
            features = tuple(c.feature() for c in self._columns)
            guessed = {c.name: c.unknown_reader for c in self._columns if c.guessed}
            if guessed:
                extra["guessed_columns"] = guessed
        else:
            raise ModelLoadError(
                "Cannot infer the model's input features (it has no n_features_in_): "
                "list them under inputs in model.yaml"
            )
        classes = getattr(self._model, "classes_", None)
        task = manifest.task
        if task is None:
            task = "classification" if classes is not None else "regression"
        has_proba = task == "classification" and hasattr(self._model, "predict_proba")
        class_tuple = (
            tuple(c.item() if isinstance(c, np.generic) else c for c in classes)
            if (task == "classification" and classes is not None)
            else None
        )
        class_names = tuple(manifest.class_names) if manifest.class_names else None
        if (
            class_names is not None
            and class_tuple is not None
            and len(class_names) != len(class_tuple)
        ):
            raise ModelLoadError(
                f"The manifest has {len(class_names)} class_names but the model has "
                f"{len(class_tuple)} classes"
            )
        return Signature(
            features=features,
            task=task,
            classes=class_tuple,
            class_names=class_names,
            has_proba=has_proba,
            extra=extra,
        )

    def signature(self) -> Signature:
        return self._signature

    @property
    def model(self) -> Any:
        """The loaded estimator (for compilers and tools; scoring goes through predict)."""
        return self._model

    @property
    def preprocessor(self) -> Any:
        return self._pre

    @property
    def columns(self) -> list[Column]:
        """What the fitted model says about each input column (empty when it cannot tell)."""
        return self._columns

    @property
    def frame_columns(self) -> list[str] | None:
        """Column names when the model needs a DataFrame, else ``None``."""
        return self._frame_columns

    @property
    def labels_from_proba(self) -> bool:
        """True when the estimator's labels are exactly ``classes_[argmax(proba)]``."""
        return self._labels_from_proba

    @property
    def classes(self) -> np.ndarray | None:
        classes = getattr(self._model, "classes_", None)
        return None if classes is None else np.asarray(classes)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": self.name, "estimator": type(self._model).__name__}
        if self._pre is not None:
            info["preprocessor"] = type(self._pre).__name__
        return info

    def _as_model_input(self, x: np.ndarray) -> Any:
        if self._frame_columns is None:
            return x
        import pandas as pd

        if x.dtype != object:
            return pd.DataFrame(x, columns=self._frame_columns)
        # Mixed rows arrive as objects: give each column the dtype it was declared with, as
        # the DataFrame the model was fitted on had (numbers sent as 1 and 1.5 are floats).
        data = {}
        for j, feature in enumerate(self._signature.features):
            values = x[:, j]
            dtype = _FRAME_DTYPES.get(feature.type)
            if dtype is not None:
                try:
                    values = values.astype(dtype)
                except (TypeError, ValueError) as exc:
                    raise InferenceError(
                        f"Column {feature.name!r} must hold {feature.type}s: {exc}"
                    ) from exc
            data[self._frame_columns[j]] = values
        return pd.DataFrame(data)

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        wanted = set(outputs) if outputs is not None else set(self._signature.outputs)
        x: Any = self._as_model_input(inputs[TABULAR_INPUT])
        result: TensorDict = {}
        try:
            if self._pre is not None:
                x = self._pre.transform(x)
            if PROBA_OUTPUT in wanted and self._signature.has_proba:
                proba = np.asarray(self._model.predict_proba(x))
                result[PROBA_OUTPUT] = proba
                if PREDICT_OUTPUT in wanted and self._labels_from_proba:
                    classes = np.asarray(self._model.classes_)
                    result[PREDICT_OUTPUT] = classes.take(np.argmax(proba, axis=1))
            if PREDICT_OUTPUT in wanted and PREDICT_OUTPUT not in result:
                result[PREDICT_OUTPUT] = np.asarray(self._model.predict(x))
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as exc:
            raise InferenceError(f"The model could not score this input: {exc}") from exc
        return result
