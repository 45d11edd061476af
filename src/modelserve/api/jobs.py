"""Batch job routes: submit a file (or JSON instances), poll, download, list, cancel.

The upload is streamed to the job's folder, never held in memory, and may be larger than
``MODELSERVE_MAX_CONTENT_LENGTH`` (up to ``MODELSERVE_JOBS_MAX_UPLOAD``). A job belongs to
the key that submitted it: another key's job answers 404, as one that does not exist.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import IO
from typing import TYPE_CHECKING
from typing import Any

import orjson
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import request
from flask import url_for

from .. import workers
from ..errors import ConfigError
from ..errors import InvalidInput
from ..errors import JobNotFound
from ..errors import ModelServeError
from ..errors import UnsupportedMediaType
from ..jobs.files import COPY_BUFFER
from ..jobs.files import default_store_url
from ..jobs.model import MAX_PAGE
from ..jobs.model import MEDIA_TYPES
from ..jobs.model import Job
from ..service import InferenceService
from ..settings import ServerSettings
from ._json import json_response
from ._json import request_body
from .auth import current_principal

if TYPE_CHECKING:  # pragma: no cover
    from ..jobs.manager import JobManager

logger = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__)

EXTENSION_KEY = "modelserve.jobs"

#: The multipart field the input file is read from.
FILE_FIELD = "file"

#: Raw-body media types a job accepts, and the format each is.
RAW_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}


class JobsExtension:
    """One app's job manager, built on first use (or at start when a store already exists, so
    that jobs queued or running before a restart resume without waiting for a request)."""

    def __init__(self, settings: ServerSettings, service: InferenceService) -> None:
        self.settings = settings
        self.service = service
        self._manager: JobManager | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._manager is not None

    def store_exists(self) -> bool:
        if self.settings.jobs_store_url or self.settings.jobs_backend == "celery":
            return True
        return Path(default_store_url(self.settings)).exists()

    def reader(self, job_id: str | None = None) -> JobManager:
        """The manager for a read: a server that never had a job has no store to open, and
        answers as one without jobs (no folder or database is created by a read).

        :raises JobNotFound: for ``job_id`` when there is no store yet.
        """
        if not self.started and not self.store_exists():
            raise JobNotFound(job_id or "")
        return self.manager()

    def manager(self) -> JobManager:
        with self._lock:
            if self._manager is None:
                self._manager = _start_manager(self.settings, self.service)
                workers.on_worker_stop(self.close)
            return self._manager

    def close(self) -> None:
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()


def _start_manager(settings: ServerSettings, service: InferenceService) -> JobManager:
    # Imported here: the jobs need pandas and pyarrow, which a server without jobs never loads.
    try:
        from ..jobs.manager import JobManager
    except ImportError as exc:
        raise ConfigError(
            f"Batch jobs need the jobs extra ({exc.name} is missing): "
            "pip install 'modelserve[jobs]'"
        ) from None

    manager = JobManager(settings, service)
    if settings.jobs_backend == "celery":
        from ..jobs.celery_app import CeleryBackend

        backend: Any = CeleryBackend(manager)
    else:
        from ..jobs.embedded import EmbeddedExecutor

        backend = EmbeddedExecutor(manager)
    backend.start()
    manager.start(backend)
    return manager


def get_jobs() -> JobsExtension:
    ext: JobsExtension = current_app.extensions[EXTENSION_KEY]
    return ext


def _owner() -> str:
    """Whose jobs these are: the key's (token's) name, or ``""`` with authentication off."""
    principal = current_principal()
    return principal.name if principal is not None else ""


def _links(job: Job) -> dict[str, str]:
    return {
        "self": url_for("jobs.get_job", job_id=job.id),
        "result": url_for("jobs.job_result", job_id=job.id),
        "errors": url_for("jobs.job_errors", job_id=job.id),
    }


def _describe(job: Job) -> dict[str, Any]:
    return {**job.describe(), "links": _links(job)}


def _option(body: dict[str, Any], name: str) -> str | None:
    value = request.args.get(name)
    if value is None:
        value = request.form.get(name) if request.mimetype == "multipart/form-data" else None
    if value is None and name in body:
        value = body[name]
    if value is None or value == "":
        return None
    return str(value)


@bp.post("/jobs")
@bp.post("/models/<name>/jobs")
@bp.post("/models/<name>/versions/<int:version>/jobs")
def submit_job(name: str | None = None, version: int | None = None) -> Response:
    """Queue a job: a file (multipart field ``file``, or the raw body as ``text/csv``,
    ``application/x-ndjson`` or Parquet), or ``{"instances": [...]}``; answers 202."""
    ext = get_jobs()
    # Uploads stream to disk: they may be larger than the request limit of online calls.
    request.max_content_length = ext.settings.jobs_max_upload
    mimetype = request.mimetype
    body: dict[str, Any] = {}
    if mimetype == "multipart/form-data":
        upload = request.files.get(FILE_FIELD)
        if upload is None:
            sent = sorted(set(request.files) | set(request.form))
            got = f" (got field(s): {', '.join(sent)})" if sent else ""
            raise InvalidInput(
                f"No file in multipart field {FILE_FIELD!r}{got}",
                [{"path": FILE_FIELD, "message": "is required"}],
            )
        fmt = _option(body, "format") or _detect(upload.filename, upload.mimetype)
        writer = _copier(upload.stream)
    elif mimetype == "application/json":
        body = _json_instances()
        fmt = "jsonl"
        writer = _instances_writer(body["instances"])
    elif mimetype in RAW_TYPES or mimetype == "application/octet-stream":
        fmt = _option(body, "format") or RAW_TYPES.get(mimetype) or ""
        if not fmt:
            raise UnsupportedMediaType(
                "An application/octet-stream body needs ?format=csv, jsonl or parquet"
            )
        writer = _copier(request.stream)
    else:
        raise UnsupportedMediaType(
            f"Send the input as multipart/form-data (field {FILE_FIELD!r}), as a text/csv, "
            "application/x-ndjson or application/vnd.apache.parquet body, or as JSON "
            f'{{"instances": [...]}} (got Content-Type {mimetype or "none"})',
            [{"path": "Content-Type", "message": f"{mimetype or 'none'} is not supported here"}],
        )
    if fmt not in MEDIA_TYPES:
        raise UnsupportedMediaType(f"Unknown format {fmt!r}: use one of {', '.join(MEDIA_TYPES)}")
    job = ext.manager().submit(
        _owner(),
        name,
        version,
        fmt,
        writer,
        output_format=_option(body, "output_format"),
        id_column=_option(body, "id_column"),
        error_budget=_float_option(body, "error_budget"),
    )
    response = json_response(_describe(job), 202)
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    return response


def _detect(filename: str | None, content_type: str | None) -> str:
    from ..jobs.formats import detect_format

    fmt: str = detect_format(filename, content_type)
    return fmt


def _float_option(body: dict[str, Any], name: str) -> float | None:
    value = _option(body, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number from 0 to 1, got {value!r}") from None


def _copier(stream: IO[bytes]) -> Any:
    def write(path: Path) -> int:
        with path.open("wb") as out:
            shutil.copyfileobj(stream, out, COPY_BUFFER)
            return out.tell()

    return write


def _json_instances() -> dict[str, Any]:
    try:
        body = orjson.loads(request_body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"The body is not valid JSON: {exc}") from None
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(
            'Send {"instances": [{...}, ...]}: a non-empty list of objects of named features',
            [{"path": "instances", "message": "is required (a non-empty list)"}],
        )
    bad = next((i for i, row in enumerate(instances) if not isinstance(row, dict)), None)
    if bad is not None:
        raise InvalidInput(
            "Every instance of a job must be an object of named features",
            [{"path": f"instances[{bad}]", "message": "is not an object"}],
        )
    return dict(body)


def _instances_writer(instances: list[dict[str, Any]]) -> Any:
    def write(path: Path) -> int:
        with path.open("wb") as out:
            for row in instances:
                out.write(orjson.dumps(row) + b"\n")
            return out.tell()

    return write


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {value!r}") from None
    if number < 0:
        raise InvalidInput(f"{name} must not be negative")
    return number


@bp.get("/jobs")
def list_jobs() -> Response:
    """This key's jobs, newest first: ``?limit=`` (at most 1000), ``?offset=``, ``?state=``."""
    limit, offset = _int_arg("limit", 50), _int_arg("offset", 0)
    ext = get_jobs()
    if ext.store_exists() or ext.started:
        jobs, total = ext.manager().page(_owner(), limit, offset, request.args.get("state"))
    else:
        jobs, total = [], 0
    limit = max(1, min(limit, MAX_PAGE))
    following = offset + len(jobs)
    return json_response(
        {
            "jobs": [_describe(job) for job in jobs],
            "total": total,
            "limit": limit,
            "offset": offset,
            "next": (
                url_for("jobs.list_jobs", limit=limit, offset=following, **_state_arg())
                if following < total
                else None
            ),
        }
    )


