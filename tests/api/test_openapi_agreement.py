"""The Python client and the README agree with ``/openapi.json``: every path the client calls
and every route the README documents is an operation of the generated document."""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from flask.testing import FlaskClient
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from modelserve.api.jobs import EXTENSION_KEY as JOBS_EXTENSION
from modelserve.app import create_app
from modelserve.client import ClientError
from modelserve.client import ModelServeClient
from modelserve.settings import ServerSettings

from .. import models

README = Path(__file__).resolve().parents[2] / "README.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _operations(client: FlaskClient) -> dict[str, set[str]]:
    """The document's paths (parameters as ``{}``) and the methods of each."""
    doc = client.get("/openapi.json").get_json()
    return {
        re.sub(r"\{[^}]+\}", "{}", path): {m.upper() for m in item}
        for path, item in doc["paths"].items()
    }


def _matches(operations: dict[str, set[str]], method: str, path: str) -> bool:
    """Whether a concrete request path is an operation (``{}`` matches one path segment)."""
    for template, methods in operations.items():
        pattern = "^" + re.escape(template).replace(r"\{\}", "[^/]+") + "$"
        if method in methods and re.match(pattern, path):
            return True
    return False


class _FlaskAdapter(BaseAdapter):
    """Sends the client's requests to a Flask test client, recording method and path."""

    def __init__(self, flask_client: FlaskClient) -> None:
        super().__init__()
        self.flask_client = flask_client
        self.calls: list[tuple[str, str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        self.calls.append((request.method or "", url.path))
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = self.flask_client.open(
            url.path,
            method=request.method,
            query_string=url.query,
            data=body,
            headers=dict(request.headers),
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response._content = answer.get_data()
        response._content_consumed = True  # a streamed read (iter_content) reads _content
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_every_path_the_client_calls_is_in_the_document(
    settings: ServerSettings, tmp_path: Path
) -> None:
    app = create_app(settings.model_copy(update={"jobs_dir": tmp_path / "jobs"}))
    try:
        _call_every_method(app.test_client(), tmp_path)
    finally:
        app.extensions[JOBS_EXTENSION].close()


def _call_every_method(client: FlaskClient, tmp_path: Path) -> None:
    adapter = _FlaskAdapter(client)
    session = requests.Session()
    session.mount("http://", adapter)
    api = ModelServeClient("http://modelserve.test", session=session)
    row = models.features_of(models.iris(), models.iris().x[0])
    x = np.asarray([list(row.values())])
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n")
    job_id = api.submit_job(rows)["id"]
    api.wait_job(job_id, timeout=30)
    calls: dict[str, list[Callable[[], Any]]] = {
        "health": [api.health],
        "list_models": [api.list_models],
        "model_metadata": [
            lambda: api.model_metadata("iris"),
            lambda: api.model_metadata("iris", "1"),
        ],
        "predict": [
            lambda: api.predict(row),
            lambda: api.predict(row, model="iris"),
            lambda: api.predict(row, model="iris", version="1"),
        ],
        "predict_batch": [
            lambda: api.predict_batch([row]),
            lambda: api.predict_batch([list(row.values())], model="iris", version="1"),
        ],
        "predict_table": [
            lambda: api.predict_table({k: [v] for k, v in row.items()}),
            lambda: api.predict_table(
                {k: [v] for k, v in row.items()}, model="iris", version="1", fmt="parquet"
            ),
        ],
        "predict_array": [
            lambda: api.predict_array(x),
            lambda: api.predict_array(x, model="iris", version="1"),
        ],
        "server_live": [api.server_live],
        "server_ready": [api.server_ready],
        "server_metadata": [api.server_metadata],
        "model_ready": [lambda: api.model_ready("iris"), lambda: api.model_ready("iris", "1")],
        "v2_model_metadata": [
            lambda: api.v2_model_metadata("iris"),
            lambda: api.v2_model_metadata("iris", "1"),
        ],
        "infer": [
            lambda: api.infer("iris", {"input": x}),
            lambda: api.infer("iris", {"input": x}, version="1", binary=False),
        ],
        # Admin routes: 403 with authentication off; the path is what is checked here.
        "repository_index": [api.repository_index],
        "load_model": [lambda: api.load_model("iris")],
        "unload_model": [lambda: api.unload_model("iris")],
        "submit_job": [
            lambda: api.submit_job(rows, model="iris", version="1", id_column="sepal_length"),
            lambda: api.submit_job(rows.read_bytes(), "iris", filename="rows.csv"),
            lambda: api.submit_job([row], output_format="parquet", error_budget=0.5),
        ],
        "job": [lambda: api.job(job_id)],
        "jobs": [api.jobs, lambda: api.jobs(state="succeeded", limit=1, offset=0)],
        "wait_job": [lambda: api.wait_job(job_id, timeout=30)],
        "job_result": [
            lambda: list(api.job_result(job_id)),
            lambda: api.job_result(job_id, "jsonl"),
        ],
        "job_errors": [lambda: api.job_errors(job_id)],
        "iter_job_errors": [lambda: list(api.iter_job_errors(job_id))],
        # A finished job: 409.
        "cancel_job": [lambda: api.cancel_job(job_id)],
    }
    public = {
        name
        for name, member in inspect.getmembers(ModelServeClient, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    assert set(calls) == public, "call every method of the client here"
    for call in itertools.chain.from_iterable(calls.values()):
        try:
            call()
        except ClientError as exc:
            # Only the admin routes refuse, and cancelling a finished job.
            assert exc.status == 403 or (exc.status, exc.type) == (409, "JobConflict"), exc
    operations = _operations(client)
    # The job submitted and waited for first; every call one request, but wait_job's polls
    # (at least one) and iter_job_errors' pages (the empty last one).
    assert len(adapter.calls) >= 2 + sum(len(c) for c in calls.values())
    missing = [(m, p) for m, p in adapter.calls if not _matches(operations, m, p)]
    assert missing == []


def _expand(route: str) -> list[str]:
    """``/models/<name>[/versions/<v>]/predict[_batch]`` -> every path it stands for."""
    match = re.search(r"\[([^\[\]]*)\]", route)
    if match is None:
        return [route]
    head, tail = route[: match.start()], route[match.end() :]
    return _expand(head + tail) + _expand(head + match.group(1) + tail)


def readme_routes(text: str) -> set[tuple[str, str]]:
    """Every ``(method, path)`` the README documents: its route tables (``| GET | `/x` |``)
    and every inline ``GET /x``; ``<param>`` becomes ``{}``, the query is dropped."""
    found: list[tuple[str, str]] = []
    methods = "|".join(METHODS)
    for line in text.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if cells and cells[0] in METHODS:
            found += [(cells[0], r) for r in re.findall(r"`(/[^`]*)`", cells[1])]
    found += re.findall(rf"`({methods}) (/[^` ]*)`", text)
    routes = set()
    for method, route in found:
        route = re.sub(r"\[\?[^\]]*\]", "", route)  # an optional query: `/jobs[?state=]`
        for path in _expand(route.split("?")[0]):
            routes.add((method, re.sub(r"<[^<>]+>", "{}", path)))
    return routes


def test_readme_route_parsing() -> None:
    text = (
        "| GET | `/models/<name>[/versions/<v>]/drift?window=S` | x |\n"
        "| POST | `/a`, `/b[_c]` | `/not-a-route` |\n"
        "| `MODELSERVE_PUBLIC_PATHS` | `/health,/metrics` |\n"
        "see `POST /v2/repository/models/<name>/load`.\n"
        "| `GET /jobs/<id>/result[?format=csv\\|jsonl]` | `GET /jobs[?state=&limit=]` |\n"
    )
    assert readme_routes(text) == {
        ("GET", "/models/{}/drift"),
        ("GET", "/models/{}/versions/{}/drift"),
        ("POST", "/a"),
        ("POST", "/b"),
        ("POST", "/b_c"),
        ("POST", "/v2/repository/models/{}/load"),
        ("GET", "/jobs/{}/result"),
        ("GET", "/jobs"),
    }


def test_every_route_the_readme_documents_is_in_the_document(client: FlaskClient) -> None:
    routes = readme_routes(README.read_text(encoding="utf-8"))
    assert len(routes) > 30
    operations: Mapping[str, set[str]] = _operations(client)
    missing = sorted((m, p) for m, p in routes if m not in operations.get(p, set()))
    assert missing == []
    for path in ("/openapi.json", "/docs", "/metrics"):
        assert ("GET", path) in routes, f"document GET {path} in the README"
