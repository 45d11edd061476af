from __future__ import annotations

import numpy as np
import pytest

from modelserve.postprocess import classify
from modelserve.postprocess import softmax


def test_softmax_rows_sum_to_one_even_for_huge_logits() -> None:
    scores = np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    proba = softmax(scores)
    assert proba.dtype == np.float64
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.allclose(proba[0], [0.5, 0.5, 0.0]) and np.allclose(proba[1], 1 / 3)


def test_classify_names_ranks_and_truncates() -> None:
    scores = np.log(np.array([[0.1, 0.6, 0.3], [0.7, 0.1, 0.2]]))
    first, second = classify(scores, ["cat", "dog", "bird"], top_k=2)
    assert first["predicted_class"] == "dog" and first["class_index"] == 1
    assert first["confidence"] == pytest.approx(0.6)
    assert first["all_probabilities"] == pytest.approx({"cat": 0.1, "dog": 0.6, "bird": 0.3})
    assert [t["class"] for t in first["top_k"]] == ["dog", "bird"]
    assert [t["class"] for t in second["top_k"]] == ["cat", "bird"]
    assert isinstance(first["confidence"], float)


def test_probabilities_pass_through_without_softmax() -> None:
    (answer,) = classify(np.array([[0.2, 0.8]]), ["a", "b"], top_k=5, apply_softmax=False)
    assert answer["all_probabilities"] == {"a": 0.2, "b": 0.8}
    assert len(answer["top_k"]) == 2  # never more than there are classes


def test_ties_keep_class_order() -> None:
    (answer,) = classify(np.zeros((1, 3)), ["a", "b", "c"], top_k=3)
    assert [t["class"] for t in answer["top_k"]] == ["a", "b", "c"]
