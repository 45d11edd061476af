"""A zoo of the models users bring, trained the way notebooks do and served with no manifest.

Every model is fitted on a dataset that ships with scikit-learn, saved with ``joblib.dump``,
``pickle.dump``, ``Booster.save_model`` or as an MLflow folder into a repository folder that
holds nothing but the artifact, and served through Flask's test client. Its
``/predict_batch`` must answer what the model answers in-process: labels exactly,
probabilities and regression values exactly when served natively (float32 results as the
server writes them) and within :data:`~modelserve.runtimes.auto.PROBA_TOLERANCE` when
compiled. The share of models that compiled is printed and held to a floor.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.floats import widen_float32
from modelserve.runtimes import auto
from modelserve.settings import ServerSettings

from . import mlflow_folders
from . import models

#: The issue's target is 0.9 of the zoo's models without custom Python code. Reached today:
#: 31 of 33 (k-NN classifier and regressor stay native); what keeps them native is listed in
#: the README ("What is compiled..."). A drop means a model shape stopped compiling.
COMPILED_FLOOR = 0.9
#: Rows sent per model: every n-th row of the dataset, so each class shows up.
MAX_ROWS = 150


@dataclass
class Case:
    """One zoo model: how it was fitted, saved and what it answers in-process."""

    name: str
    model: Any
    x: Any
    """The rows it is scored on, as the notebook had them (DataFrame or array)."""
    save: str = "joblib"
    """``joblib``, ``pickle``, ``xgboost-json``, ``xgboost-ubj``, ``lightgbm``, ``mlflow``."""
    custom: bool = False
    """Holds the user's own Python code: compiling it is out of reach by design."""
    answers: Callable[[Any], tuple[np.ndarray, np.ndarray | None]] | None = None
    """What it answers in-process, when that is not ``predict``/``predict_proba`` (boosters)."""

    @property
    def regression(self) -> bool:
        return not hasattr(self.model, "classes_") and self.answers is None

    def expected(self) -> tuple[np.ndarray, np.ndarray | None]:
        x = self.x
        if isinstance(x, pd.DataFrame):
            # Row-major like the server's batch: BLAS sums a column-major frame's dot
            # products in another order (last-digit differences that are no server's doing).
            x = pd.DataFrame({c: x[c].to_numpy() for c in x.columns}, index=x.index)
            if all(x[c].dtype.kind == "f" for c in x.columns):
                x = pd.DataFrame(np.ascontiguousarray(x.to_numpy()), columns=x.columns)
        if self.answers is not None:
            return self.answers(x)
        labels = np.asarray(self.model.predict(x))
        proba = self.model.predict_proba(x) if hasattr(self.model, "predict_proba") else None
        return labels, None if proba is None else np.asarray(proba)


