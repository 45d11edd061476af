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


def test_every_shape_gives_what_numpy_s_shortest_text_gives() -> None:
    rng = np.random.default_rng(7)
    tiny = np.array([1e-45, 3.4028235e38, -0.0, 1e-7, 123456.79], dtype=np.float32)
    for values in (
        rng.random((50, 3), dtype=np.float32),
        rng.standard_normal(7).astype(np.float32) * 1e6,
        tiny,
        np.float32(0.85).reshape(()),
        np.zeros((0, 2), dtype=np.float32),
        rng.random((2, 3, 4), dtype=np.float32),
    ):
        wide = widen_float32(values)
        assert wide.dtype == np.float64 and wide.shape == values.shape
        assert np.array_equal(wide, values.astype(str).astype(np.float64))
