"""ChunkScorer: the online validation and answers, on DataFrame chunks, in one model call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from modelserve.errors import InvalidInput
from modelserve.errors import ModelNotFound
from modelserve.jobs.scoring import ChunkScorer
from modelserve.jobs.scoring import RowError
from modelserve.jobs.scoring import error_lines
from modelserve.protocols.seed import SeedProtocol
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings

from .. import models

TUTORIAL_INPUTS = [
    {"name": "feature1", "type": "number", "minimum": -100},
    {"name": "feature2", "type": "integer"},
    {"name": "feature3", "type": "string", "enum": ["A", "B", "C"]},
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.preprocessing import FunctionTransformer

    root = tmp_path_factory.mktemp("scoring") / "models"
    iris_inputs = [{"name": n, "type": "number", "minimum": 0} for n in models.IRIS_FEATURES]
    models.write_model(root, "iris", models.iris(), manifest={"inputs": iris_inputs})
    models.write_model(root, "tutorial", models.tutorial(), manifest={"inputs": TUTORIAL_INPUTS})
    trained = models.iris()
    strict = FunctionTransformer(models.reject_negative_sepal, validate=True).fit(trained.x)
    guarded = models.Trained(trained.model, trained.x, strict, trained.feature_names)
    models.write_model(root, "guarded", guarded)
    return root


def _service(root: Path, **overrides: Any) -> InferenceService:
    service = InferenceService(ServerSettings(profile="testing", model_path=root, **overrides))
    service.load()
    return service


@pytest.fixture(scope="module")
def service(root: Path) -> InferenceService:
    return _service(root)


def _online(service: InferenceService, model: str, rows: list[dict[str, Any]]) -> Any:
    """What /predict_batch answers for these rows (its 400 details when they are invalid)."""
    body = json.dumps({"instances": rows}).encode()
    try:
        return SeedProtocol(service).predict_batch(model, None, body)["predictions"]
    except InvalidInput as exc:
        return exc.details


def _iris_frame() -> pd.DataFrame:
    frame = pd.DataFrame(models.iris().x, columns=list(models.IRIS_FEATURES))
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    return frame


def test_valid_rows_get_the_online_answers(service: InferenceService) -> None:
    frame = _iris_frame()
    scored = ChunkScorer(service, "iris", id_column="id").score(frame, first_row=1000)
    assert scored.errors == []
    got = scored.predictions
    assert list(got.columns) == [
        "id", "row", "prediction", "class_name",
        "probability_0", "probability_1", "probability_2",
    ]  # fmt: skip
    assert got["id"].tolist() == frame["id"].tolist()
    assert got["row"].tolist() == list(range(1000, 1150))
    online = _online(service, "iris", frame.drop(columns="id").to_dict("records"))
    assert got["prediction"].tolist() == [p["prediction"] for p in online]
    proba = got[["probability_0", "probability_1", "probability_2"]].to_numpy().tolist()
    assert proba == [p["probability"] for p in online]
    labels, _ = models.iris().expected()
    assert got["prediction"].tolist() == labels.tolist()


def test_invalid_rows_get_the_online_reasons(service: InferenceService) -> None:
    frame = _iris_frame().astype(object)
    bad = {
        3: {"sepal_length": None},
        5: {"sepal_width": "abc"},
        7: {"petal_length": -1.0},
        9: {"petal_width": True, "sepal_length": "x"},
    }
    for row, values in bad.items():
        for name, value in values.items():
            frame.at[row, name] = value
    frame.at[11, "petal_width"] = float("inf")
    scored = ChunkScorer(service, "iris", id_column="id").score(frame, first_row=50)
    assert [(e.row, e.id) for e in scored.errors] == [
        (53, "r3"),
        (55, "r5"),
        (57, "r7"),
        (59, "r9"),
        (61, "r11"),
    ]
    assert len(scored.predictions) == 145 and 53 not in scored.predictions["row"].tolist()
    for error in scored.errors[:4]:
        row = {k: v for k, v in frame.iloc[error.row - 50].items() if k != "id" and v is not None}
        details = _online(service, "iris", [row])
        assert error.reason == "; ".join(
            f"{d['path'].removeprefix('instances[0].')} {d['message']}" for d in details
        )
    assert scored.errors[0].reason == "sepal_length is required"
    assert scored.errors[4].reason == "petal_width is Infinity, not a finite number"


def test_extra_columns_follow_allow_extra_fields(root: Path, service: InferenceService) -> None:
    frame = _iris_frame().iloc[:4].copy()
    frame["label"] = [None, "x", None, "y"]
    scored = ChunkScorer(service, "iris", id_column="id").score(frame, 0)
    assert [(e.row, e.reason) for e in scored.errors] == [
        (1, "(root) unexpected field(s): label"),
        (3, "(root) unexpected field(s): label"),
    ]
    assert _online(service, "iris", [{**frame.iloc[1].drop("id").to_dict()}])[0]["message"] == (
        "unexpected field(s): label"
    )
    lenient = ChunkScorer(_service(root, allow_extra_fields=True), "iris", id_column="id")
    assert lenient.score(frame, 0).errors == []


def test_missing_columns_fail_the_chunk(service: InferenceService) -> None:
    frame = _iris_frame().drop(columns=["petal_width", "sepal_width"])
    with pytest.raises(
        InvalidInput, match=r"no column\(s\) sepal_width, petal_width: model 'iris'"
    ):
        ChunkScorer(service, "iris").score(frame, 0)
    with pytest.raises(InvalidInput, match="no id column 'key'"):
        ChunkScorer(service, "iris", id_column="key").score(_iris_frame(), 0)
    with pytest.raises(InvalidInput, match="is one of the model's features"):
        ChunkScorer(service, "iris", id_column="sepal_width")
    with pytest.raises(ModelNotFound):
        ChunkScorer(service, "nope")
    with pytest.raises(ModelNotFound):
        ChunkScorer(service, "iris", version=7)


def test_strings_integers_and_enums(service: InferenceService) -> None:
    trained = models.tutorial()
    frame = models.tutorial_frame(40, seed=1)
    frame["feature2"] = np.round(frame["feature2"] * 3)  # whole numbers, as floats
    expected = trained.model.predict(frame).tolist()
    frame = frame.astype({"feature2": object, "feature3": object})
    frame.at[2, "feature3"] = "D"
    frame.at[4, "feature2"] = 1.5
    frame.at[6, "feature3"] = None
    frame.at[8, "feature3"] = 7
    frame.at[9, "feature2"] = "2"
    scored = ChunkScorer(service, "tutorial").score(frame, 0)
    errors = {e.row: e.reason for e in scored.errors}
    assert errors == {
        2: 'feature3 is "D", not one of "A", "B", "C"',
        4: "feature2 is 1.5, not an integer",
        6: "feature3 is required",
        8: 'feature3 is 7, not a string; feature3 is 7, not one of "A", "B", "C"',
        9: 'feature2 is a string ("2"), not an integer',
    }
    for row, reason in errors.items():
        instance = {k: v for k, v in frame.iloc[row].items() if v is not None}
        details = _online(service, "tutorial", [instance])
        assert reason == "; ".join(
            f"{d['path'].removeprefix('instances[0].')} {d['message']}" for d in details
        )
    kept = scored.predictions["row"].tolist()
    assert kept == [i for i in range(40) if i not in errors]
    assert scored.predictions["prediction"].tolist() == [expected[i] for i in kept]


def test_rows_the_model_refuses_are_isolated(service: InferenceService) -> None:
    frame = _iris_frame().drop(columns="id").iloc[:64].copy()
    frame.loc[[10, 41], "sepal_length"] = -1.0  # schema-valid (no minimum), refused by the model
    scored = ChunkScorer(service, "guarded").score(frame, 0)
    assert [e.row for e in scored.errors] == [10, 41]
    assert "sepal_length must not be negative" in scored.errors[0].reason
    assert scored.predictions["row"].tolist() == [i for i in range(64) if i not in (10, 41)]


def test_a_chunk_with_no_valid_row_has_the_columns(service: InferenceService) -> None:
    frame = _iris_frame().iloc[:3].copy()
    frame["sepal_length"] = np.nan
    scored = ChunkScorer(service, "iris").score(frame, 0)
    assert len(scored.errors) == 3 and scored.predictions.empty
    assert list(scored.predictions.columns) == ["row", "prediction", "class_name"] + [
        f"probability_{c}" for c in range(3)
    ]


def test_nullable_and_arrow_dtypes(service: InferenceService) -> None:
    """Parquet and Spark hand over nullable columns: a missing value is still "required"."""
    frame = _iris_frame().drop(columns="id").iloc[:6].copy()
    frame["sepal_length"] = frame["sepal_length"].astype("Float64")
    frame["petal_width"] = pd.array([1, 2, None, 1, 0, 2], dtype="Int64")
    frame.at[4, "sepal_length"] = pd.NA
    frame["sepal_width"] = frame["sepal_width"].astype("double[pyarrow]")
    scored = ChunkScorer(service, "iris").score(frame, 0)
    assert [(e.row, e.reason) for e in scored.errors] == [
        (2, "petal_width is required"),
        (4, "sepal_length is required"),
    ]
    assert scored.predictions["row"].tolist() == [0, 1, 3, 5]


def test_error_lines_are_the_one_format_of_rejected_rows() -> None:
    errors = [
        RowError(3, np.int64(7), "x is required"),
        RowError(4, pd.Timestamp("2026-01-02"), "y is a string"),
        RowError(5, None, "z"),
    ]
    lines = [orjson.loads(line) for line in error_lines(errors).splitlines()]
    assert lines == [
        {"row": 3, "id": 7, "reason": "x is required"},
        {"row": 4, "id": "2026-01-02 00:00:00", "reason": "y is a string"},
        {"row": 5, "id": None, "reason": "z"},
    ]
    assert error_lines([]) == b""