def _every(x: Any, n: int) -> Any:
    step = max(1, len(x) // n)
    return x.iloc[::step] if isinstance(x, pd.DataFrame) else x[::step]


def _frames() -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    from sklearn import datasets

    out = {}
    for name, load in (
        ("iris", datasets.load_iris),
        ("wine", datasets.load_wine),
        ("cancer", datasets.load_breast_cancer),
        ("diabetes", datasets.load_diabetes),
    ):
        data = load(as_frame=True)
        frame = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
        out[name] = (frame, data.target)
    return out


def _cases() -> list[Case]:
    import lightgbm
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.linear_model import Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.neural_network import MLPClassifier
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.preprocessing import OrdinalEncoder
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.svm import SVR
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree import DecisionTreeRegressor

    f = _frames()
    iris_x, iris_y = f["iris"]
    wine_x, wine_y = f["wine"]
    cancer_x, cancer_y = f["cancer"]
    diab_x, diab_y = f["diabetes"]
    # numpy, as the many notebooks that call .values or load_*(return_X_y=True) have it
    iris_a, diab_a, cancer_a = iris_x.to_numpy(), diab_x.to_numpy(), cancer_x.to_numpy()
    species = np.array(["setosa", "versicolor", "virginica"])[iris_y]

    def scaled(model: Any) -> Any:
        return make_pipeline(StandardScaler(), model)

    # Mixed columns: a number binned into a category, as feature engineering does.
    wine_mixed = wine_x.drop(columns=["alcohol"]).assign(
        alcohol_level=pd.cut(wine_x["alcohol"], 3, labels=["low", "mid", "high"])
    )
    numeric_wine = [c for c in wine_mixed.columns if c != "alcohol_level"]
    iris_mixed = iris_x.drop(columns=["petal_width"]).assign(
        petal_size=pd.cut(iris_x["petal_width"], 3, labels=["low", "mid", "high"]).astype(str)
    )
    # Missing values in training, filled by the pipeline's imputer.
    rng = np.random.default_rng(0)
    holes = cancer_x.mask(rng.random(cancer_x.shape) < 0.05)

    xgb_binary = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgboost.DMatrix(cancer_a, cancer_y),
        20,
    )
    xgb_multi = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
        xgboost.DMatrix(iris_x, iris_y),
        20,
    )
    lgb_multi = lightgbm.train(
        {"objective": "multiclass", "num_class": 3, "num_leaves": 8, "verbose": -1},
        lightgbm.Dataset(wine_x, wine_y),
        20,
    )

    def xgb_answers(b: Any, multi: bool) -> Callable[[Any], Any]:
        def answers(x: Any) -> tuple[np.ndarray, np.ndarray]:
            scores = b.predict(xgboost.DMatrix(x)).astype(np.float64)
            if multi:
                return scores.argmax(axis=1), scores
            return (scores > 0.5).astype(np.int64), np.column_stack([1 - scores, scores])

        return answers

    def lgb_answers(x: Any) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(lgb_multi.predict(np.asarray(x)), dtype=np.float64)
        return scores.argmax(axis=1), scores

    cases = [
        Case("linear-regression", LinearRegression().fit(diab_a, diab_y), diab_a),
        Case("ridge-frame", Ridge().fit(diab_x, diab_y), diab_x, save="pickle"),
        Case(
            "logistic-regression",
            scaled(LogisticRegression(max_iter=1000)).fit(iris_x, iris_y),
            iris_x,
        ),
        Case(
            "logistic-binary",
            scaled(LogisticRegression(max_iter=1000)).fit(cancer_a, cancer_y),
            cancer_a,
        ),
        Case(
            "svc-probability",
            scaled(SVC(probability=True, random_state=0)).fit(cancer_x, cancer_y),
            cancer_x,
        ),
        Case("linear-svc", scaled(LinearSVC()).fit(wine_x, wine_y), wine_x),
        Case("svr", scaled(SVR()).fit(diab_x, diab_y), diab_x),
        Case("knn-classifier", KNeighborsClassifier().fit(iris_a, iris_y), iris_a),
        Case("knn-regressor", scaled(KNeighborsRegressor()).fit(diab_x, diab_y), diab_x),
        Case(
            "decision-tree-classifier",
            DecisionTreeClassifier(random_state=0).fit(wine_x, wine_y),
            wine_x,
        ),
        Case(
            "decision-tree-regressor",
            DecisionTreeRegressor(max_depth=6, random_state=0).fit(diab_a, diab_y),
            diab_a,
        ),
        Case(
            "random-forest-classifier",
            RandomForestClassifier(n_estimators=30, random_state=0).fit(iris_x, iris_y),
            iris_x,
            save="pickle",
        ),
        Case(
            "random-forest-regressor",
            RandomForestRegressor(n_estimators=30, max_depth=8, random_state=0).fit(diab_x, diab_y),
            diab_x,
        ),
        Case(
            "extra-trees-classifier",
            ExtraTreesClassifier(n_estimators=30, random_state=0).fit(cancer_a, cancer_y),
            cancer_a,
        ),
        Case(
            "gradient-boosting-classifier",
            GradientBoostingClassifier(n_estimators=30, random_state=0).fit(iris_x, iris_y),
            iris_x,
        ),
        Case(
            "gradient-boosting-regressor",
            GradientBoostingRegressor(n_estimators=30, random_state=0).fit(diab_a, diab_y),
            diab_a,
        ),
        Case(
            "hist-gradient-boosting-classifier",
            HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(cancer_x, cancer_y),
            cancer_x,
        ),
        Case(
            "hist-gradient-boosting-regressor",
            HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(diab_x, diab_y),
            diab_x,
        ),
        Case("gaussian-nb", GaussianNB().fit(iris_x, iris_y), iris_x),
        Case(
            "mlp-classifier",
            scaled(MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)).fit(
                wine_x, wine_y
            ),
            wine_x,
        ),
        Case(
            "mlp-regressor",
            scaled(MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0)).fit(
                diab_a, diab_y
            ),
            diab_a,
        ),
        Case(
            "imputer-pipeline",
            make_pipeline(
                SimpleImputer(strategy="median"),
                StandardScaler(),
                LogisticRegression(max_iter=1000),
            ).fit(holes, cancer_y),
            cancer_x,
        ),
        Case(
            "column-transformer-onehot",
            make_pipeline(
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), numeric_wine),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["alcohol_level"]),
                    ]
                ),
                LogisticRegression(max_iter=1000),
            ).fit(wine_mixed, wine_y),
            wine_mixed,
        ),
        Case(
            "column-transformer-ordinal",
            make_pipeline(
                ColumnTransformer(
                    [
                        ("num", "passthrough", ["sepal_length", "sepal_width", "petal_length"]),
                        ("cat", OrdinalEncoder(), ["petal_size"]),
                    ]
                ),
                RandomForestClassifier(n_estimators=20, random_state=0),
            ).fit(iris_mixed, species),
            iris_mixed,
        ),
        Case(
            "string-labels-forest",
            RandomForestClassifier(n_estimators=20, random_state=0).fit(iris_a, species),
            iris_a,
        ),
        Case(
            "string-labels-logistic",
            scaled(LogisticRegression(max_iter=1000)).fit(
                wine_x, np.array(["barolo", "grignolino", "barbera"])[wine_y]
            ),
            wine_x,
        ),
        Case(
            "xgboost-native-json",
            xgb_binary,
            cancer_a,
            save="xgboost-json",
            answers=xgb_answers(xgb_binary, multi=False),
        ),
        Case(
            "xgboost-native-ubj",
            xgb_multi,
            iris_x,
            save="xgboost-ubj",
            answers=xgb_answers(xgb_multi, multi=True),
        ),
        Case(
            "xgboost-wrapped",
            xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(cancer_x, cancer_y),
            cancer_x,
        ),
        Case(
            "xgboost-regressor-pipeline",
            scaled(xgboost.XGBRegressor(n_estimators=20, max_depth=3)).fit(diab_a, diab_y),
            diab_a,
        ),
        Case("lightgbm-native", lgb_multi, wine_x, save="lightgbm", answers=lgb_answers),
        Case(
            "lightgbm-wrapped",
            lightgbm.LGBMRegressor(n_estimators=20, num_leaves=8, verbose=-1).fit(diab_x, diab_y),
            diab_x,
        ),
        Case(
            "mlflow-sklearn",
            scaled(LogisticRegression(max_iter=1000)).fit(wine_x, wine_y),
            wine_x,
            save="mlflow",
        ),
        Case(
            "custom-function-transformer",
            make_pipeline(
                FunctionTransformer(models.log_scale), LogisticRegression(max_iter=1000)
            ).fit(iris_a, iris_y),
            iris_a,
            custom=True,
        ),
    ]
    for case in cases:
        case.x = _every(case.x, MAX_ROWS)
    return cases


