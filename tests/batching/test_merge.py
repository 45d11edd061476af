from __future__ import annotations

import numpy as np
import pytest

from modelserve.batching import merge


def test_stack_and_split_round_trip() -> None:
    a = {"input": np.arange(6.0).reshape(3, 2)}
    b = {"input": np.arange(6.0, 8.0).reshape(1, 2)}
    merged, sizes = merge.stack([a, b])
    assert sizes == [3, 1]
    assert merged["input"].shape == (4, 2)
    parts = merge.split({"out": merged["input"] * 10, "label": np.arange(4)}, sizes)
    assert np.array_equal(parts[0]["out"], a["input"] * 10)
    assert np.array_equal(parts[1]["out"], b["input"] * 10)
    assert parts[1]["label"].tolist() == [3]


def test_split_rejects_outputs_without_the_batch_axis() -> None:
    with pytest.raises(ValueError, match="not 3 rows"):
        merge.split({"total": np.array(1.0)}, [1, 2])
    with pytest.raises(ValueError, match="not 3 rows"):
        merge.split({"x": np.zeros((2, 1))}, [1, 2])


def test_layout_tells_stackable_requests_apart() -> None:
    f64 = {"input": np.zeros((2, 4))}
    assert merge.layout(f64) == merge.layout({"input": np.ones((9, 4))})
    assert merge.layout(f64) != merge.layout({"input": np.zeros((2, 5))})
    assert merge.layout(f64) != merge.layout({"input": np.zeros((2, 4), dtype=np.float32)})
    assert merge.layout(f64) != merge.layout({"image": np.zeros((2, 4))})


def test_batch_size_requires_one_shared_first_axis() -> None:
    assert merge.batch_size({"a": np.zeros((3, 1)), "b": np.zeros(3)}) == 3
    with pytest.raises(ValueError):
        merge.batch_size({"a": np.zeros((3, 1)), "b": np.zeros(2)})
    with pytest.raises(ValueError):
        merge.batch_size({"a": np.array(1.0)})


def test_outputs_union_and_select() -> None:
    assert merge.union_outputs([["predict"], ["predict_proba", "predict"]]) == [
        "predict",
        "predict_proba",
    ]
    assert merge.union_outputs([["predict"], None]) is None
    outs = {"predict": np.zeros(1), "predict_proba": np.zeros((1, 2))}
    assert set(merge.select(outs, ["predict"])) == {"predict"}
    assert merge.select(outs, None) is outs
