"""BentoML service for the load benchmark: the demo models behind BentoML's own JSON API.

A template: ``benchmarks/peers.py`` copies it into ``benchmarks/.cache/peers/<target>/`` beside a
``config.json`` naming the joblib artifacts and the batching settings, and serves it with
``bentoml serve service:Models`` from that folder's venv. Never imported by modelserve.

Request: ``POST /forest`` or ``POST /iris`` with ``{"instances": [[x1, ..., xn], ...]}``.
Answer: the class probabilities, one row per instance (``predict_proba``).
"""

import json
from pathlib import Path
from typing import Any

import bentoml
import joblib
import numpy as np

CONFIG: dict[str, Any] = json.loads((Path(__file__).parent / "config.json").read_text())
BATCHING: dict[str, Any] = CONFIG["batching"] or {}
API: dict[str, Any] = (
    {
        "batchable": True,
        "batch_dim": 0,
        "max_batch_size": BATCHING["max_batch_size"],
        "max_latency_ms": BATCHING["max_latency_ms"],
    }
    if BATCHING
    else {}
)


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Models:
    """Both demo models in one service, as modelserve serves both from one repository."""

    def __init__(self) -> None:
        self.forest_model = joblib.load(CONFIG["forest"])
        self.iris_model = joblib.load(CONFIG["iris"])

    @bentoml.api(**API)
    def forest(self, instances: np.ndarray) -> np.ndarray:
        return np.asarray(self.forest_model.predict_proba(instances))

    @bentoml.api(**API)
    def iris(self, instances: np.ndarray) -> np.ndarray:
        return np.asarray(self.iris_model.predict_proba(instances))
