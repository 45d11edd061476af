"""modelserve.spark.predict_udf in Spark local mode: the in-process answers, partition by
partition, with invalid rows flagged instead of failing the task."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from modelserve.demo import train_breast_cancer
from modelserve.demo import train_iris
from modelserve.protocols.seed import SeedProtocol
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings
from modelserve.spark import predict_udf
from modelserve.spark import result_schema

from . import models

pytestmark = [
    # PySpark 4 warns about pandas 3 (and calls pandas with a deprecated keyword) when it
    # converts DataFrames; the tests check the answers themselves.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL_INPUTS = [
    {"name": "feature1", "type": "number"},
    {"name": "feature2", "type": "number"},
    {"name": "feature3", "type": "string", "enum": ["A", "B", "C"]},
]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One local Spark, loopback only, no UI; its Python workers import this checkout."""
    saved = {k: os.environ.get(k) for k in ("SPARK_LOCAL_IP", "PYTHONPATH", "PYSPARK_PYTHON")}
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    session = (
        SparkSession.builder.master("local[1]")
        .appName("modelserve-tests")
        .config("spark.ui.enabled", "false")
        # A short-lived JVM: the quick JIT tier and the serial collector start fastest.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.driver.memory", "1g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark") / "models"
    train_iris(root)
    train_breast_cancer(root)
    models.write_model(root, "tutorial", models.tutorial(), manifest={"inputs": TUTORIAL_INPUTS})
    return root


@pytest.fixture(scope="module")
def service(root: Path) -> InferenceService:
    service = InferenceService(ServerSettings(profile="testing", model_path=root))
    service.load()
    return service


def _online(service: InferenceService, model: str, rows: list[dict[str, Any]]) -> list[Any]:
    import json

    body = json.dumps({"instances": rows}).encode()
    return list(SeedProtocol(service).predict_batch(model, None, body)["predictions"])


def _collect(df: Any) -> pd.DataFrame:
    """The rows as pandas, without PySpark's own pandas conversion."""
    return pd.DataFrame([row.asDict() for row in df.collect()])


def test_breast_cancer_matches_in_process(
    spark: SparkSession, root: Path, service: InferenceService
) -> None:
    from sklearn.datasets import load_breast_cancer

    names = service.resolve("breast-cancer").signature.feature_names
    frame = pd.DataFrame(load_breast_cancer().data, columns=names)
    frame.insert(0, "id", range(len(frame)))
    records = [tuple(r) for r in frame.itertuples(index=False)]
    rdd = spark.sparkContext.parallelize(records, 3)  # several partitions
    df = spark.createDataFrame(rdd, list(frame.columns))
    score = predict_udf(root, model="breast-cancer")
    out = df.select("id", score(F.struct(*names)).alias("s")).select("id", "s.*")
    out = _collect(out).sort_values("id").reset_index(drop=True)
    assert out["error"].isna().all()
    runtime = service.resolve("breast-cancer").runtime
    expected = runtime.predict({"input": frame[names].to_numpy()})
    assert out["prediction"].tolist() == expected["predict"].tolist()
    got = out[["probability_0", "probability_1"]].to_numpy()
    assert np.allclose(got, expected["predict_proba"], rtol=0, atol=1e-6)
    online = _online(service, "breast-cancer", frame[names].iloc[:50].to_dict("records"))
    assert out["class_name"].tolist()[:50] == [p["class_name"] for p in online]
    assert got[:50].tolist() == [p["probability"] for p in online]


def test_invalid_rows_are_flagged_not_fatal(
    spark: SparkSession, root: Path, service: InferenceService
) -> None:
    names = service.resolve("iris").signature.feature_names
    x = models.iris().x
    rows: list[tuple[Any, ...]] = [(i, *map(float, x[i])) for i in range(0, 150, 5)]
    rows[3] = (15, None, *rows[3][2:])
    rows[7] = (35, -2.0, *rows[7][2:])
    df = spark.createDataFrame(rows, ["id", *names])
    out = df.select("id", predict_udf(str(root), model="iris")(F.struct(*names)).alias("s")).select(
        "id", "s.*"
    )
    out = _collect(out).set_index("id")
    assert out.loc[15, "error"] == f"{names[0]} is required"
    assert out.loc[35, "error"] == f"{names[0]} is -2.0, less than the minimum 0.0"
    assert pd.isna(out.loc[15, "prediction"]) and pd.isna(out.loc[35, "probability_0"])
    valid = out.drop(index=[15, 35])
    assert valid["error"].isna().all()
    expected = _online(service, "iris", [dict(zip(names, x[i], strict=True)) for i in valid.index])
    assert valid["prediction"].tolist() == [p["prediction"] for p in expected]
    assert valid["class_name"].tolist() == [p["class_name"] for p in expected]


def test_a_dataframe_fitted_pipeline_with_a_category(spark: SparkSession, root: Path) -> None:
    frame = models.tutorial_frame(120, seed=3)
    frame.loc[5, "feature3"] = "Z"  # not a category the model knows
    df = spark.createDataFrame(frame.assign(key=range(len(frame))))
    score = predict_udf(root, model="tutorial")
    cols = list(models.TUTORIAL_FEATURES)
    out = df.select("key", score(F.struct(*cols)).alias("s")).select("key", "s.*")
    out = _collect(out).sort_values("key").set_index("key")
    assert out.loc[5, "error"] == 'feature3 is "Z", not one of "A", "B", "C"'
    valid = frame.drop(index=5)
    expected = models.tutorial().model.predict(valid).tolist()
    assert out.drop(index=5)["prediction"].tolist() == expected
    assert "prediction bigint" in result_schema(str(root), "tutorial")


def test_the_model_loads_once_per_process(root: Path) -> None:
    from modelserve import spark as module

    first = module.scorer(str(root), "iris")
    assert module.scorer(str(root), "iris") is first
    assert module.scorer(str(root), "breast-cancer") is not first
