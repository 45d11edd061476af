"""A small synchronous Python client for modelserve: the seed routes, the V2 protocol and
batch jobs.

Example::

    from modelserve.client import ModelServeClient

    with ModelServeClient("http://127.0.0.1:8000") as client:
        client.predict({"sepal_length": 5.1, "sepal_width": 3.5,
                        "petal_length": 1.4, "petal_width": 0.2})
        result = client.infer("iris", {"input": x})       # x: a [rows, 4] numpy array
        result.outputs["predict_proba"]
        client.predict_array(x)                            # the same rows as .npy: labels
        job = client.submit_job("rows.csv", model="iris", id_column="key")
        client.wait_job(job["id"])                         # its state once finished
        with open("predictions.csv", "wb") as out:
            for block in client.job_result(job["id"]):
                out.write(block)

It needs ``requests`` (``pip install 'modelserve[client]'``) and imports nothing of the server.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any
from typing import cast
from urllib.parse import quote

import numpy as np
import requests

from .codecs import tables
from .codecs.v2 import RequestOutput
from .codecs.v2 import decode_response
from .codecs.v2 import encode_request
from .types import Tensor
from .types import TensorDict

_HEADER_LENGTH = "Inference-Header-Content-Length"
#: The states a job never leaves.
_FINISHED = frozenset({"succeeded", "failed", "cancelled"})
_TABLE_TYPES = {"arrow": tables.ARROW, "parquet": tables.PARQUET, "npy": tables.NPY}


class ClientError(Exception):
    """The server answered with an error status.

    :param status: the HTTP status code.
    :param message: the server's ``error`` message.
    :param type: the server's error type (``InvalidInput``, ``ModelNotFound``...), if given.
    """

    def __init__(self, status: int, message: str, type: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.type = type

    def __repr__(self) -> str:
        return f"ClientError(status={self.status}, message={self.message!r}, type={self.type!r})"


@dataclass(frozen=True)
class InferResult:
    """A V2 inference answer, with its outputs as numpy arrays."""

    model_name: str
    model_version: str
    id: str | None
    parameters: dict[str, Any]
    outputs: TensorDict


class ModelServeClient:
    """Talk to one modelserve server.

    :param url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
    :param timeout: seconds per request.
    :param headers: sent with every request (an ``Authorization`` header, for instance).
    :param session: a ``requests.Session`` to reuse; one is created (and closed) otherwise.
    :param api_key: sent as ``X-API-Key`` with every request (servers with authentication on).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._own_session = session is None
        self.session = session or requests.Session()
        if headers:
            self.session.headers.update(headers)
        if api_key is not None:
            self.session.headers["X-API-Key"] = api_key

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> ModelServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | Mapping[str, str] | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Sequence[int] = (200,),
        params: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, IO[bytes]]] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        resp = self.session.request(
            method,
            self.url + path,
            json=json,
            data=data,
            headers=dict(headers or {}),
            params={k: v for k, v in (params or {}).items() if v is not None},
            files=files,
            stream=stream,
            timeout=self.timeout,
        )
        if resp.status_code not in ok:
            try:
                body = resp.json()
                message, kind = str(body.get("error", resp.text)), body.get("type")
            except ValueError:
                message, kind = resp.text or resp.reason, None
            raise ClientError(resp.status_code, message, kind)
        return resp

    @staticmethod
    def _model_path(prefix: str, name: str | None, version: str | None) -> str:
        if name is None:
            return ""
        path = f"{prefix}/models/{quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{quote(str(version), safe='')}"
        return path

    # -- seed routes ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health``; answers (rather than raises) when the server is unhealthy."""
        result: dict[str, Any] = self._request("GET", "/health", ok=(200, 503)).json()
        return result

    def list_models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/models").json()["models"]
        return result

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", self._model_path("", name, version)).json()
        return result

    def predict(
        self, features: Mapping[str, Any], model: str | None = None, version: str | None = None
    ) -> dict[str, Any]:
        """Score one instance of named features (``/predict``)."""
        path = self._model_path("", model, version) + "/predict"
        result: dict[str, Any] = self._request("POST", path, json=dict(features)).json()
        return result

    def predict_batch(
        self,
        instances: Sequence[Mapping[str, Any] | Sequence[Any]],
        model: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Score several instances (``/predict_batch``): objects or lists in feature order."""
        path = self._model_path("", model, version) + "/predict_batch"
        payload = {"instances": [i if isinstance(i, Mapping) else list(i) for i in instances]}
        result: dict[str, Any] = self._request("POST", path, json=payload).json()
        return result

    def predict_table(
        self,
        table: Any,
        model: str | None = None,
        version: str | None = None,
        fmt: str = "arrow",
    ) -> Any:
        """Score a table of named feature columns sent as an Arrow IPC stream (``fmt="arrow"``)
        or Parquet (``"parquet"``); the answer comes back in the same format, as a
        ``pyarrow.Table`` with ``prediction``, ``class_name`` and ``probability_<label>``.

        :param table: a ``pyarrow.Table``, or anything ``pyarrow.table`` takes (a pandas
            DataFrame, a dict of arrays). Needs ``pip install 'modelserve[arrow]'``.
        """
        import pyarrow as pa
        import pyarrow.ipc
        import pyarrow.parquet

        content_type = _TABLE_TYPES[fmt]
        table = table if isinstance(table, pa.Table) else pa.table(table)
        sink = pa.BufferOutputStream()
        if fmt == "arrow":
            with pyarrow.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        else:
            pyarrow.parquet.write_table(table, sink)
        path = self._model_path("", model, version) + "/predict_batch"
        headers = {"Content-Type": content_type, "Accept": content_type}
        body = self._request("POST", path, data=sink.getvalue().to_pybytes(), headers=headers)
        if fmt == "arrow":
            return pyarrow.ipc.open_stream(pa.py_buffer(body.content)).read_all()
        return pyarrow.parquet.read_table(pa.BufferReader(body.content))

    def predict_array(
        self, x: Tensor, model: str | None = None, version: str | None = None
    ) -> Tensor:
        """Score a ``[rows, features]`` number array (features in the model's order) sent as
        ``.npy``; returns the predictions, one per row, as a 1-D array."""
        out = io.BytesIO()
        np.save(out, np.asarray(x), allow_pickle=False)
        path = self._model_path("", model, version) + "/predict_batch"
        headers = {"Content-Type": _TABLE_TYPES["npy"], "Accept": _TABLE_TYPES["npy"]}
        body = self._request("POST", path, data=out.getvalue(), headers=headers)
        result: Tensor = np.load(io.BytesIO(body.content), allow_pickle=False)
        return result

    # -- open inference protocol ------------------------------------------------------------

    def server_live(self) -> bool:
        return self._request("GET", "/v2/health/live", ok=(200, 400, 503)).status_code == 200

    def server_ready(self) -> bool:
        return self._request("GET", "/v2/health/ready", ok=(200, 400, 503)).status_code == 200

    def server_metadata(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v2").json()
        return result

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the model (version) serves now; unknown models are not ready."""
        path = self._model_path("/v2", name, version) + "/ready"
        return self._request("GET", path, ok=(200, 400, 404, 503)).status_code == 200

    def v2_model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", self._model_path("/v2", name, version)).json()
        return result

    def infer(
        self,
        name: str,
        inputs: Mapping[str, Tensor | Sequence[Any]],
        version: str | None = None,
        outputs: Sequence[str] | None = None,
        binary: bool = True,
        request_id: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> InferResult:
        """Run a V2 inference.

        :param inputs: tensors by name; lists are turned into arrays (floats become FP64).
        :param outputs: which outputs to return; ``None`` means all of them.
        :param binary: send inputs and ask for outputs with the binary tensor extension
            (fast for large tensors); ``False`` uses plain JSON both ways.
        :raises ClientError: for any error status, with the server's message.
        """
        tensors = [(n, np.asarray(a), binary) for n, a in inputs.items()]
        wanted = [RequestOutput(o, binary) for o in outputs] if outputs is not None else None
        body, header_length = encode_request(
            tensors, wanted, request_id, dict(parameters or {}), binary_output=binary
        )
        headers = {
            "Content-Type": "application/octet-stream" if header_length else "application/json"
        }
        if header_length is not None:
            headers[_HEADER_LENGTH] = str(header_length)
        resp = self._request(
            "POST", self._model_path("/v2", name, version) + "/infer", data=body, headers=headers
        )
        raw_length = resp.headers.get(_HEADER_LENGTH)
        meta, arrays = decode_response(
            resp.content, int(raw_length) if raw_length is not None else None
        )
        return InferResult(
            model_name=meta["model_name"],
            model_version=meta.get("model_version", ""),
            id=meta.get("id"),
            parameters=meta.get("parameters") or {},
            outputs=arrays,
        )

    def repository_index(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("POST", "/v2/repository/index").json()
        return result

    def load_model(self, name: str) -> None:
        """Load (or reload) a model from the repository on disk, in every worker."""
        self._request("POST", f"/v2/repository/models/{quote(name, safe='')}/load", json={})

    def unload_model(self, name: str) -> None:
        """Stop serving a model (in every worker) until :meth:`load_model` is called."""
        self._request("POST", f"/v2/repository/models/{quote(name, safe='')}/unload", json={})

    # -- batch jobs -------------------------------------------------------------------------

    def submit_job(
        self,
        source: str | os.PathLike[str] | bytes | IO[bytes] | Sequence[Mapping[str, Any]],
        model: str | None = None,
        version: str | None = None,
        *,
        filename: str | None = None,
        id_column: str | None = None,
        output_format: str | None = None,
        error_budget: float | None = None,
    ) -> dict[str, Any]:
        """Queue a batch job (``POST /jobs``); answers the queued job (its ``id``, ``state``).

        :param source: a file's path, its bytes, or a binary file object (uploaded as it is
            read): CSV, JSON lines or Parquet, told apart by the file's name; or instances
            (objects of named features, sent as JSON).
        :param filename: the upload's name for bytes, or a file object without one (its
            extension names the format).
        :param output_format: ``csv``, ``jsonl`` or ``parquet`` (default: the input's).
        :param error_budget: the share of rejected rows at which the job fails.
        """
        path = self._model_path("", model, version) + "/jobs"
        options = {"id_column": id_column, "output_format": output_format}
        if error_budget is not None:
            options["error_budget"] = str(error_budget)
        form = {k: v for k, v in options.items() if v is not None}
        if isinstance(source, (str, os.PathLike)):
            with Path(source).open("rb") as fh:
                return self._submit(path, form, filename or Path(source).name, fh)
        if isinstance(source, bytes):
            return self._submit(path, form, filename or "input", io.BytesIO(source))
        if isinstance(source, Sequence):
            rows = cast(Sequence[Mapping[str, Any]], source)
            payload = {"instances": [dict(row) for row in rows], **form}
            job: dict[str, Any] = self._request("POST", path, json=payload, ok=(202,)).json()
            return job
        name = filename or Path(str(getattr(source, "name", "") or "input")).name
        return self._submit(path, form, name, source)

    def _submit(
        self, path: str, form: Mapping[str, str], name: str, fh: IO[bytes]
    ) -> dict[str, Any]:
        files = {"file": (name, fh)}
        job: dict[str, Any] = self._request("POST", path, data=form, files=files, ok=(202,)).json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's state: ``state``, ``rows_done`` of ``rows_total``, ``error``..."""
        result: dict[str, Any] = self._request("GET", self._job_path(job_id)).json()
        return result

    def jobs(
        self, state: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        """A page of this key's jobs, newest first: ``jobs``, ``total``, ``next``."""
        params = {"state": state, "limit": limit, "offset": offset}
        result: dict[str, Any] = self._request("GET", "/jobs", params=params).json()
        return result

    def wait_job(
        self, job_id: str, timeout: float | None = None, poll: float = 0.5
    ) -> dict[str, Any]:
        """Poll a job until it finished (succeeded, failed or cancelled); answer its state.

        :raises TimeoutError: it has not finished after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in _FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout} s")
            time.sleep(poll)

    def job_result(
        self, job_id: str, format: str | None = None, chunk_size: int = 1024 * 1024
    ) -> Iterator[bytes]:
        """A succeeded job's predictions, streamed in blocks (``format``: ``csv``, ``jsonl``
        or ``parquet``; default the job's output format).

        :raises ClientError: 409 while the job has not succeeded.
        """
        resp = self._request(
            "GET", self._job_path(job_id) + "/result", params={"format": format}, stream=True
        )
        return resp.iter_content(chunk_size)

    def job_errors(self, job_id: str, offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """A page of the rows a job rejected so far (``row``, ``id``, ``reason``), in row order."""
        params = {"offset": offset, "limit": limit}
        page: list[dict[str, Any]] = self._request(
            "GET", self._job_path(job_id) + "/errors", params=params
        ).json()["errors"]
        return page

    def iter_job_errors(self, job_id: str, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every row a job rejected so far, page after page."""
        offset = 0
        while page := self.job_errors(job_id, offset, page_size):
            yield from page
            offset += len(page)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; answers its state (``cancelled``).

        :raises ClientError: 409 once it finished.
        """
        result: dict[str, Any] = self._request("DELETE", self._job_path(job_id)).json()
        return result

    @staticmethod
    def _job_path(job_id: str) -> str:
        return f"/jobs/{quote(job_id, safe='')}"
