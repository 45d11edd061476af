"""Classifier scores to answers: softmax, top-k and class names, vectorised over a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .types import Tensor


def softmax(scores: Tensor) -> Tensor:
    """Row-wise softmax in float64, shifted by the row maximum so large logits cannot overflow."""
    z: Tensor = np.asarray(scores, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def classify(
    scores: Tensor, class_names: Sequence[str], top_k: int, apply_softmax: bool = True
) -> list[dict[str, Any]]:
    """One seed-shaped answer per row of ``[N, classes]`` scores.

    Each answer has ``predicted_class`` (a name), ``class_index``, ``confidence``,
    ``all_probabilities`` (``{name: p}``) and ``top_k`` (best first).

    :param apply_softmax: ``False`` when the scores are already probabilities.
    """
    proba = softmax(scores) if apply_softmax else np.asarray(scores, dtype=np.float64)
    k = min(top_k, proba.shape[1])
    # argsort of the negated row is stable, so ties keep class order.
    best = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    names = list(class_names)
    answers = []
    for row, order in zip(proba.tolist(), best.tolist(), strict=True):
        top = order[0]
        answers.append(
            {
                "predicted_class": names[top],
                "class_index": top,
                "confidence": row[top],
                "all_probabilities": dict(zip(names, row, strict=True)),
                "top_k": [{"class": names[i], "index": i, "probability": row[i]} for i in order],
            }
        )
    return answers
