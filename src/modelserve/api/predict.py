"""Seed-compatible prediction routes, on the default model and per model/version."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from ..codecs import tables
from ..errors import InvalidInput
from ..errors import UnsupportedMediaType
from ._handlers import get_handlers
from ._json import json_body
from ._json import json_response
from ._json import request_body

bp = Blueprint("predict", __name__)

#: The multipart field the seed's ``/predict_image`` reads the image file from.
IMAGE_FIELD = "image"


@bp.post("/predict")
@bp.post("/models/<name>/predict")
@bp.post("/models/<name>/versions/<int:version>/predict")
def predict(name: str | None = None, version: int | None = None) -> Response:
    """Score one object of named features."""
    return json_response(get_handlers().seed.predict_one(name, version, json_body()))


@bp.post("/predict_batch")
@bp.post("/models/<name>/predict_batch")
@bp.post("/models/<name>/versions/<int:version>/predict_batch")
def predict_batch(name: str | None = None, version: int | None = None) -> Response:
    """Score ``{"instances": [...]}`` (objects of named features or lists in feature order),
    or a table: Arrow IPC stream, Parquet or ``.npy`` (see ``codecs/tables.py``).

    ``Accept`` picks the answer's format (JSON unless a table type is preferred);
    ``?format=columns`` (or ``"format": "columns"`` in a JSON body) answers JSON as columns.
    """
    content_type = _batch_type()
    body = json_body() if content_type == tables.JSON else request_body()
    accept = request.accept_mimetypes.best_match(tables.ANSWER_TYPES, default=tables.JSON)
    fmt = request.args.get("format", "rows")
    if fmt not in ("rows", "columns"):
        raise InvalidInput(
            f'format must be "rows" or "columns", got "{fmt}"',
            [{"path": "format", "message": f'is "{fmt}", not "rows" or "columns"'}],
        )
    answer = get_handlers().seed.predict_batch(
        name, version, body, content_type, accept, fmt == "columns", written=True
    )
    if isinstance(answer, bytes):
        return Response(answer, mimetype=accept)
    return json_response(answer)


def _batch_type() -> str:
    """The batch body's format: JSON, or one of the table types; 415 for anything else."""
    mimetype = request.mimetype
    table = tables.TABLE_TYPES.get(mimetype)
    if table is not None:
        return table
    if mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        return tables.JSON
    shown = mimetype or "none"
    raise UnsupportedMediaType(
        f"Content-Type must be application/json or a table: {', '.join(tables.TABLE_TYPES)} "
        f"(got {shown})",
        [{"path": "Content-Type", "message": f"{shown} is not supported here"}],
    )


@bp.post("/predict_image")
@bp.post("/models/<name>/predict_image")
@bp.post("/models/<name>/versions/<int:version>/predict_image")
def predict_image(name: str | None = None, version: int | None = None) -> Response:
    """Classify the image file(s) in multipart field ``image``; several files are a batch.

    A raw body with an ``image/*`` content type is accepted too (``curl --data-binary``).
    """
    return json_response(get_handlers().images.classify(name, version, _uploaded_images()))


@bp.post("/predict_image_base64")
@bp.post("/models/<name>/predict_image_base64")
@bp.post("/models/<name>/versions/<int:version>/predict_image_base64")
def predict_image_base64(name: str | None = None, version: int | None = None) -> Response:
    """Classify ``{"image": "<base64 or data: URL>"}`` (or ``{"images": [...]}``)."""
    return json_response(get_handlers().images.classify_base64(name, version, json_body()))


def _uploaded_images() -> list[bytes]:
    """The bytes of every uploaded image, or a 400/415 that says how to send one."""
    mimetype = request.mimetype
    if mimetype.startswith("image/"):
        return [request_body()]
    if mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send the image as multipart/form-data in field {IMAGE_FIELD!r} "
            f"(got Content-Type {mimetype or 'none'})",
            [{"path": "Content-Type", "message": f"{mimetype or 'none'} is not supported here"}],
        )
    # Reading request.files parses the body; werkzeug raises 413 there for bodies over
    # MAX_CONTENT_LENGTH, before any image is decoded.
    files = request.files.getlist(IMAGE_FIELD)
    if not files:
        sent = sorted(set(request.files) | set(request.form))
        got = f" (got field(s): {', '.join(sent)})" if sent else ""
        raise InvalidInput(
            f"No file in multipart field {IMAGE_FIELD!r}{got}",
            [{"path": IMAGE_FIELD, "message": "is required"}],
        )
    return [f.read() for f in files]