def _state_arg() -> dict[str, Any]:
    state = request.args.get("state")
    return {"state": state} if state else {}


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """State, rows done/total, rows/s, timing and error of one job."""
    return json_response(_describe(get_jobs().reader(job_id).get(job_id, _owner())))


@bp.get("/jobs/<job_id>/result")
def job_result(job_id: str) -> Response:
    """The predictions, streamed: the job's output format, or ``?format=csv|jsonl|parquet``."""
    job, fmt, chunks = (
        get_jobs().reader(job_id).result(job_id, _owner(), request.args.get("format"))
    )
    response = Response(chunks, mimetype=MEDIA_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{job.id}.{fmt}"'
    return response


@bp.get("/jobs/<job_id>/errors")
def job_errors(job_id: str) -> Response:
    """The rows rejected so far and why, in row order: ``?limit=`` (at most 1000),
    ``?offset=``."""
    limit, offset = _int_arg("limit", 1000), _int_arg("offset", 0)
    job, errors = get_jobs().reader(job_id).errors(job_id, _owner(), limit, offset)
    return json_response(
        {"id": job.id, "total": job.rows_failed, "offset": offset, "errors": errors}
    )


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel a queued or running job; 409 once it finished."""
    return json_response(_describe(get_jobs().reader(job_id).cancel(job_id, _owner())))


def init_app(app: Flask, service: InferenceService) -> None:
    """Register the routes; start the backend now if a store exists (jobs to resume)."""
    ext = JobsExtension(service.settings, service)
    app.extensions[EXTENSION_KEY] = ext
    app.register_blueprint(bp)
    if ext.store_exists():
        try:
            ext.manager()
        except ModelServeError as exc:
            # Online predictions do not need the job store: serve them, and answer job
            # requests 503 until the store can be reached (each one tries again).
            logger.warning("batch jobs are unavailable for now: %s", exc.message)
