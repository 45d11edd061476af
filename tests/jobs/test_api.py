"""The /jobs API, the same tests on both backends: the embedded executor in this process,
and Celery (a real broker, the real PostgreSQL store, a real ``modelserve worker``)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from modelserve.api.jobs import EXTENSION_KEY
from modelserve.app import create_app
from modelserve.keys import create_key
from modelserve.settings import ServerSettings

from .. import models
from .conftest import Backend
from .conftest import check_result
from .conftest import csv_bytes
from .conftest import iris_frame
from .conftest import read_result


@pytest.fixture(scope="module", params=["embedded", "celery"])
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    if chosen.start_worker is not None and not getattr(chosen, "_started", False):
        chosen.start_worker()
        chosen._started = True  # type: ignore[attr-defined]
    return chosen


def make_app(repo: Path, backend: Backend, **settings: Any) -> Flask:
    merged = {**backend.settings, "jobs_chunk_rows": 300, "default_model": "iris", **settings}
    return create_app(ServerSettings(profile="testing", model_path=repo, **merged))


@pytest.fixture
def jobs_app(jobs_repo: Path, backend: Backend) -> Iterator[Flask]:
    app = make_app(jobs_repo, backend)
    yield app
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def client(jobs_app: Flask) -> FlaskClient:
    return jobs_app.test_client()


def submit(
    client: FlaskClient,
    body: bytes,
    name: str = "in.csv",
    url: str = "/jobs",
    headers: dict[str, str] | None = None,
    **form: Any,
) -> Any:
    """Upload ``body`` as a multipart file; its ``key`` column is the id column."""
    form.setdefault("id_column", "key")
    return client.post(
        url,
        data={"file": (io.BytesIO(body), name), **form},
        content_type="multipart/form-data",
        headers=headers,
    )


def wait_done(client: FlaskClient, job_id: str, timeout: float = 30, **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}", **kw).json
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_a_csv_job_scores_every_row_once_with_the_online_answers(client: FlaskClient) -> None:
    frame = iris_frame(2000)
    resp = submit(client, csv_bytes(frame), id_column="key")
    assert resp.status_code == 202, resp.json
    job_id = resp.json["id"]
    assert resp.headers["Location"] == f"/jobs/{job_id}"
    assert resp.json["state"] == "queued"
    job = wait_done(client, job_id)
    assert job["state"] == "succeeded", job
    assert (job["rows_total"], job["rows_done"], job["rows_failed"]) == (2000, 2000, 0)
    assert job["chunks_done"] == 7 and job["rows_per_second"] > 0
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    result = client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200 and result.mimetype == "text/csv"
    check_result(read_result(result.data), frame)
    for fmt in ("jsonl", "parquet"):
        other = client.get(f"/jobs/{job_id}/result?format={fmt}")
        assert other.status_code == 200, other.json
        check_result(read_result(other.data, fmt), frame)
    assert client.get(f"/jobs/{job_id}/result?format=xml").status_code == 415


def test_invalid_rows_are_listed_and_the_rest_scored(client: FlaskClient) -> None:
    frame = iris_frame(1000, seed=1)
    frame.loc[[3, 700], "petal_width"] = -1.0
    frame.loc[450, "sepal_length"] = None
    job_id = submit(client, csv_bytes(frame), id_column="key").json["id"]
    job = wait_done(client, job_id)
    assert (job["state"], job["rows_failed"]) == ("succeeded", 3), job
    check_result(
        read_result(client.get(f"/jobs/{job_id}/result").data), frame, frozenset({3, 450, 700})
    )
    errors = client.get(f"/jobs/{job_id}/errors").json
    assert errors["total"] == 3
    assert [(e["row"], e["id"]) for e in errors["errors"]] == [
        (3, "k3"),
        (450, "k450"),
        (700, "k700"),
    ]
    assert "less than the minimum" in errors["errors"][0]["reason"]
    page = client.get(f"/jobs/{job_id}/errors?offset=1&limit=1").json["errors"]
    assert [e["row"] for e in page] == [450]


def test_too_many_invalid_rows_fail_the_job_with_the_reason(client: FlaskClient) -> None:
    frame = iris_frame(600, seed=2)
    frame.loc[0:99, "petal_width"] = -1.0
    job_id = submit(client, csv_bytes(frame), error_budget="0.05").json["id"]
    job = wait_done(client, job_id)
    assert job["state"] == "failed" and "error budget" in job["error"], job
    assert client.get(f"/jobs/{job_id}/errors").json["total"] == 100
    resp = client.get(f"/jobs/{job_id}/result")
    assert resp.status_code == 409 and resp.json["type"] == "JobConflict"


def test_json_instances_and_raw_bodies(client: FlaskClient) -> None:
    frame = iris_frame(50, seed=3)
    instances = frame.drop(columns="key").to_dict("records")
    resp = client.post("/models/iris/jobs", json={"instances": instances, "output_format": "csv"})
    assert resp.status_code == 202, resp.json
    job = wait_done(client, resp.json["id"])
    assert (job["state"], job["input_format"], job["output_format"]) == (
        "succeeded",
        "jsonl",
        "csv",
    )
    got = read_result(client.get(f"/jobs/{job['id']}/result").data)
    assert len(got) == 50
    raw = client.post("/jobs?id_column=key", data=csv_bytes(frame), content_type="text/csv")
    assert raw.status_code == 202, raw.json
    assert wait_done(client, raw.json["id"])["state"] == "succeeded"
    check_result(read_result(client.get(f"/jobs/{raw.json['id']}/result").data), frame)


def test_a_category_that_reads_as_a_number_is_scored_as_text(
    embedded_backend: Backend, tmp_path: Path
) -> None:
    """A CSV's "01" stays "01" in a job (the model's string feature), not the number 1 (the
    runner is the same code on both backends: the embedded one is enough here)."""
    repo = tmp_path / "models"
    inputs = [
        {"name": "feature1", "type": "number"},
        {"name": "feature2", "type": "number"},
        {"name": "feature3", "type": "string"},
    ]
    models.write_model(repo, "coded", models.coded(), manifest={"inputs": inputs})
    app = make_app(repo, embedded_backend, default_model="coded")
    try:
        _score_codes(app.test_client())
    finally:
        app.extensions[EXTENSION_KEY].close()


def _score_codes(client: FlaskClient) -> None:
    frame = models.coded_frame(120, seed=4)
    expected = models.coded().model.predict(frame).tolist()
    body = frame.to_csv(index=False).encode()
    assert b",01\n" in body
    resp = client.post("/models/coded/jobs", data=body, content_type="text/csv")
    assert resp.status_code == 202, resp.json
    job = wait_done(client, resp.json["id"])
    assert (job["state"], job["rows_done"], job["rows_failed"]) == ("succeeded", 120, 0), job
    got = read_result(client.get(f"/jobs/{job['id']}/result?format=jsonl").data, "jsonl")
    assert got["prediction"].tolist() == expected


def _multipart(field: str, name: str) -> dict[str, Any]:
    return {"data": {field: (io.BytesIO(b"x"), name)}, "content_type": "multipart/form-data"}


@pytest.mark.parametrize(
    ("kwargs", "status", "kind"),
    [
        ({"data": b"a,b\n", "content_type": "text/plain"}, 415, "UnsupportedMediaType"),
        (
            {"data": b"a,b\n", "content_type": "application/octet-stream"},
            415,
            "UnsupportedMediaType",
        ),
        ({"json": {"rows": []}}, 400, "InvalidInput"),
        ({"json": {"instances": [[1, 2, 3, 4]]}}, 400, "InvalidInput"),
        ({"data": b"{nope", "content_type": "application/json"}, 400, "InvalidInput"),
        ({"data": b"", "content_type": "text/csv"}, 400, "InvalidInput"),
        ({"multipart": ("other", "x.csv")}, 400, "InvalidInput"),
        ({"multipart": ("file", "x.xlsx")}, 415, "UnsupportedFormat"),
    ],
)
def test_bad_submissions_get_a_clear_4xx(
    client: FlaskClient, kwargs: dict[str, Any], status: int, kind: str
) -> None:
    if "multipart" in kwargs:  # a fresh file object per call: a sent one is closed
        kwargs = _multipart(*kwargs["multipart"])
    resp = client.post("/jobs", **kwargs)
    assert resp.status_code == status, resp.json
    assert resp.json["type"] == kind and resp.json["error"]
    assert client.get("/jobs?state=queued").json["jobs"] == []


def test_unknown_model_and_job_answer_404(client: FlaskClient) -> None:
    resp = submit(client, csv_bytes(iris_frame(5)), url="/models/nope/jobs")
    assert resp.status_code == 404 and resp.json["type"] == "ModelNotFound"
    for method, url in [("GET", "/jobs/abc"), ("GET", "/jobs/abc/result"), ("DELETE", "/jobs/abc")]:
        assert client.open(url, method=method).status_code == 404


@pytest.mark.parametrize(
    ("body", "name", "reason"),
    [
        (b"sepal_length,petal_width\n1,2\n", "in.csv", "sepal_width"),
        (b"PAR1 this is not parquet", "in.parquet", "Parquet"),
        (b'{"sepal_length": 1}\nnot json\n', "in.jsonl", "line 2"),
    ],
)
def test_a_malformed_file_fails_the_job_with_the_reason(
    client: FlaskClient, body: bytes, name: str, reason: str
) -> None:
    resp = submit(client, body, name)
    assert resp.status_code == 202, resp.json
    job = wait_done(client, resp.json["id"])
    assert job["state"] == "failed" and reason in job["error"], job


def test_cancel_stops_a_running_job(jobs_repo: Path, backend: Backend) -> None:
    app = make_app(jobs_repo, backend, jobs_chunk_rows=50)
    client = app.test_client()
    try:
        job_id = submit(client, csv_bytes(iris_frame(60_000))).json["id"]
        deadline = time.monotonic() + 20
        while client.get(f"/jobs/{job_id}").json["chunks_done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        resp = client.delete(f"/jobs/{job_id}")
        assert resp.status_code == 200 and resp.json["state"] == "cancelled", resp.json
        time.sleep(0.5)
        job = client.get(f"/jobs/{job_id}").json
        assert job["state"] == "cancelled" and job["chunks_done"] < 1200
        time.sleep(0.3)
        assert client.get(f"/jobs/{job_id}").json["chunks_done"] == job["chunks_done"]
        assert client.delete(f"/jobs/{job_id}").status_code == 409
        assert client.get(f"/jobs/{job_id}/result").status_code == 409
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_a_job_belongs_to_the_key_that_made_it(
    jobs_repo: Path, backend: Backend, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    alice = {"X-API-Key": create_key(keys, "alice", ("predict",))}
    bob = {"X-API-Key": create_key(keys, "bob", ("predict",))}
    app = make_app(jobs_repo, backend, keys_file=keys)
    client = app.test_client()
    try:
        resp = submit(client, csv_bytes(iris_frame(20)), headers=alice)
        assert resp.status_code == 202, resp.json
        job_id = resp.json["id"]
        assert wait_done(client, job_id, headers=alice)["state"] == "succeeded"
        assert client.get(f"/jobs/{job_id}/result", headers=alice).status_code == 200
        for method, url in [
            ("GET", f"/jobs/{job_id}"),
            ("GET", f"/jobs/{job_id}/result"),
            ("GET", f"/jobs/{job_id}/errors"),
            ("DELETE", f"/jobs/{job_id}"),
        ]:
            resp = client.open(url, method=method, headers=bob)
            assert resp.status_code == 404 and resp.json["type"] == "JobNotFound", (method, url)
        assert job_id not in [j["id"] for j in client.get("/jobs", headers=bob).json["jobs"]]
        assert job_id in [j["id"] for j in client.get("/jobs", headers=alice).json["jobs"]]
        assert client.get(f"/jobs/{job_id}").status_code == 401
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_jobs_are_listed_newest_first_in_pages(client: FlaskClient) -> None:
    ids = [submit(client, csv_bytes(iris_frame(5, seed=i))).json["id"] for i in range(3)]
    for job_id in ids:
        wait_done(client, job_id)
    first = client.get("/jobs?limit=2").json
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    assert first["total"] >= 3 and first["next"] == "/jobs?limit=2&offset=2"
    second = client.get(first["next"]).json
    assert second["jobs"][0]["id"] == ids[0]
    assert client.get("/jobs?state=nope").status_code == 400
    assert client.get("/jobs?limit=x").status_code == 400
    assert all(j["state"] == "succeeded" for j in client.get("/jobs?state=succeeded").json["jobs"])


def test_uploads_may_pass_max_content_length_up_to_jobs_max_upload(
    jobs_repo: Path, backend: Backend
) -> None:
    app = make_app(jobs_repo, backend, max_content_length=1000, jobs_max_upload=60_000)
    client = app.test_client()
    try:
        small = csv_bytes(iris_frame(300))  # ~10 kB: over the online limit
        assert 1000 < len(small) < 60_000
        resp = client.post("/jobs?id_column=key", data=small, content_type="text/csv")
        assert resp.status_code == 202, resp.json
        big = csv_bytes(iris_frame(3000))
        resp = client.post("/jobs", data=big, content_type="text/csv")
        assert resp.status_code == 413 and resp.json["status"] == "error"
        resp = submit(client, big)
        assert resp.status_code == 413
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_finished_jobs_expire_with_their_files(jobs_repo: Path, backend: Backend) -> None:
    app = make_app(jobs_repo, backend, jobs_result_ttl=0.2)
    client = app.test_client()
    ext = app.extensions[EXTENSION_KEY]
    try:
        job_id = submit(client, csv_bytes(iris_frame(10))).json["id"]
        assert wait_done(client, job_id)["state"] == "succeeded"
        folder = ext.manager().files.folder(job_id)
        assert folder.is_dir()
        time.sleep(0.3)
        assert ext.manager().remove_expired() >= 1
        assert not folder.exists()
        assert client.get(f"/jobs/{job_id}").status_code == 404
    finally:
        ext.close()


def test_an_unreachable_store_is_a_503_and_predictions_still_work(jobs_repo: Path) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    app = create_app(ServerSettings(profile="testing", model_path=jobs_repo, jobs_store_url=dead))
    client = app.test_client()
    row = dict(iris_frame(1).drop(columns="key").iloc[0])
    assert client.post("/predict", json=row).status_code == 200
    for resp in (client.get("/jobs"), submit(client, csv_bytes(iris_frame(5)))):
        assert resp.status_code == 503 and resp.json["type"] == "ServerBusy", resp.json
        assert "cannot be reached" in resp.json["error"] and resp.headers["Retry-After"]
