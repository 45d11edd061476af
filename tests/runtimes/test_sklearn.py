"""The sklearn runtime: file formats, signature inference, equal answers to the raw model."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest

from modelserve.errors import InferenceError
from modelserve.errors import ModelLoadError
from modelserve.manifest import Manifest
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.sklearn import SKLearnRuntime

from .. import models


def load(path: Path, pre: Path | None = None, **manifest: object) -> SKLearnRuntime:
    runtime = SKLearnRuntime(ArtifactSet(path, pre, Manifest.model_validate(manifest)))
    runtime.load()
    return runtime


@pytest.mark.parametrize("fmt", ["joblib", "pkl", "skops"])
def test_every_file_format_gives_the_models_answers(tmp_path: Path, fmt: str) -> None:
    trained = models.forest()
    path = tmp_path / f"model.{fmt}"
    if fmt == "joblib":
        joblib.dump(trained.model, path)
    elif fmt == "pkl":
        path.write_bytes(pickle.dumps(trained.model))
    else:
        import skops.io as sio

        sio.dump(trained.model, path)
    runtime = load(path)
    out = runtime.predict({"input": trained.x})
    labels, proba = trained.expected()
    assert np.array_equal(out["predict"], labels)
    assert np.array_equal(out["predict_proba"], proba)


def test_skops_refuses_untrusted_types(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(models.reject_negative_sepal), path)
    with pytest.raises(ModelLoadError, match="does not trust"):
        load(path)


def test_signature_from_n_features_and_classes(tmp_path: Path) -> None:
    trained = models.forest()
    joblib.dump(trained.model, tmp_path / "m.joblib")
    sig = load(tmp_path / "m.joblib").signature()
    assert sig.feature_names == [f"x{i}" for i in range(30)]
    assert sig.task == "classification" and sig.classes == (0, 1) and sig.has_proba
    assert sig.outputs == ["predict", "predict_proba"]


def test_signature_from_dataframe_feature_names(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"rooms": [1.0, 2.0, 3.0, 4.0], "area": [30.0, 50.0, 70.0, 90.0]})
    joblib.dump(LinearRegression().fit(frame, [1.0, 2.0, 3.0, 4.5]), tmp_path / "m.joblib")
    runtime = load(tmp_path / "m.joblib")
    sig = runtime.signature()
    assert sig.feature_names == ["rooms", "area"]
    assert sig.task == "regression" and sig.classes is None and not sig.has_proba
    out = runtime.predict({"input": np.array([[2.0, 50.0]])})
    assert out["predict"].shape == (1,)


def test_requested_outputs_only(tmp_path: Path) -> None:
    trained = models.iris()
    joblib.dump(trained.model, tmp_path / "m.joblib")
    joblib.dump(trained.preprocessor, tmp_path / "s.joblib")
    runtime = load(tmp_path / "m.joblib", tmp_path / "s.joblib")
    assert set(runtime.predict({"input": trained.x[:2]}, ["predict"])) == {"predict"}
    assert set(runtime.predict({"input": trained.x[:2]}, ["predict_proba"])) == {"predict_proba"}


def test_n_jobs_is_pinned_to_one(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    trained = models.iris()
    joblib.dump(
        RandomForestClassifier(n_estimators=3, n_jobs=-1).fit(
            trained.x, trained.model.predict(trained.preprocessor.transform(trained.x))
        ),
        tmp_path / "m.joblib",
    )
    runtime = load(tmp_path / "m.joblib")
    assert runtime._model.n_jobs == 1


def test_wrong_width_is_an_inference_error(tmp_path: Path) -> None:
    joblib.dump(models.forest().model, tmp_path / "m.joblib")
    with pytest.raises(InferenceError, match="could not score"):
        load(tmp_path / "m.joblib").predict({"input": np.zeros((1, 3))})


def test_not_a_model_is_refused(tmp_path: Path) -> None:
    joblib.dump({"weights": [1, 2]}, tmp_path / "m.joblib")
    with pytest.raises(ModelLoadError, match="no predict method"):
        load(tmp_path / "m.joblib")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="Cannot load junk.pkl"):
        load(tmp_path / "junk.pkl")


def test_class_names_must_match_classes(tmp_path: Path) -> None:
    joblib.dump(models.forest().model, tmp_path / "m.joblib")
    with pytest.raises(ModelLoadError, match="2 classes"):
        load(tmp_path / "m.joblib", class_names=["a", "b", "c"])
