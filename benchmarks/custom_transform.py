"""A transformer ONNX cannot compile: plain Python in a FunctionTransformer.

Lives in its own small module so that every server unpickling the benchmark's
``breast-cancer-custom`` pipeline (modelserve, and MLServer from its own venv with the repository
root on ``PYTHONPATH``) imports it as ``benchmarks.custom_transform``.
"""

from __future__ import annotations

import numpy as np


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """log(1 + |x|) with x's sign: a custom Python step, unknown to skl2onnx."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))