def _save(case: Case, root: Path) -> None:
    folder = root / case.name / "1"
    if case.save == "mlflow":
        # An MLflow folder as the model folder itself (version 1), as log_model leaves it.
        frame = case.x
        mlflow_folders.save_model(
            root / case.name,
            case.model,
            inputs=mlflow_folders.column_specs(frame),
            outputs=mlflow_folders.output_specs(np.asarray(case.model.predict(frame))),
            example=frame,
        )
        return
    folder.mkdir(parents=True)
    if case.save == "joblib":
        joblib.dump(case.model, folder / "model.joblib")
    elif case.save == "pickle":
        with (folder / "model.pkl").open("wb") as fh:
            pickle.dump(case.model, fh)
    elif case.save == "xgboost-json":
        case.model.save_model(folder / "model.json")
    elif case.save == "xgboost-ubj":
        case.model.save_model(folder / "model.ubj")
    elif case.save == "lightgbm":
        case.model.save_model(folder / "model.txt")
    else:
        raise ValueError(case.save)


@dataclass
class Zoo:
    cases: dict[str, Case]
    http: FlaskClient
    meta: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    root = tmp_path_factory.mktemp("zoo")
    with warnings.catch_warnings():
        # Notebook settings: short training runs that scikit-learn calls unconverged.
        warnings.simplefilter("ignore")
        cases = _cases()
    for case in cases:
        _save(case, root)
    http = create_app(ServerSettings(profile="testing", model_path=root)).test_client()
    meta = {c.name: http.get(f"/models/{c.name}").json for c in cases}
    return Zoo({c.name: c for c in cases}, http, meta)


