"""LightGBM runtime: Booster text files (``.txt``), compiled to ONNX when the check passes.

Pickled ``LGBMClassifier``/``LGBMRegressor`` models are scikit-learn artifacts: the ``auto``
and ``sklearn`` runtimes serve them.
"""

from __future__ import annotations

import re
from typing import Any

import lightgbm
import numpy as np

from .. import threads
from ..errors import InferenceError
from ..errors import ModelLoadError
from ..types import Task
from ._boosters import BoosterInfo
from ._boosters import BoosterRuntime
from ._boosters import variable_batch
from .auto import NotCompiled

#: objective (the first word of the model file's ``objective=`` line) -> (task, probabilities).
_OBJECTIVES: dict[str, tuple[Task, bool]] = {
    "binary": ("classification", True),
    "multiclass": ("classification", True),
    "multiclassova": ("classification", True),
}
#: Objectives whose scores are values (``cross_entropy`` gives a probability-like value too).
_REGRESSION = frozenset(
    {
        "regression",
        "regression_l1",
        "huber",
        "fair",
        "poisson",
        "quantile",
        "mape",
        "gamma",
        "tweedie",
        "cross_entropy",
        "cross_entropy_lambda",
        "lambdarank",
        "rank_xendcg",
    }
)
#: The names LightGBM makes up for features trained without names.
_UNNAMED = re.compile(r"Column_\d+")


def _thresholds(node: dict[str, Any], found: dict[int, list[float]]) -> None:
    while "split_feature" in node:
        threshold = node.get("threshold")
        if node.get("decision_type") == "<=" and isinstance(threshold, int | float):
            found.setdefault(int(node["split_feature"]), []).append(float(threshold))
        _thresholds(node["left_child"], found)
        node = node["right_child"]


class LightGBMRuntime(BoosterRuntime):
    """Serve a LightGBM ``Booster`` saved with ``save_model``."""

    name = "lightgbm"
    library = "lightgbm"

    _booster: lightgbm.Booster

    def _load_booster(self) -> BoosterInfo:
        path = self.artifacts.artifact
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelLoadError(f"Cannot load {path.name} with lightgbm: {exc}") from exc
        self._booster = booster
        self._threads = threads.model_threads()
        dump = booster.dump_model()
        objective = str(dump.get("objective", "")).split(" ")[0] or "custom"
        task, has_proba = _OBJECTIVES.get(objective, (None, False))
        if task is None and objective in _REGRESSION:
            task = "regression"
        names = [str(n) for n in booster.feature_name()]
        unnamed = all(_UNNAMED.fullmatch(n) for n in names)
        found: dict[int, list[float]] = {}
        for tree in dump.get("tree_info", ()):
            _thresholds(tree["tree_structure"], found)
        return BoosterInfo(
            num_features=booster.num_feature(),
            objective=objective,
            task=task,
            num_classes=max(2, int(dump.get("num_class", 1))) if task == "classification" else 0,
            has_proba=has_proba,
            feature_names=None if unnamed else tuple(names),
            thresholds=found,
        )

    def _native_scores(self, x: np.ndarray) -> np.ndarray:
        try:
            # A 2-D float64 array goes to LightGBM's C API as it is: no Dataset is built.
            scores = self._booster.predict(x, num_threads=self._threads)
        except (lightgbm.basic.LightGBMError, ValueError, TypeError) as exc:
            raise InferenceError(f"The model could not score this input: {exc}") from exc
        scores = np.asarray(scores, dtype=np.float64)
        if self._signature.has_proba and scores.ndim == 1:
            return np.column_stack([1.0 - scores, scores])
        return scores

    def _converter_key(self) -> list[bytes]:
        import onnxmltools

        return [f"onnxmltools {onnxmltools.__version__} lightgbm {lightgbm.__version__}".encode()]

    def _convert(self) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        width = self.info.num_features
        try:
            # onnxmltools takes float32 only; LightGBM compares doubles, so the check on
            # split thresholds decides whether the graph branches the same way.
            graph = onnxmltools.convert_lightgbm(
                self._booster,
                initial_types=[("input", FloatTensorType([None, width]))],
                zipmap=False,
            )
        except Exception as exc:  # onnxmltools raises many kinds for what it does not support
            raise NotCompiled(
                f"onnxmltools cannot convert it: {type(exc).__name__}: {exc}"
            ) from exc
        return variable_batch(graph)
