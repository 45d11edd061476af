"""What the OpenAPI document says about each endpoint: its answers, its body, its schemas.

Kept apart from :mod:`.openapi`, which walks the app's routes: this module is the table a new
endpoint is added to (``tests/api/test_openapi.py`` fails for an endpoint missing here), plus
the JSON Schemas of the bodies modelserve sends and accepts. The model-specific request
schemas come from the same generators the codecs validate with (:mod:`..codecs.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal

from ..codecs import tables
from ..codecs.schema import array_schema
from ..codecs.schema import object_schema
from ..jobs.model import MAX_PAGE
from ..jobs.model import MEDIA_TYPES
from ..jobs.model import STATES
from ..serving import ServedVersion
from ..settings import ServerSettings
from .drift import MAX_WINDOW
from .jobs import FILE_FIELD
from .jobs import RAW_TYPES

#: How a route reads its request body (``None``: it reads none).
BodyKind = Literal[
    "seed_one", "seed_batch", "image", "image_base64", "v2_infer", "optional_json", "job_input"
]
ModelKind = Literal["tabular", "image", "tensor"]
ALL_KINDS: tuple[ModelKind, ...] = ("tabular", "image", "tensor")

_REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": json_content(schema)}


@dataclass(frozen=True)
class EndpointDoc:
    """The spec's view of one endpoint, beyond what its rule and view docstring say.

    :param ok: the success response object (of status ``status``).
    :param errors: statuses it answers with the error body, besides those that authentication
        (401, 403) and rate limits (429, 503) add.
    :param others: responses with another body (a 503 health report, a 400 ``ready: false``).
    :param body: how it reads its request body.
    :param kinds: the model kinds that get a path of their own per model and version (their
        request schema then is the model's); empty: only the templated path.
    :param query: its query parameters.
    :param status: the status of ``ok`` (202 for a job queued).
    """

    ok: dict[str, Any]
    errors: tuple[int, ...] = ()
    others: dict[int, dict[str, Any]] = field(default_factory=dict)
    body: BodyKind | None = None
    kinds: tuple[ModelKind, ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    status: int = 200


_MODEL_ERRORS = (404, 503)
#: A scoring route: bad input, unknown or unloaded model, a model that refused, limits.
_SCORING_ERRORS = (400, 404, 413, 415, 422, 503)

#: A job route: the job store may be unreachable for a moment (503, with Retry-After).
_JOB_ERRORS = (404, 503)
_FORMATS = list(MEDIA_TYPES)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _paging(default_limit: int) -> tuple[dict[str, Any], ...]:
    return (
        _query(
            "limit",
            f"Entries per page (default {default_limit}; more than {MAX_PAGE} count as {MAX_PAGE}, "
            "0 as 1)",
            {"type": "integer", "minimum": 0},
        ),
        _query("offset", "Entries to skip (default 0)", {"type": "integer", "minimum": 0}),
    )


#: The options of a submission, as query parameters (or multipart fields, or JSON members).
_JOB_OPTIONS: tuple[dict[str, Any], ...] = (
    _query(
        "format",
        "The input's format, where its file name and content type do not tell "
        "(a raw application/octet-stream body needs it); ignored for JSON instances",
        {"enum": _FORMATS},
    ),
    _query("output_format", "The result's format (default: the input's)", {"enum": _FORMATS}),
    _query(
        "id_column",
        "A column copied into each prediction and each rejected row (not a feature)",
        {"type": "string"},
    ),
    _query(
        "error_budget",
        "The share of rejected rows at which the job fails (default MODELSERVE_JOBS_ERROR_BUDGET)",
        {"type": "number", "minimum": 0, "maximum": 1},
    ),
)

_JOB_ANSWER = _answer("The job", ref("Job"))

_BINARY = {"type": "string", "format": "binary"}

#: A batch's answer: JSON rows or columns, or a table when ``Accept`` prefers one (what
#: ``api/predict.py`` picks among :data:`~..codecs.tables.ANSWER_TYPES`).
_BATCH_ANSWER = {
    "description": "One prediction per instance, in order: JSON rows (the default), JSON "
    'columns (?format=columns or "format": "columns"), or, when Accept prefers a table '
    "type, an Arrow IPC stream or Parquet file (columns prediction, class_name, "
    "probability_<label>; model and version in the schema metadata) or a 1-D .npy array of "
    "the predictions",
    "content": {
        **json_content({"oneOf": [ref("BatchPrediction"), ref("ColumnarBatchPrediction")]}),
        **{media: {"schema": _BINARY} for media in tables.ANSWER_TYPES if media != tables.JSON},
    },
}

_BATCH_QUERY = (
    _query(
        "format",
        'The JSON answer\'s layout: "rows" (one object per instance, the default) or '
        '"columns" (one array per field; also "format": "columns" in a JSON body). '
        "Table answers are columns anyway.",
        {"enum": ["rows", "columns"]},
    ),
)

_READY_ANSWER = _answer("Not ready (the protocol's answer for false)", ref("Ready"))

#: Every endpoint the app serves. An endpoint missing here still appears in the document
#: (from its rule and docstring) with a bare 200, and the test suite names it.
ENDPOINT_DOCS: dict[str, EndpointDoc] = {
    "ops.index": EndpointDoc(
        ok={
            "description": "A map of the API; the web page for a browser (Accept: text/html)",
            "content": {
                **json_content(ref("Index")),
                "text/html": {"schema": {"type": "string"}},
            },
        }
    ),
    "ops.health": EndpointDoc(
        ok=_answer("Every model serves", ref("Health")),
        others={503: _answer("Not ready, or stopping (draining)", ref("Health"))},
    ),
    "ops.list_models": EndpointDoc(ok=_answer("Every model and its versions", ref("ModelList"))),
    "ops.model_metadata": EndpointDoc(
        ok=_answer("The model's metadata", ref("ModelMetadata")),
        errors=_MODEL_ERRORS,
        kinds=ALL_KINDS,
    ),
    "predict.predict": EndpointDoc(
        ok=_answer("The prediction", ref("Prediction")),
        errors=_SCORING_ERRORS,
        body="seed_one",
        kinds=("tabular",),
    ),
    "predict.predict_batch": EndpointDoc(
        ok=_BATCH_ANSWER,
        errors=_SCORING_ERRORS,
        body="seed_batch",
        kinds=("tabular",),
        query=_BATCH_QUERY,
    ),
    "predict.predict_image": EndpointDoc(
        ok=_answer("The class of each image", ref("ImagePrediction")),
        errors=_SCORING_ERRORS,
        body="image",
        kinds=("image",),
    ),
    "predict.predict_image_base64": EndpointDoc(
        ok=_answer("The class of each image", ref("ImagePrediction")),
        errors=_SCORING_ERRORS,
        body="image_base64",
        kinds=("image",),
    ),
    "v2.server_metadata": EndpointDoc(ok=_answer("Server metadata", ref("V2ServerMetadata"))),
    "v2.live": EndpointDoc(ok=_answer("The process serves", ref("Live"))),
    "v2.ready": EndpointDoc(
        ok=_answer("Every model serves", ref("Ready")),
        others={400: _READY_ANSWER, 503: _answer("Stopping (draining)", ref("Ready"))},
    ),
    "v2.model_metadata": EndpointDoc(
        ok=_answer("The model's tensors", ref("V2ModelMetadata")),
        errors=_MODEL_ERRORS,
        kinds=ALL_KINDS,
    ),
    "v2.model_ready": EndpointDoc(
        ok=_answer("The model (version) serves", ref("Ready")),
        errors=(404,),
        others={400: _READY_ANSWER},
        kinds=ALL_KINDS,
    ),
    "v2.infer": EndpointDoc(
        ok={
            "description": "The outputs; binary when the request asked for binary outputs",
            "content": {
                **json_content(ref("V2InferenceResponse")),
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": {
                "Inference-Header-Content-Length": {
                    "description": "Length of the JSON header of a binary answer",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        },
        errors=_SCORING_ERRORS,
        body="v2_infer",
        kinds=ALL_KINDS,
    ),
    "v2.repository_index": EndpointDoc(
        ok=_answer("Every model version on disk and its state", ref("RepositoryIndex"))
    ),
    "v2.repository_load": EndpointDoc(
        ok=_answer("Loaded in every worker", {"type": "object"}),
        errors=(400, 404),
        body="optional_json",
    ),
    "v2.repository_unload": EndpointDoc(
        ok=_answer("Unloaded in every worker", {"type": "object"}),
        errors=(404,),
        body="optional_json",
    ),
    "drift.model_drift": EndpointDoc(
        ok=_answer("The drift report", ref("DriftReport")),
        errors=(400, 404, 409, 503),
        kinds=ALL_KINDS,
        query=(
            {
                "name": "window",
                "in": "query",
                "required": False,
                "description": "Seconds of logged traffic to compare (default 3600)",
                "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW},
            },
        ),
    ),
    "observe.model_stats": EndpointDoc(
        ok=_answer("The model's requests and latency since the start", ref("ModelStats")),
        errors=(404,),
        kinds=ALL_KINDS,
    ),
    "observe.metrics": EndpointDoc(
        ok={
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    ),
    "openapi.spec": EndpointDoc(ok=_answer("This document", {"type": "object"})),
    "docs.index": EndpointDoc(
        ok={"description": "Swagger UI", "content": {"text/html": {"schema": {"type": "string"}}}}
    ),
    "docs.asset": EndpointDoc(
        ok={"description": "A file of Swagger UI", "content": {"*/*": {"schema": {}}}},
        errors=(404,),
    ),
    "static": EndpointDoc(
        ok={"description": "A static file", "content": {"*/*": {"schema": {}}}},
        errors=(404,),
    ),
    "jobs.submit_job": EndpointDoc(
        ok={
            "description": "Queued: the job, whose state to poll at Location",
            "content": json_content(ref("Job")),
            "headers": {
                "Location": {
                    "description": "The job's URL (GET it for its state)",
                    "schema": {"type": "string"},
                }
            },
        },
        status=202,
        # 413: over MODELSERVE_JOBS_MAX_UPLOAD; 415: a content type or format it cannot read.
        errors=(400, 404, 413, 415, 503),
        body="job_input",
        query=_JOB_OPTIONS,
    ),
    "jobs.list_jobs": EndpointDoc(
        ok=_answer("This key's jobs, newest first", ref("JobList")),
        errors=(400, 503),
        query=(
            *_paging(50),
            _query("state", "Only the jobs in this state", {"enum": list(STATES)}),
        ),
    ),
    "jobs.get_job": EndpointDoc(ok=_JOB_ANSWER, errors=_JOB_ERRORS),
    "jobs.cancel_job": EndpointDoc(
        ok=_answer("Cancelled: the job", ref("Job")),
        errors=(404, 409, 503),
    ),
    "jobs.job_result": EndpointDoc(
        ok={
            "description": "The predictions, one row per valid input row in input order "
            "(the id column, row, the prediction columns), streamed",
            "content": {
                MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                MEDIA_TYPES["jsonl"]: {"schema": {"type": "string"}},
                MEDIA_TYPES["parquet"]: {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="<id>.<format>"',
                    "schema": {"type": "string"},
                }
            },
        },
        # 409: the job has not succeeded (yet); 415: an unknown ?format.
        errors=(404, 409, 415, 503),
        query=(
            _query(
                "format",
                "The result's format (default: the job's output format)",
                {"enum": _FORMATS},
            ),
        ),
    ),
    "jobs.job_errors": EndpointDoc(
        ok=_answer("The rows rejected so far (committed chunks), in row order", ref("JobErrors")),
        errors=(400, 404, 503),
        query=_paging(MAX_PAGE),
    ),
}

#: The blueprints' tags, in the order the document lists them (model tags come after ops).
TAG_DESCRIPTIONS = {
    "ops": "Health, the model list and each model's metadata",
    "predict": "The seed routes: named features, batches and images in, predictions out",
    "v2": "The Open Inference Protocol (KServe V2) and its repository extension",
    "drift": "Logged traffic against each version's reference profile",
    "observe": "Prometheus metrics",
    "openapi": "This document",
    "docs": "Swagger UI",
    "static": "Static files",
    "jobs": "Batch jobs: a file (or JSON instances) scored in the background, chunk by chunk",
}

#: The 405 every path answers for a method it does not serve (OpenAPI cannot attach it to an
#: operation, as an operation is a method): listed among the components, named in the text.
METHOD_NOT_ALLOWED = _answer(
    "The path does not serve this method (with an Allow header)", ref("Error")
)

ERROR_DESCRIPTIONS = {
    400: "Invalid input: malformed JSON, schema violations (all listed in details)",
    401: "No credential, or one that is invalid, revoked or expired",
    403: "The credential lacks the route's scope or the model",
    404: "Unknown model, version or job (or no default model)",
    405: "Method not allowed",
    409: "Not in this state: the prediction log is off (MODELSERVE_PREDICTION_LOG), a job's "
    "result before it succeeded, a cancel after it finished",
    413: "The body, the rows or the images are over a configured limit",
    415: "Unsupported Content-Type (or Content-Encoding)",
    422: "The model rejected input that passed validation",
    429: "Rate limit exceeded (see Retry-After)",
    503: "The model is not loaded, the server is busy, or the job store is unreachable "
    "(see Retry-After)",
}

_STRING = {"type": "string"}
_LABEL = {"type": ["number", "string", "boolean"]}
_PROBABILITIES = {"type": ["array", "null"], "items": {"type": "number"}}
_NULLABLE_STRING = {"type": ["string", "null"]}

_TENSOR_METADATA = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": _STRING,
        "datatype": _STRING,
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}

V2_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]

_IMAGE_CLASS = {
    "type": "object",
    "required": ["predicted_class", "class_index", "confidence", "all_probabilities", "top_k"],
    "properties": {
        "instance_id": {"type": "integer"},
        "predicted_class": _STRING,
        "class_index": {"type": "integer"},
        "confidence": {"type": "number"},
        "all_probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
        "top_k": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["class", "index", "probability"],
                "properties": {
                    "class": _STRING,
                    "index": {"type": "integer"},
                    "probability": {"type": "number"},
                },
            },
        },
    },
}


_NULLABLE_INTEGER = {"type": ["integer", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

_JOB = {
    "type": "object",
    "description": "A batch job (jobs/model.py Job.describe, plus links)",
    "required": [
        "id",
        "model",
        "version",
        "state",
        "rows_total",
        "rows_done",
        "rows_failed",
        "chunks_done",
        "rows_per_second",
        "input_format",
        "output_format",
        "id_column",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "elapsed_seconds",
        "error",
        "links",
    ],
    "properties": {
        "id": _STRING,
        "model": _STRING,
        "version": {**_NULLABLE_INTEGER, "description": "Pinned when the job was queued"},
        "state": {"enum": list(STATES)},
        "rows_total": {**_NULLABLE_INTEGER, "description": "Once counted (null: not yet)"},
        "rows_done": {"type": "integer", "description": "Rows of the committed chunks"},
        "rows_failed": {"type": "integer", "description": "Of those, the rejected ones"},
        "chunks_done": {"type": "integer"},
        "rows_per_second": _NULLABLE_NUMBER,
        "input_format": {"enum": _FORMATS},
        "output_format": {"enum": _FORMATS},
        "id_column": _NULLABLE_STRING,
        "attempts": {"type": "integer", "description": "Starts (a dead worker's job restarts)"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "elapsed_seconds": _NULLABLE_NUMBER,
        "error": {**_NULLABLE_STRING, "description": "Why it failed"},
        "links": {
            "type": "object",
            "required": ["self", "result", "errors"],
            "properties": {"self": _STRING, "result": _STRING, "errors": _STRING},
        },
    },
}


def component_schemas() -> dict[str, Any]:
    """The schemas every document shares (model-specific ones are inlined where used)."""
    return {
        "Error": {
            "type": "object",
            "description": "The one error body of every route (api/errors.py)",
            "required": ["error", "type", "status"],
            "properties": {
                "error": {"type": "string", "description": "What went wrong, for people"},
                "type": {"type": "string", "description": "InvalidInput, ModelNotFound, ..."},
                "status": {"const": "error"},
                "details": {
                    "type": "array",
                    "description": "One entry per problem, with the field's path",
                    "items": {
                        "type": "object",
                        "properties": {"path": _STRING, "message": _STRING},
                    },
                },
            },
        },
        "Index": {
            "type": "object",
            "required": ["name", "version", "models", "routes"],
            "properties": {
                "name": _STRING,
                "version": _STRING,
                "models": {"type": "array", "items": _STRING},
                "default_model": _NULLABLE_STRING,
                "routes": {"type": "object", "additionalProperties": _STRING},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "models", "uptime_seconds"],
            "properties": {
                "status": {"enum": ["healthy", "unhealthy", "draining"]},
                "models": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "version", "loaded"],
                        "properties": {
                            "name": _STRING,
                            "version": _NULLABLE_STRING,
                            "loaded": {"type": "boolean"},
                            "failed_versions": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
                "default_model": _NULLABLE_STRING,
                "uptime_seconds": {"type": "number"},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["models"],
            "properties": {
                "models": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "default_version", "versions"],
                        "properties": {
                            "name": _STRING,
                            "default_version": _NULLABLE_STRING,
                            "versions": {"type": "array", "items": {"type": "object"}},
                            "task": _NULLABLE_STRING,
                        },
                    },
                }
            },
        },
        "ModelMetadata": {
            "type": "object",
            "description": "Features, classes, outputs, runtime, sha256, input JSON Schemas",
            "required": ["name", "version", "versions", "task", "inputs"],
            "properties": {
                "name": _STRING,
                "version": _STRING,
                "versions": {"type": "array", "items": _STRING},
                "description": _NULLABLE_STRING,
                "task": _NULLABLE_STRING,
                "inputs": {"type": "array", "items": {"type": "object"}},
                "classes": {"type": ["array", "null"]},
                "class_names": {"type": ["array", "null"], "items": _STRING},
                "input_schema": {"type": ["object", "null"]},
                "input_schema_array": {"type": ["object", "null"]},
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["prediction", "probability", "status", "model", "version"],
            "properties": {
                "prediction": _LABEL,
                "probability": _PROBABILITIES,
                "class_name": _STRING,
                "status": {"const": "success"},
                "model": _STRING,
                "version": _STRING,
            },
        },
        "BatchPrediction": {
            "type": "object",
            "required": ["predictions", "status", "model", "version"],
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["instance_id", "prediction", "probability"],
                        "properties": {
                            "instance_id": {"type": "integer"},
                            "prediction": _LABEL,
                            "probability": _PROBABILITIES,
                            "class_name": _STRING,
                        },
                    },
                },
                "status": {"const": "success"},
                "model": _STRING,
                "version": _STRING,
            },
        },
        "ColumnarBatchPrediction": {
            "description": "A batch's answer as one array per field, in row order",
            "type": "object",
            "required": ["format", "predictions", "probabilities", "status", "model", "version"],
            "properties": {
                "format": {"const": "columns"},
                "predictions": {"type": "array", "items": _LABEL},
                "class_names": {
                    "type": "array",
                    "items": _STRING,
                    "description": "When the model names its classes",
                },
                "probabilities": {
                    "type": ["object", "null"],
                    "description": "Each class's column, keyed by its label as JSON writes it, "
                    "in the order of classes; null for regressors",
                    "additionalProperties": {"type": "array", "items": {"type": "number"}},
                },
                "status": {"const": "success"},
                "model": _STRING,
                "version": _STRING,
            },
        },
        "ImagePrediction": {
            "description": "One image: its class; several: {predictions: [...]}, in order",
            "type": "object",
            "required": ["model", "version", "status"],
            "properties": {
                **_IMAGE_CLASS["properties"],  # type: ignore[dict-item]
                "predictions": {"type": "array", "items": _IMAGE_CLASS},
                "model": _STRING,
                "version": _STRING,
                "status": {"const": "success"},
            },
            "anyOf": [{"required": _IMAGE_CLASS["required"]}, {"required": ["predictions"]}],
        },
        "V2ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": _STRING,
                "version": _STRING,
                "extensions": {"type": "array", "items": _STRING},
            },
        },
        "Live": {
            "type": "object",
            "required": ["live"],
            "properties": {"live": {"type": "boolean"}},
        },
        "Ready": {
            "type": "object",
            "required": ["ready"],
            "properties": {"ready": {"type": "boolean"}, "name": _STRING},
        },
        "V2ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": _STRING,
                "versions": {"type": "array", "items": _STRING},
                "platform": _STRING,
                "inputs": {"type": "array", "items": _TENSOR_METADATA},
                "outputs": {"type": "array", "items": _TENSOR_METADATA},
            },
        },
        "V2InferenceRequest": v2_request_schema(None),
        "V2InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": _STRING,
                "model_version": _STRING,
                "id": _STRING,
                "parameters": {"type": "object"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "datatype", "shape"],
                        "properties": {
                            "name": _STRING,
                            "datatype": {"enum": V2_DATATYPES},
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "parameters": {"type": "object"},
                            "data": {"type": "array"},
                        },
                    },
                },
            },
        },
        "RepositoryIndex": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "state"],
                "properties": {
                    "name": _STRING,
                    "version": _STRING,
                    "state": {"enum": ["READY", "UNAVAILABLE"]},
                    "reason": _STRING,
                },
            },
        },
        "ModelStats": {
            "type": "object",
            "required": ["model", "requests", "errors", "by_status", "by_version", "latency", "ts"],
            "properties": {
                "model": _STRING,
                "requests": {"type": "integer"},
                "errors": {"type": "integer"},
                "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
                "by_version": {"type": "object", "additionalProperties": {"type": "integer"}},
                "latency": {
                    "type": "object",
                    "required": ["count", "buckets"],
                    "properties": {
                        "count": {"type": "integer"},
                        "mean_ms": {"type": ["number", "null"]},
                        "buckets": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "le": {"type": ["number", "null"]},
                                    "count": {"type": "integer"},
                                },
                            },
                        },
                    },
                    "additionalProperties": {"type": ["number", "null"]},
                },
                "ts": {"type": "number"},
            },
        },
        "Job": _JOB,
        "JobList": {
            "type": "object",
            "required": ["jobs", "total", "limit", "offset", "next"],
            "properties": {
                "jobs": {"type": "array", "items": ref("Job")},
                "total": {"type": "integer", "description": "This key's jobs (in the state)"},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
                "next": {**_NULLABLE_STRING, "description": "The next page's URL, if any"},
            },
        },
        "JobErrors": {
            "type": "object",
            "required": ["id", "total", "offset", "errors"],
            "properties": {
                "id": _STRING,
                "total": {"type": "integer", "description": "Rows rejected so far"},
                "offset": {"type": "integer"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["row", "id", "reason"],
                        "properties": {
                            "row": {"type": "integer", "description": "0-based input row"},
                            "id": {"description": "The row's id column value, or null"},
                            "reason": _STRING,
                        },
                    },
                },
            },
        },
        "DriftReport": {
            "type": "object",
            "description": "PSI, histograms and flags per feature and for the predictions",
        },
    }


def v2_request_schema(sv: ServedVersion | None) -> dict[str, Any]:
    """The V2 inference request; for a version, its input and output names."""
    input_name: dict[str, Any] = dict(_STRING)
    output_name: dict[str, Any] = dict(_STRING)
    if sv is not None:
        inputs, outputs = sv.v2.metadata()
        input_name["enum"] = [t["name"] for t in inputs]
        output_name["enum"] = [t["name"] for t in outputs]
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": _STRING,
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": input_name,
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "datatype": {"enum": V2_DATATYPES},
                        "parameters": {"type": "object"},
                        "data": {"description": "Row-major values, flat or nested"},
                    },
                },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": output_name, "parameters": {"type": "object"}},
                },
            },
        },
    }


def to_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """A draft-07 schema of :mod:`..codecs.schema` as OpenAPI 3.1's JSON Schema (2020-12):
    no ``$schema``, and a tuple's ``items: [...]`` / ``additionalItems`` become
    ``prefixItems`` / ``items``."""
    out = {k: v for k, v in schema.items() if k != "$schema"}
    items = out.get("items")
    if isinstance(items, list):
        out["prefixItems"] = [to_openapi(s) for s in items]
        if "additionalItems" in out:
            extra = out.pop("additionalItems")
            out["items"] = to_openapi(extra) if isinstance(extra, dict) else extra
        else:
            del out["items"]
    elif isinstance(items, dict):
        out["items"] = to_openapi(items)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: to_openapi(v) for k, v in out["properties"].items()}
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [to_openapi(s) for s in out[key]]
    return out


def request_body(
    kind: BodyKind, sv: ServedVersion | None, settings: ServerSettings
) -> dict[str, Any]:
    """The ``requestBody`` of a route; with a version, that version's input schemas."""
    if kind == "optional_json":
        return {"required": False, "content": json_content({"type": "object"})}
    if kind == "job_input":
        return job_request_body()
    if kind == "v2_infer":
        schema = v2_request_schema(sv) if sv is not None else ref("V2InferenceRequest")
        return {
            "required": True,
            "description": "JSON, or a JSON header followed by binary tensors (the header's "
            "length in Inference-Header-Content-Length)",
            "content": {
                **json_content(schema),
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    if kind == "image":
        binary = {"type": "string", "format": "binary"}
        return {
            "required": True,
            "description": "The image file(s) in field image (repeat it for a batch), or a "
            "raw body with an image/* content type",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {"image": {"type": "array", "items": binary}},
                    }
                },
                "image/*": {"schema": binary},
            },
        }
    if kind == "image_base64":
        return {
            "required": True,
            "content": json_content(
                {
                    "type": "object",
                    "description": "Base64 or data: URLs",
                    "properties": {
                        "image": _STRING,
                        "images": {"type": "array", "minItems": 1, "items": _STRING},
                    },
                    "anyOf": [{"required": ["image"]}, {"required": ["images"]}],
                }
            ),
        }
    one: dict[str, Any] = {"type": "object", "description": "Named features (see input_schema)"}
    row: dict[str, Any] = {"type": "array", "description": "Values in feature order"}
    if sv is not None:
        sig = sv.signature
        longest = settings.max_string_length
        one = to_openapi(object_schema(sig, settings.allow_extra_fields, longest))
        row = to_openapi(array_schema(sig, longest))
    if kind == "seed_one":
        return {"required": True, "content": json_content(one)}
    batch = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_batch_rows,
                "items": {"anyOf": [one, row]},
            },
            "format": {
                "enum": ["rows", "columns"],
                "description": "The answer's layout (default rows)",
            },
        },
    }
    return {
        "required": True,
        "description": "JSON instances, or a table: an Arrow IPC stream or a Parquet file of "
        "one column per feature, by name (needs the arrow extra; 415 without it), or a .npy "
        "2-D float or integer array [rows, features] in the model's feature order. Any other "
        "Content-Type is a 415.",
        "content": {
            **json_content(batch),
            **{media: {"schema": _BINARY} for media in tables.TABLE_TYPES},
        },
    }


