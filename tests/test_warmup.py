"""The warm-up row is valid for every kind of column, and a failed one says what to declare."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.preprocessing import StandardScaler

from modelserve.errors import ModelLoadError
from modelserve.manifest import Manifest
from modelserve.runtimes.auto import AutoRuntime
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.base import Runtime
from modelserve.runtimes.sklearn import SKLearnRuntime
from modelserve.types import Feature
from modelserve.types import Signature
from modelserve.types import TensorSpec
from modelserve.warmup import warm_up_error
from modelserve.warmup import warm_up_inputs

from . import models


def loaded(kind: type[Runtime], path: Path, **manifest: object) -> Runtime:
    runtime = kind(ArtifactSet(path, None, Manifest.model_validate(manifest)))
    runtime.load()
    return runtime


@pytest.mark.parametrize("kind", [SKLearnRuntime, AutoRuntime])
def test_the_tutorial_pipeline_warms_up_on_valid_values(tmp_path: Path, kind: type) -> None:
    joblib.dump(models.tutorial().model, tmp_path / "m.joblib")
    runtime = loaded(kind, tmp_path / "m.joblib")
    inputs = warm_up_inputs(runtime.signature())
    assert inputs is not None
    row = inputs["input"]
    assert row.dtype == object and row.shape == (1, 3) and row[0, 2] == "A"
    assert set(runtime.predict(inputs)) == {"predict", "predict_proba"}
    # What the repository sent before: 0.0 for the category, which the encoder cannot take.
    with pytest.raises(Exception, match="isnan|not supported|could not"):
        runtime.predict({"input": np.zeros((1, 3))})


def test_numeric_models_warm_up_on_one_float_row() -> None:
    sig = Signature(features=(Feature("a", sample=5.8), Feature("b", minimum=2)), task="regression")
    inputs = warm_up_inputs(sig)
    assert inputs is not None
    assert inputs["input"].dtype == np.float64 and inputs["input"].tolist() == [[5.8, 2.0]]


def test_tensor_models_warm_up_on_zeros_and_others_not_at_all() -> None:
    spec = TensorSpec("pixels", "FP32", (-1, 3, 8, 8))
    sig = Signature(features=(), task="classification", kind="image", tensor_inputs=(spec,))
    inputs = warm_up_inputs(sig)
    assert inputs is not None and inputs["pixels"].shape == (1, 3, 8, 8)
    assert inputs["pixels"].dtype == np.float32 and not inputs["pixels"].any()
    text = TensorSpec("text", "BYTES", (-1,))
    assert warm_up_inputs(Signature((), "regression", kind="tensor", tensor_inputs=(text,))) is None


def custom_pipeline() -> object:
    frame = models.tutorial_frame(80)
    return make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["feature1", "feature2"]),
                ("cat", FunctionTransformer(models.letters_to_numbers), ["feature3"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, frame["feature3"] == "B")


def test_a_failed_warm_up_names_the_column_and_the_manifest_field(tmp_path: Path) -> None:
    joblib.dump(custom_pipeline(), tmp_path / "m.joblib")
    runtime = loaded(SKLearnRuntime, tmp_path / "m.joblib")
    sig = runtime.signature()
    inputs = warm_up_inputs(sig)
    assert inputs is not None
    with pytest.raises(Exception) as info:
        runtime.predict(inputs)
    error = warm_up_error(sig, info.value)
    assert isinstance(error, ModelLoadError)
    assert "'feature3' (read by FunctionTransformer(letters_to_numbers)" in error.message
    assert (
        "inputs: [{name: feature1, type: number}, {name: feature2, type: number}, "
        "{name: feature3, type: string, enum: [...]}]"
    ) in error.message
    assert "'feature1'" not in error.message


def test_the_declared_fix_warms_up(tmp_path: Path) -> None:
    joblib.dump(custom_pipeline(), tmp_path / "m.joblib")
    inputs = [
        {"name": "feature1"},
        {"name": "feature2"},
        {"name": "feature3", "type": "string", "enum": ["A", "B", "C"]},
    ]
    runtime = loaded(SKLearnRuntime, tmp_path / "m.joblib", inputs=inputs)
    warm = warm_up_inputs(runtime.signature())
    assert warm is not None
    assert runtime.predict(warm)["predict"].shape == (1,)


def test_a_column_the_error_names_is_the_suspect() -> None:
    sig = Signature(
        features=(Feature("age"), Feature("plan", "string", enum=("basic", "pro"))),
        task="regression",
    )
    error = warm_up_error(sig, ValueError("column age: could not convert"))
    assert "Check column 'age'" in error.message
    assert "{name: plan, type: string, enum: [basic, pro]}" in error.message
    image = Signature((), "classification", kind="image")
    assert warm_up_error(image, RuntimeError("bad")).message == (
        "The model failed its warm-up prediction: RuntimeError: bad"
    )
