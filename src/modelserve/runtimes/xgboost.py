"""XGBoost runtime: Booster files (``.json``, ``.ubj``), compiled to ONNX when the check passes.

Pickled ``XGBClassifier``/``XGBRegressor`` models are scikit-learn artifacts: the ``auto`` and
``sklearn`` runtimes serve them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xgboost

from .. import threads
from ..errors import InferenceError
from ..errors import ModelLoadError
from ..types import Task
from ._boosters import BoosterInfo
from ._boosters import BoosterRuntime
from ._boosters import variable_batch
from .auto import NotCompiled

#: objective -> (task, whether the native scores are probabilities). ``multi:softmax`` models
#: store margins; their probabilities are the softmax of those, as ``multi:softprob`` gives.
_OBJECTIVES: dict[str, tuple[Task, bool]] = {
    "binary:logistic": ("classification", True),
    "binary:logitraw": ("classification", True),
    "binary:hinge": ("classification", False),
    "multi:softprob": ("classification", True),
    "multi:softmax": ("classification", True),
}
_REGRESSION_PREFIXES = ("reg:", "count:", "survival:", "rank:")


def _thresholds(config: dict[str, Any]) -> dict[int, list[float]]:
    """Split thresholds per feature, read from the model's JSON (gbtree and dart)."""
    booster = config["learner"]["gradient_booster"]
    model = booster.get("gbtree", booster).get("model", {})
    found: dict[int, list[float]] = {}
    for tree in model.get("trees", ()):
        for feature, value, left in zip(
            tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
        ):
            if left != -1:  # a leaf's split_condition is its leaf value
                found.setdefault(int(feature), []).append(float(value))
    return found


class XGBoostRuntime(BoosterRuntime):
    """Serve an XGBoost ``Booster`` saved with ``save_model``."""

    name = "xgboost"
    library = "xgboost"

    _booster: xgboost.Booster

    def _load_booster(self) -> BoosterInfo:
        path = self.artifacts.artifact
        try:
            if path.suffix.lower() in (".json", ".ubj"):
                booster = xgboost.Booster(model_file=str(path))
            else:
                # MLflow's model.xgb: XGBoost guesses a file's format from its extension and
                # warns on others, but tells JSON from UBJSON by the bytes of a buffer.
                booster = xgboost.Booster()
                booster.load_model(bytearray(path.read_bytes()))
        except (xgboost.core.XGBoostError, OSError) as exc:
            raise ModelLoadError(f"Cannot load {path.name} with xgboost: {exc}") from exc
        # One model call may use this worker's share of the cores (threads.model_threads).
        booster.set_param({"nthread": threads.model_threads()})
        self._booster = booster
        config = json.loads(booster.save_config())
        learner = config["learner"]
        objective = str(learner["objective"]["name"])
        params = learner["learner_model_param"]
        if int(params.get("num_target", 1)) > 1:
            raise ModelLoadError(
                f"{path.name} predicts {params['num_target']} targets; modelserve serves "
                "one output per row"
            )
        task, has_proba = _OBJECTIVES.get(objective, (None, False))
        if task is None and objective.startswith(_REGRESSION_PREFIXES):
            task = "regression"
        classes = max(2, int(params.get("num_class", 0))) if task == "classification" else 0
        self._margin = objective in ("binary:logitraw", "multi:softmax")
        names = booster.feature_names
        return BoosterInfo(
            num_features=booster.num_features(),
            objective=objective,
            task=task,
            num_classes=classes,
            has_proba=has_proba,
            feature_names=tuple(names) if names else None,
            thresholds=_thresholds(json.loads(booster.save_raw("json"))),
        )

    def _native_scores(self, x: np.ndarray) -> np.ndarray:
        try:
            # inplace_predict reads the numpy array as it is: no DMatrix is built.
            raw = self._booster.inplace_predict(
                x, predict_type="margin" if self._margin else "value", validate_features=False
            )
        except (xgboost.core.XGBoostError, ValueError, TypeError) as exc:
            raise InferenceError(f"The model could not score this input: {exc}") from exc
        scores: np.ndarray = np.asarray(raw, dtype=np.float64)
        if not self._signature.has_proba:
            return scores
        if self._margin:
            if scores.ndim == 1:  # binary:logitraw
                scores = 1.0 / (1.0 + np.exp(-scores))
            else:  # multi:softmax
                exp = np.exp(scores - scores.max(axis=1, keepdims=True))
                return np.asarray(exp / exp.sum(axis=1, keepdims=True))
        if scores.ndim == 1:
            return np.column_stack([1.0 - scores, scores])
        return scores

    def _converter_key(self) -> list[bytes]:
        import onnxmltools

        return [f"onnxmltools {onnxmltools.__version__} xgboost {xgboost.__version__}".encode()]

    def _convert(self) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        width = self.info.num_features
        booster = self._booster
        if booster.feature_names is not None:
            # onnxmltools reads split features as "f<index>" only; a booster trained on a
            # DataFrame names them. The graph takes columns by position either way.
            booster = booster.copy()
            booster.feature_names = None
        try:
            # float32 in: XGBoost itself scores features as float32, so no split moves.
            graph = onnxmltools.convert_xgboost(
                booster, initial_types=[("input", FloatTensorType([None, width]))]
            )
        except Exception as exc:  # onnxmltools raises many kinds for what it does not support
            raise NotCompiled(
                f"onnxmltools cannot convert it: {type(exc).__name__}: {exc}"
            ) from exc
        return variable_batch(graph)
