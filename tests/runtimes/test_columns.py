"""Column kinds, categories and examples read from fitted scikit-learn models."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.compose import make_column_selector
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.preprocessing import MinMaxScaler
from sklearn.preprocessing import OneHotEncoder
from sklearn.preprocessing import OrdinalEncoder
from sklearn.preprocessing import StandardScaler

from modelserve.manifest import Manifest
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.columns import read_columns
from modelserve.runtimes.sklearn import SKLearnRuntime
from modelserve.types import Feature
from modelserve.types import Signature

from .. import models


def signature_of(
    tmp_path: Path, model: object, pre: object = None, **manifest: object
) -> Signature:
    joblib.dump(model, tmp_path / "m.joblib")
    pre_path = None
    if pre is not None:
        pre_path = tmp_path / "pre.joblib"
        joblib.dump(pre, pre_path)
    runtime = SKLearnRuntime(
        ArtifactSet(tmp_path / "m.joblib", pre_path, Manifest.model_validate(manifest))
    )
    runtime.load()
    return runtime.signature()


def test_tutorial_category_becomes_a_string_enum(tmp_path: Path) -> None:
    sig = signature_of(tmp_path, models.tutorial().model)
    assert [(f.name, f.type, f.enum) for f in sig.features] == [
        ("feature1", "number", None),
        ("feature2", "number", None),
        ("feature3", "string", ("A", "B", "C")),
    ]
    frame = models.tutorial_frame()
    assert sig.example() == {
        "feature1": float(f"{frame['feature1'].mean():.4g}"),
        "feature2": float(f"{frame['feature2'].mean():.4g}"),
        "feature3": "A",
    }
    assert "guessed_columns" not in sig.extra


def test_ignored_unknown_categories_give_a_free_string() -> None:
    frame = models.tutorial_frame(60)
    for unknown in ("ignore", "infrequent_if_exist"):
        enc = OneHotEncoder(handle_unknown=unknown).fit(frame[["feature3"]])
        (col,) = read_columns(enc, ["feature3"])
        assert col.feature() == Feature("feature3", "string", sample="A")
    enc2 = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    (col,) = read_columns(enc2.fit(frame[["feature3"]]), ["feature3"])
    assert col.feature().enum is None and col.feature().type == "string"


def test_selectors_by_dtype_index_and_through_an_imputer() -> None:
    """make_column_selector, an index selection, and an encoder behind an imputer."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "size": rng.normal(10.0, 3.0, 80),
            "rooms": rng.integers(1, 4, 80),
            "city": rng.choice(["Oslo", "Rome"], 80),
        }
    )
    rooms_steps = make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder())
    ct = ColumnTransformer(
        [
            ("num", MinMaxScaler(), make_column_selector(dtype_include="float64")),
            ("rooms", rooms_steps, [1]),
            ("city", OneHotEncoder(), make_column_selector(dtype_exclude="number")),
        ]
    )
    ct.fit(frame)
    size, rooms, city = read_columns(ct, list(frame.columns))
    assert size.type == "number" and size.categories is None
    midpoint = (frame["size"].min() + frame["size"].max()) / 2
    assert size.sample() == float(f"{midpoint:.4g}")
    assert rooms.feature().type == "integer" and rooms.feature().enum == (1, 2, 3)
    assert rooms.sample() == int(frame["rooms"].mode()[0])
    assert type(rooms.sample()) is int
    assert city.feature().enum == ("Oslo", "Rome")


def test_examples_come_from_fitted_statistics(tmp_path: Path) -> None:
    """Not the middle of the bounds (50.0) nor 0.0: the scaler's means."""
    trained = models.iris()
    sig = signature_of(tmp_path, trained.model, trained.preprocessor)
    means = trained.x.mean(axis=0)
    assert list(sig.example().values()) == [float(f"{m:.4g}") for m in means]
    # A manifest's inputs still decide names, types and bounds; examples stay valid.
    inputs = [{"name": n, "minimum": 0, "maximum": 100} for n in models.IRIS_FEATURES]
    sig = signature_of(tmp_path, trained.model, trained.preprocessor, inputs=inputs)
    assert list(sig.example()) == list(models.IRIS_FEATURES)
    assert list(sig.example().values()) == [float(f"{m:.4g}") for m in means]
    inputs[0]["maximum"] = 1  # the mean is out of these bounds: the bounds win
    sig = signature_of(tmp_path, trained.model, trained.preprocessor, inputs=inputs)
    assert sig.example()["sepal_length"] == 0.5


def test_manifest_inputs_win_over_inferred_kinds(tmp_path: Path) -> None:
    inputs = [
        {"name": "feature1"},
        {"name": "feature2"},
        {"name": "feature3", "type": "string", "enum": ["A", "B"]},
    ]
    sig = signature_of(tmp_path, models.tutorial().model, inputs=inputs)
    assert sig.features[2].enum == ("A", "B")


def test_custom_code_leaves_the_column_guessed(tmp_path: Path) -> None:
    frame = models.tutorial_frame(60)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["feature1", "feature2"]),
                ("cat", FunctionTransformer(models.letters_to_numbers), ["feature3"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, frame["feature3"] == "B")
    sig = signature_of(tmp_path, model)
    assert [f.type for f in sig.features] == ["number", "number", "number"]
    assert sig.extra["guessed_columns"] == {"feature3": "FunctionTransformer(letters_to_numbers)"}


def test_a_plain_forest_on_arrays_keeps_x_names(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 3))
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, x[:, 0] > 0)
    sig = signature_of(tmp_path, forest)
    assert sig.feature_names == ["x0", "x1", "x2"]
    assert sig.example() == {"x0": 0.0, "x1": 0.0, "x2": 0.0}
    assert "guessed_columns" not in sig.extra