def job_request_body() -> dict[str, Any]:
    """A job's input: a multipart file, a raw CSV, JSON lines or Parquet body, or JSON
    instances (what ``api/jobs.py`` reads)."""
    text = {"type": "string"}
    binary = {"type": "string", "format": "binary"}
    option = {p["name"]: p["schema"] for p in _JOB_OPTIONS}
    raw: dict[str, Any] = {
        media: {"schema": binary if fmt == "parquet" else text} for media, fmt in RAW_TYPES.items()
    }
    return {
        "required": True,
        "description": f"The file in multipart field {FILE_FIELD} (its format from its name "
        "or content type, or the format field), or the raw file as the body (CSV with a "
        "header row, JSON lines of objects, or Parquet; application/octet-stream with "
        "?format=), or JSON instances. It is streamed to disk, up to "
        "MODELSERVE_JOBS_MAX_UPLOAD (not MODELSERVE_MAX_CONTENT_LENGTH).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {FILE_FIELD: binary, **option},
                }
            },
            **raw,
            "application/octet-stream": {"schema": binary},
            **json_content(
                {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "description": "Objects of named features",
                            "items": {"type": "object"},
                        },
                        "output_format": option["output_format"],
                        "id_column": option["id_column"],
                        "error_budget": option["error_budget"],
                    },
                }
            ),
        },
    }
