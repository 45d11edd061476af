"""Build small real model artifacts and repositories in a temporary folder for tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import yaml


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Trained:
    """A fitted model, its optional preprocessor, and data to score."""

    model: Any
    x: np.ndarray
    preprocessor: Any = None
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None

    def expected(self, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """What calling the model in-process gives: (labels, probabilities or None)."""
        x = self.x if x is None else x
        z = self.preprocessor.transform(x) if self.preprocessor is not None else x
        proba = self.model.predict_proba(z) if hasattr(self.model, "predict_proba") else None
        return self.model.predict(z), proba


IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@cache
def iris() -> Trained:
    """Logistic regression with a separate scaler, like the tutorial's pair of pickles."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    scaler = StandardScaler().fit(data.data)
    model = LogisticRegression(max_iter=500).fit(scaler.transform(data.data), data.target)
    return Trained(model, data.data, scaler, IRIS_FEATURES, ("setosa", "versicolor", "virginica"))


@cache
def forest() -> Trained:
    """A small scaler + random forest Pipeline on breast cancer (30 features, 2 classes)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    model = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0)
    ).fit(data.data, data.target)
    return Trained(model, data.data, None, tuple(f"x{i}" for i in range(30)))


@cache
def regressor() -> Trained:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    data = load_diabetes()
    return Trained(
        Ridge().fit(data.data, data.target), data.data, None, tuple(f"x{i}" for i in range(10))
    )


@cache
def string_labels() -> Trained:
    """A classifier whose labels are strings, fitted on iris."""
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    data = load_iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[data.target]
    return Trained(
        DecisionTreeClassifier(random_state=0).fit(data.data, labels),
        data.data,
        None,
        tuple(f"x{i}" for i in range(4)),
    )


def write_model(
    root: Path,
    name: str,
    trained: Trained,
    version: str = "1",
    manifest: dict[str, Any] | None = None,
    pin: bool = True,
    artifact: str = "model.joblib",
) -> Path:
    """Write ``root/name/version/`` artifacts and ``root/name/model.yaml``; return the model dir."""
    model_dir = root / name
    vdir = model_dir / version
    vdir.mkdir(parents=True, exist_ok=True)
    joblib.dump(trained.model, vdir / artifact)
    data: dict[str, Any] = {"runtime": "sklearn", "artifact": artifact}
    files = [artifact]
    if trained.preprocessor is not None:
        joblib.dump(trained.preprocessor, vdir / "scaler.joblib")
        data["preprocessor"] = "scaler.joblib"
        files.append("scaler.joblib")
    if trained.feature_names:
        data["inputs"] = [{"name": n, "type": "number"} for n in trained.feature_names]
    if trained.class_names:
        data["class_names"] = list(trained.class_names)
    manifest_path = model_dir / "model.yaml"
    existing = yaml.safe_load(manifest_path.read_text()) if manifest_path.exists() else {}
    pins = dict((existing or {}).get("sha256", {}))
    if pin:
        pins.update({f"{version}/{f}": sha256(vdir / f) for f in files})
    data["sha256"] = pins
    data.update(manifest or {})
    manifest_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return model_dir


def features_of(trained: Trained, row: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(trained.feature_names, row, strict=True)}


def reject_negative_sepal(x: np.ndarray) -> np.ndarray:
    """A transform that refuses some schema-valid rows, as real feature checks do."""
    if (x[:, 0] < 0).any():
        raise ValueError("sepal_length must not be negative")
    return x


def log_scale(x: np.ndarray) -> np.ndarray:
    """A custom Python transform skl2onnx knows nothing about."""
    return np.sign(x) * np.log1p(np.abs(x))


#: ``sepal_length`` value that makes :func:`slow_on_marker` wait for its gate.
SLOW_MARKER = 42.0
#: Environment variable naming the gate file (set on the server a test starts).
SLOW_GATE_ENV = "MODELSERVE_TEST_GATE"


def slow_on_marker(x: np.ndarray) -> np.ndarray:
    """A transform that holds rows flagged with :data:`SLOW_MARKER` while the file named by
    :data:`SLOW_GATE_ENV` exists (30 s at most), so a test can keep a request in flight for as
    long as it needs, whatever the machine's load."""
    if (x[:, 0] == SLOW_MARKER).any():
        import os
        import time

        gate = os.environ.get(SLOW_GATE_ENV)
        deadline = time.monotonic() + 30
        while gate and os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
    return x


TUTORIAL_FEATURES = ("feature1", "feature2", "feature3")


def tutorial_frame(rows: int = 300, seed: int = 0) -> Any:
    """The tutorial's data: two numbers and ``feature3``, one of "A", "B", "C"."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "feature1": rng.normal(5.0, 2.0, rows),
            "feature2": rng.normal(0.0, 1.0, rows),
            "feature3": rng.choice(["A", "B", "C"], rows),
        }
    )


@cache
def tutorial() -> Trained:
    """The tutorial's mixed pipeline: numbers scaled, the category one-hot encoded, a forest."""
    return _tutorial_pipeline(tutorial_frame())


#: The codes :func:`coded` is fitted on: text that reads as a number ("01" is not 1).
CODES = ("01", "02", "10")


def coded_frame(rows: int = 300, seed: int = 0) -> Any:
    """:func:`tutorial_frame` with ``feature3`` one of :data:`CODES` (for "A", "B", "C")."""
    frame = tutorial_frame(rows, seed)
    frame["feature3"] = frame["feature3"].map(dict(zip("ABC", CODES, strict=True)))
    return frame


@cache
def coded() -> Trained:
    """The tutorial's pipeline fitted on :func:`coded_frame`: its category must be read as
    text, as a number it is a category the encoder never saw."""
    return _tutorial_pipeline(coded_frame())


def _tutorial_pipeline(frame: Any) -> Trained:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.preprocessing import StandardScaler

    second = sorted(set(frame["feature3"]))[1]
    target = (frame["feature1"] > 5).astype(int) ^ (frame["feature3"] == second).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["feature1", "feature2"]),
                ("cat", OneHotEncoder(), ["feature3"]),
            ]
        ),
        RandomForestClassifier(n_estimators=10, random_state=0),
    ).fit(frame, target)
    return Trained(model, frame.to_numpy(dtype=object), None, TUTORIAL_FEATURES)


@cache
def frame_scaler() -> Trained:
    """The tutorial's pair of pickles: a scaler fitted on a DataFrame, a forest on its output."""
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    frame = pd.DataFrame(data.data, columns=list(IRIS_FEATURES))
    scaler = StandardScaler().fit(frame)
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    forest.fit(scaler.transform(frame), data.target)
    return Trained(forest, data.data, scaler, IRIS_FEATURES)


def letters_to_numbers(frame: Any) -> Any:
    """A user's own encoding of ``feature3`` that nothing can inspect (and that fails on 0.0)."""
    return frame.apply(lambda column: column.map({"A": 0.0, "B": 1.0, "C": 2.0}.__getitem__))