def _rows(case: Case, names: list[str]) -> list[dict[str, Any]]:
    x = case.x
    values = x.astype(object).to_numpy() if isinstance(x, pd.DataFrame) else x
    out = []
    for row in values:
        out.append(
            {
                n: v if isinstance(v, str) else float(v)
                for n, v in zip(names, row.tolist(), strict=True)
            }
        )
    return out


CASE_NAMES = [c for c in (
    "linear-regression", "ridge-frame", "logistic-regression", "logistic-binary",
    "svc-probability", "linear-svc", "svr", "knn-classifier", "knn-regressor",
    "decision-tree-classifier", "decision-tree-regressor", "random-forest-classifier",
    "random-forest-regressor", "extra-trees-classifier", "gradient-boosting-classifier",
    "gradient-boosting-regressor", "hist-gradient-boosting-classifier",
    "hist-gradient-boosting-regressor", "gaussian-nb", "mlp-classifier", "mlp-regressor",
    "imputer-pipeline", "column-transformer-onehot", "column-transformer-ordinal",
    "string-labels-forest", "string-labels-logistic", "xgboost-native-json",
    "xgboost-native-ubj", "xgboost-wrapped", "xgboost-regressor-pipeline", "lightgbm-native",
    "lightgbm-wrapped", "mlflow-sklearn", "custom-function-transformer",
)]  # fmt: skip


@pytest.mark.parametrize("name", CASE_NAMES)
def test_served_answers_equal_the_model(zoo: Zoo, name: str) -> None:
    case = zoo.cases[name]
    meta = zoo.meta[name]
    assert "inputs" in meta, meta
    names = [f["name"] for f in meta["inputs"]]
    got = zoo.http.post(f"/models/{name}/predict_batch", json={"instances": _rows(case, names)})
    assert got.status_code == 200, got.json
    items = got.json["predictions"]
    labels, proba = case.expected()
    compiled = bool(meta["runtime"].get("compiled"))
    got_labels = [item["prediction"] for item in items]
    if case.regression:
        expected = widen_float32(np.asarray(labels, dtype=np.float64).ravel())
        if compiled:
            atol = auto.PROBA_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(got_labels, expected, rtol=0, atol=atol)
        else:
            assert got_labels == expected.tolist()
        return
    assert got_labels == np.asarray(labels).tolist()
    got_proba = [item["probability"] for item in items]
    if proba is None:
        assert all(p is None for p in got_proba)
    elif compiled:
        np.testing.assert_allclose(got_proba, proba, rtol=0, atol=auto.PROBA_TOLERANCE)
    else:
        assert got_proba == widen_float32(np.asarray(proba)).tolist()


def test_compiled_share(zoo: Zoo, capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(zoo.cases) == sorted(CASE_NAMES)
    lines = []
    plain = [c for c in zoo.cases.values() if not c.custom]
    compiled = 0
    for case in zoo.cases.values():
        runtime = zoo.meta[case.name]["runtime"]
        is_compiled = bool(runtime.get("compiled"))
        compiled += is_compiled and not case.custom
        lines.append(
            f"  {case.name:36} {runtime['runtime']:9} "
            f"{'compiled' if is_compiled else 'native':9} {runtime.get('reason') or ''}"
        )
    share = compiled / len(plain)
    with capsys.disabled():
        print(f"\nmodel zoo: {compiled}/{len(plain)} models without custom code compiled")
        print("\n".join(lines))
    assert not zoo.meta["custom-function-transformer"]["runtime"]["compiled"]
    assert share >= COMPILED_FLOOR
