"""/predict_batch in every body format: Arrow, Parquet and .npy bodies and answers, columns."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.codecs import tables
from modelserve.settings import ServerSettings

from .. import models
from ..codecs.test_tables import arrow_bytes
from ..codecs.test_tables import corrupt_arrow_bodies
from ..codecs.test_tables import npy_bytes
from ..codecs.test_tables import parquet_bytes

URL = "/models/iris/predict_batch"


def iris_table(rows: slice = slice(0, 150, 3)) -> tuple[np.ndarray, Any]:
    x = models.iris().x[rows]
    return x, pa.table({n: x[:, j] for j, n in enumerate(models.IRIS_FEATURES)})


def bodies(x: np.ndarray, table: Any) -> dict[str, bytes]:
    return {
        tables.ARROW: arrow_bytes(table),
        tables.PARQUET: parquet_bytes(table),
        "application/x-parquet": parquet_bytes(table),
        tables.NPY: npy_bytes(x),
    }


def read_answer(data: bytes, content_type: str) -> Any:
    if content_type == tables.ARROW:
        return pyarrow.ipc.open_stream(pa.py_buffer(data)).read_all()
    if content_type == tables.PARQUET:
        return pq.read_table(pa.BufferReader(data))
    return np.load(io.BytesIO(data))


def test_every_body_format_scores_like_json_rows(client: FlaskClient) -> None:
    x, table = iris_table()
    rows = client.post(URL, json={"instances": x.tolist()})
    assert rows.status_code == 200, rows.json
    for content_type, body in bodies(x, table).items():
        resp = client.post(URL, data=body, content_type=content_type)
        assert resp.status_code == 200, (content_type, resp.json)
        assert resp.mimetype == "application/json"
        assert resp.json == rows.json, content_type  # the same rows answer, to the last digit


@pytest.mark.parametrize("answer", [tables.ARROW, tables.PARQUET, tables.NPY])
def test_answers_come_in_the_accepted_format(client: FlaskClient, answer: str) -> None:
    x, table = iris_table()
    labels, proba = models.iris().expected(x)
    assert proba is not None
    for content_type, body in bodies(x, table).items():
        resp = client.post(URL, data=body, content_type=content_type, headers={"Accept": answer})
        assert resp.status_code == 200, (content_type, resp.data[:300])
        assert resp.mimetype == answer
        got = read_answer(resp.data, answer)
        if answer == tables.NPY:
            assert got.tolist() == labels.tolist()
            continue
        assert got.column_names == [
            "prediction",
            "class_name",
            "probability_0",
            "probability_1",
            "probability_2",
        ]
        assert got.column("prediction").to_pylist() == labels.tolist()
        names = models.iris().class_names
        assert names is not None
        assert got.column("class_name").to_pylist() == [names[i] for i in labels]
        assert np.array_equal(
            np.column_stack([got.column(f"probability_{k}") for k in "012"]), proba
        )
        assert got.schema.metadata == {b"model": b"iris", b"version": b"1"}
    # A JSON body can ask for a table answer too.
    resp = client.post(URL, json={"instances": x.tolist()}, headers={"Accept": answer})
    assert resp.status_code == 200 and resp.mimetype == answer
    if answer == tables.PARQUET:  # and Parquet's older name works as well
        old = client.post(
            URL, json={"instances": x.tolist()}, headers={"Accept": "application/x-parquet"}
        )
        assert old.mimetype == "application/x-parquet"
        assert read_answer(old.data, answer) == read_answer(resp.data, answer)


def test_the_columns_answer_mirrors_the_rows_answer(client: FlaskClient) -> None:
    x, table = iris_table()
    rows = client.post(URL, json={"instances": x.tolist()}).json
    columns = client.post(URL, json={"instances": x.tolist(), "format": "columns"}).json
    predictions = rows["predictions"]
    assert columns == {
        "format": "columns",
        "predictions": [p["prediction"] for p in predictions],
        "class_names": [p["class_name"] for p in predictions],
        "probabilities": {str(k): [p["probability"][k] for p in predictions] for k in range(3)},
        "status": "success",
        "model": "iris",
        "version": "1",
    }
    # The same through the query string, for bodies that have no JSON to say it in.
    by_query = client.post(f"{URL}?format=columns", data=npy_bytes(x), content_type=tables.NPY)
    assert by_query.json == columns
    as_objects = [models.features_of(models.iris(), row) for row in x]
    objects = client.post(URL, json={"instances": as_objects, "format": "columns"})
    assert objects.json == columns


def test_a_regressor_has_no_probabilities(tmp_path: Path) -> None:
    root = tmp_path / "models"
    models.write_model(root, "ridge", models.regressor())
    client = create_app(ServerSettings(profile="testing", model_path=root)).test_client()
    x = models.regressor().x[:5]
    resp = client.post("/predict_batch", json={"instances": x.tolist(), "format": "columns"})
    assert resp.status_code == 200, resp.json
    assert resp.json["probabilities"] is None
    assert resp.json["predictions"] == pytest.approx(models.regressor().expected(x)[0].tolist())
    npy = client.post(
        "/predict_batch", data=npy_bytes(x), content_type=tables.NPY, headers={"Accept": tables.NPY}
    )
    assert np.load(io.BytesIO(npy.data)).tolist() == pytest.approx(resp.json["predictions"])


def test_string_labels_come_back_as_strings_in_every_format(tmp_path: Path) -> None:
    root = tmp_path / "models"
    models.write_model(root, "letters", models.string_labels())
    client = create_app(ServerSettings(profile="testing", model_path=root)).test_client()
    x = models.string_labels().x[::30]
    labels = models.string_labels().expected(x)[0].tolist()
    for answer in (tables.NPY, tables.ARROW):
        resp = client.post(
            "/predict_batch", data=npy_bytes(x), content_type=tables.NPY, headers={"Accept": answer}
        )
        got = read_answer(resp.data, answer)
        assert (got.tolist() if answer == tables.NPY else got["prediction"].to_pylist()) == labels
    columns = client.post("/predict_batch", json={"instances": x.tolist(), "format": "columns"})
    assert columns.json["predictions"] == labels
    assert list(columns.json["probabilities"]) == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"a,b\n1,2\n", "text/csv", 415, "Content-Type must be application/json or a table"),
        (b"garbage", tables.ARROW, 400, "not a valid Arrow IPC stream"),
        (b"garbage", tables.PARQUET, 400, "not a valid Parquet file"),
        (b"garbage", tables.NPY, 400, "not a .npy file"),
        (npy_bytes(np.zeros((2, 3))), tables.NPY, 400, "takes 4 features, in this order"),
        (npy_bytes(-np.ones((2, 4))), tables.NPY, 400, "sepal_length[0] is -1.0, less than"),
        (
            arrow_bytes(pa.table({"sepal_length": [1.0], "petal_width": ["x"]})),
            tables.ARROW,
            400,
            "sepal_width is required",
        ),
        (parquet_bytes(iris_table(slice(0, 20))[1]), tables.PARQUET, 413, "20 rows is more"),
    ],
    ids=["csv", "arrow", "parquet", "npy", "width", "bounds", "missing", "rows"],
)
def test_bad_bodies_get_json_errors(
    repo: Path, body: bytes, content_type: str, status: int, says: str
) -> None:
    settings = ServerSettings(profile="testing", model_path=repo, max_batch_rows=10)
    client = create_app(settings).test_client()
    resp = client.post(URL, data=body, content_type=content_type)
    assert resp.status_code == status, resp.data[:300]
    assert resp.mimetype == "application/json"
    assert resp.json["status"] == "error" and says in resp.json["error"]


def test_arrow_streams_with_bad_data_get_json_400s(client: FlaskClient) -> None:
    """Found by fuzzing: a non-UTF-8 column name was a 500, bad string offsets a crash."""
    for case, body in corrupt_arrow_bodies().items():
        resp = client.post(URL, data=body, content_type=tables.ARROW)
        assert resp.status_code == 400 and resp.mimetype == "application/json", case
        assert "not a valid Arrow IPC stream" in resp.json["error"], case


def test_table_errors_list_every_feature(client: FlaskClient) -> None:
    table = pa.table(
        {
            "sepal_length": [5.0, None],
            "sepal_width": [3.0, -2.0],
            "petal_length": pa.array([1, 2], pa.date32()),
            "petal_width": [0.2, 0.3],
            "colour": ["red", "blue"],
        }
    )
    resp = client.post(URL, data=arrow_bytes(table), content_type=tables.ARROW)
    assert resp.status_code == 400
    assert resp.json["details"] == [
        {"path": "(columns)", "message": "unexpected column(s): colour"},
        {"path": "sepal_length[1]", "message": "is null, not a number"},
        {"path": "sepal_width[1]", "message": "is -2.0, less than the minimum 0.0"},
        {"path": "petal_length", "message": "is a column of date32[day], not numbers"},
    ]


def test_a_body_over_the_size_limit_is_413(repo: Path) -> None:
    settings = ServerSettings(profile="testing", model_path=repo, max_content_length=4096)
    client = create_app(settings).test_client()
    x, table = iris_table(slice(0, 150))
    assert len(arrow_bytes(table)) > 4096
    resp = client.post(URL, data=arrow_bytes(table), content_type=tables.ARROW)
    assert resp.status_code == 413 and resp.mimetype == "application/json"


def test_a_bad_format_is_400(client: FlaskClient) -> None:
    x, _ = iris_table(slice(0, 2))
    resp = client.post(URL, json={"instances": x.tolist(), "format": "table"})
    assert resp.status_code == 400
    assert resp.json["details"] == [
        {"path": "format", "message": 'is a string ("table"), not "rows" or "columns"'}
    ]
    resp = client.post(f"{URL}?format=wide", data=npy_bytes(x), content_type=tables.NPY)
    assert resp.status_code == 400 and resp.json["details"][0]["path"] == "format"


def test_without_pyarrow_arrow_is_415_and_npy_still_works(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "load_pyarrow", lambda: None)
    x, table = iris_table(slice(0, 3))
    resp = client.post(URL, data=arrow_bytes(table), content_type=tables.ARROW)
    assert resp.status_code == 415
    assert "pip install 'modelserve[arrow]'" in resp.json["error"]
    assert client.post(URL, data=npy_bytes(x), content_type=tables.NPY).status_code == 200


def test_cached_columns_answers_are_the_same_in_every_format(tmp_path: Path) -> None:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris(), manifest={"cache": {"ttl_seconds": 60}})
    client = create_app(ServerSettings(profile="testing", model_path=root)).test_client()
    x, table = iris_table(slice(0, 150, 10))
    first = client.post(URL, json={"instances": x.tolist(), "format": "columns"}).json
    again = client.post(URL, json={"instances": x.tolist(), "format": "columns"}).json
    assert again == first
    # The Arrow answer for the same rows comes from the cached columns answer too.
    resp = client.post(
        URL, data=arrow_bytes(table), content_type=tables.ARROW, headers={"Accept": tables.ARROW}
    )
    got = read_answer(resp.data, tables.ARROW)
    assert got.column("prediction").to_pylist() == first["predictions"]
    assert got.column("probability_2").to_pylist() == first["probabilities"]["2"]
    stats = client.get("/models/iris").json["cache"]
    assert stats["hits"] >= 2, stats


def test_the_prediction_log_reads_a_columns_answer() -> None:
    from modelserve.predlog import output_columns

    answer = {
        "format": "columns",
        "predictions": np.array([0, 2]),
        "probabilities": {"0": np.array([0.9, 0.1]), "1": np.array([0.1, 0.9])},
    }
    assert output_columns(answer) == {
        "predict": [0, 2],
        "predict_proba": [[0.9, 0.1], [0.1, 0.9]],
    }
    assert output_columns({"format": "columns", "predictions": [1.5], "probabilities": None}) == {
        "predict": [1.5]
    }


@pytest.mark.parametrize("express", [True, False])
def test_number_rows_skip_the_python_parse_and_other_bodies_take_it(
    settings: ServerSettings, monkeypatch: pytest.MonkeyPatch, express: bool
) -> None:
    """JSON number rows are parsed straight into an array (codecs/numeric_json.py) on both
    the express lane and Flask's route; object rows, and any body it cannot prove, go
    through ``parse_json`` as before, with the same answers and errors."""
    from modelserve.protocols import seed as protocol

    client = create_app(settings.model_copy(update={"express": express})).test_client()
    x = models.iris().x[::10]
    objects = [dict(zip(models.IRIS_FEATURES, row, strict=True)) for row in x.tolist()]
    want = {
        "rows": client.post(URL, json={"instances": objects}).json,
        "columns": client.post(URL, json={"instances": objects, "format": "columns"}).json,
        "ragged": client.post(URL, json={"instances": [[1.0, 2.0, 3.0, 4.0], [1.0]]}).json,
    }
    parsed: list[bytes] = []
    real_parse = protocol.parse_json

    def spy(body: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(body)
        return real_parse(body, *args, **kwargs)

    monkeypatch.setattr(protocol, "parse_json", spy)
    assert client.post(URL, json={"instances": x.tolist()}).json == want["rows"]
    columns = client.post(URL, json={"instances": x.tolist(), "format": "columns"})
    assert columns.json == want["columns"]
    bad_format = client.post(URL, json={"instances": x.tolist(), "format": "table"})
    assert bad_format.status_code == 400 and "format" in bad_format.json["error"]
    assert parsed == []  # none of those three went through orjson's parse

    assert client.post(URL, json={"instances": objects}).json == want["rows"]
    assert len(parsed) == 1
    ragged = client.post(URL, json={"instances": [[1.0, 2.0, 3.0, 4.0], [1.0]]})
    assert ragged.status_code == 400 and ragged.json == want["ragged"]
    # The lane answers successes only: a refused body is decoded again by Flask's route.
    assert len(parsed) == (3 if express else 2)
