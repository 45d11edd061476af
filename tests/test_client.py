"""modelserve.client against a real server: seed routes, V2, errors, the repository API,
batch jobs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelserve.client import ClientError
from modelserve.client import ModelServeClient

from . import models
from .conftest import LiveServer
from .conftest import running_server

pytestmark = pytest.mark.e2e

API_KEY = "client-tests-admin-and-predict-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repo = tmp_path_factory.mktemp("client") / "models"
    models.write_model(repo, "iris", models.iris())
    models.write_model(repo, "forest", models.forest())
    jobs = tmp_path_factory.mktemp("client-jobs")
    env = {"MODELSERVE_API_KEY": API_KEY, "MODELSERVE_JOBS_DIR": str(jobs)}
    with running_server([str(repo), "--default-model", "iris"], env) as server:
        yield server


@pytest.fixture
def client(server: LiveServer) -> Iterator[ModelServeClient]:
    with ModelServeClient(server.url, timeout=10, api_key=API_KEY) as client:
        yield client


def test_a_client_without_the_key_is_refused(server: LiveServer) -> None:
    with ModelServeClient(server.url, timeout=10) as anonymous:
        assert anonymous.health()["status"] == "healthy"  # health stays public
        with pytest.raises(ClientError) as info:
            anonymous.list_models()
    assert (info.value.status, info.value.type) == (401, "Unauthenticated")


def test_seed_routes(client: ModelServeClient) -> None:
    trained = models.iris()
    labels, proba = trained.expected(trained.x[:3])
    assert client.health()["status"] == "healthy"
    assert {m["name"] for m in client.list_models()} == {"iris", "forest"}
    assert client.model_metadata("iris")["inputs"][0]["name"] == "sepal_length"
    one = client.predict(models.features_of(trained, trained.x[0]))
    assert one["prediction"] == labels[0]
    assert one["probability"] == proba[0].tolist()
    assert one["version"] == "1"
    batch = client.predict_batch(trained.x[:3].tolist(), model="iris", version="1")
    assert [p["prediction"] for p in batch["predictions"]] == labels.tolist()


def test_tables_and_arrays_score_like_json(client: ModelServeClient) -> None:
    import pyarrow as pa

    trained = models.forest()
    x = trained.x[:40]
    labels, proba = trained.expected(x)
    assert proba is not None
    frame = {name: x[:, j] for j, name in enumerate(trained.feature_names)}
    for fmt in ("arrow", "parquet"):
        table = client.predict_table(frame, model="forest", fmt=fmt)
        assert isinstance(table, pa.Table)
        assert table.column("prediction").to_pylist() == labels.tolist()
        assert np.allclose(table.column("probability_1").to_numpy(), proba[:, 1])
    assert client.predict_array(x, model="forest").tolist() == labels.tolist()
    with pytest.raises(ClientError) as info:
        client.predict_array(x[:, :5], model="forest")
    assert info.value.status == 400 and "takes 30 features" in str(info.value)


def test_v2_health_and_metadata(client: ModelServeClient) -> None:
    assert client.server_live()
    assert client.server_ready()
    assert client.server_metadata()["name"] == "modelserve"
    assert client.model_ready("iris")
    assert client.model_ready("iris", "1")
    assert not client.model_ready("nope")
    meta = client.v2_model_metadata("forest", "1")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_in_process(client: ModelServeClient, binary: bool) -> None:
    trained = models.forest()
    x = trained.x[:50]
    result = client.infer("forest", {"input": x}, binary=binary, request_id="r1")
    labels, proba = trained.expected(x)
    assert (result.model_name, result.model_version, result.id) == ("forest", "1", "r1")
    np.testing.assert_array_equal(result.outputs["predict"], labels)
    np.testing.assert_array_equal(result.outputs["predict_proba"], proba)


def test_infer_selected_output_with_column_inputs(client: ModelServeClient) -> None:
    trained = models.iris()
    x = trained.x[::25]
    columns = {name: x[:, i] for i, name in enumerate(models.IRIS_FEATURES)}
    result = client.infer("iris", columns, outputs=["predict"], binary=False)
    assert list(result.outputs) == ["predict"]
    np.testing.assert_array_equal(result.outputs["predict"], trained.expected(x)[0])


def test_errors_carry_status_and_message(client: ModelServeClient) -> None:
    with pytest.raises(ClientError) as info:
        client.infer("iris", {"input": np.zeros((1, 3))})
    assert info.value.status == 400
    assert info.value.type == "InvalidInput"
    assert "[rows, 4]" in info.value.message
    with pytest.raises(ClientError) as info:
        client.v2_model_metadata("nope")
    assert info.value.status == 404
    with pytest.raises(ClientError, match="400"):
        client.predict({"sepal_length": "x"})


def test_repository_api(client: ModelServeClient) -> None:
    assert {"name": "forest", "version": "1", "state": "READY"} in client.repository_index()
    client.unload_model("forest")
    assert not client.model_ready("forest")
    with pytest.raises(ClientError) as info:
        client.unload_model("forest")
    assert info.value.status == 404
    client.load_model("forest")
    assert client.model_ready("forest")


def test_batch_jobs(client: ModelServeClient, tmp_path: Path) -> None:
    trained = models.iris()
    frame = pd.DataFrame(trained.x[:40], columns=list(models.IRIS_FEATURES))
    frame.insert(0, "key", [f"k{i}" for i in range(40)])
    frame.loc[5, "petal_width"] = None
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    queued = client.submit_job(source, model="iris", id_column="key", output_format="parquet")
    assert queued["state"] == "queued" and queued["output_format"] == "parquet"
    job = client.wait_job(queued["id"], timeout=30, poll=0.05)
    assert (job["state"], job["rows_done"], job["rows_failed"]) == ("succeeded", 40, 1), job
    assert client.job(job["id"])["state"] == "succeeded"
    assert job["id"] in [j["id"] for j in client.jobs(state="succeeded")["jobs"]]
    result = pd.read_parquet(io.BytesIO(b"".join(client.job_result(job["id"]))))
    kept = [i for i in range(40) if i != 5]
    assert result["key"].tolist() == [f"k{i}" for i in kept]
    assert result["prediction"].tolist() == trained.expected(trained.x[kept])[0].tolist()
    as_csv = pd.read_csv(io.BytesIO(b"".join(client.job_result(job["id"], "csv", 64))))
    assert as_csv["row"].tolist() == kept
    assert list(client.iter_job_errors(job["id"], page_size=1)) == [
        {"row": 5, "id": "k5", "reason": "petal_width is required"}
    ]
    with pytest.raises(ClientError) as info:
        client.cancel_job(job["id"])
    assert (info.value.status, info.value.type) == (409, "JobConflict")
    instances = [models.features_of(trained, row) for row in trained.x[:3]]
    from_json = client.wait_job(client.submit_job(instances)["id"], timeout=30, poll=0.05)
    assert (from_json["state"], from_json["input_format"]) == ("succeeded", "jsonl")
    with pytest.raises(ClientError) as info:
        client.job("nope")
    assert (info.value.status, info.value.type) == (404, "JobNotFound")
