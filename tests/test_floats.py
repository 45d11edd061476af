"""float32 values widened to float64 at their own shortest digits."""

from __future__ import annotations

import numpy as np

from modelserve.floats import widen_float32


def test_float32_becomes_its_shortest_decimal() -> None:
    values = np.array([[0.85, 0.15], [1 / 3, 2e-8]], dtype=np.float32)[:, ::-1]  # a view
    wide = widen_float32(values)
    assert wide.dtype == np.float64 and wide.shape == (2, 2)
    assert wide.tolist() == [[0.15, 0.85], [2e-8, 0.33333334]]
    assert (wide.astype(np.float32) == values).all()  # the same float32 values


def test_non_finite_values_and_other_dtypes() -> None:
    wide = widen_float32(np.array([np.nan, np.inf, 0.1], dtype=np.float32))
    assert np.isnan(wide[0]) and wide[1] == np.inf and wide[2] == 0.1
    doubles = np.array([0.8500000238418579])
    assert widen_float32(doubles) is doubles
    ints = np.array([1, 2])
    assert widen_float32(ints) is ints
