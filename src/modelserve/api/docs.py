"""``GET /docs``: Swagger UI over ``/openapi.json``, served from this server's own files.

The page loads nothing from another origin: Swagger UI's files come from the installed
``flask-swagger-ui`` package (its ``dist`` folder; Swagger UI 5, the first to render
OpenAPI 3.1), under ``/docs/static/``, next to this page's own script (Swagger UI's stock
``index.html`` starts it with an inline script, which the CSP below forbids).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from flask import Blueprint
from flask import Response
from flask import render_template
from flask import send_from_directory
from werkzeug.exceptions import NotFound

bp = Blueprint("docs", __name__)

#: Stricter than the default CSP of ``api/headers.py``: nothing but this origin, not even
#: for connections, fonts or frames; ``data:`` images are Swagger UI's CSS icons.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

#: The only files of Swagger UI's distribution that are served.
SWAGGER_FILES = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"}
)
#: This page's own files (``static/docs/``).
OWN_FILES = frozenset({"docs.js", "docs.css"})

_OWN_FOLDER = Path(__file__).resolve().parents[1] / "static" / "docs"
#: A day: the files change only with an upgrade, and the page links them by version.
_MAX_AGE = 86400


@functools.cache
def swagger_folder() -> Path | None:
    """Swagger UI's ``dist`` folder, or ``None`` when flask-swagger-ui is not installed."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "dist"
    return folder if folder.is_dir() else None


@functools.cache
def swagger_version() -> str:
    folder = swagger_folder()
    version = folder / "VERSION" if folder is not None else None
    if version is not None and version.is_file():
        return version.read_text(encoding="utf-8").strip()
    return "unknown"


@bp.get("/docs")
def index() -> Response:
    """Swagger UI: browse the API, and call it with a key entered under Authorize."""
    if swagger_folder() is None:
        raise NotFound("Swagger UI is not installed: pip install flask-swagger-ui")
    response = Response(
        render_template("docs/index.html", swagger_version=swagger_version()),
        mimetype="text/html",
    )
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/docs/static/<path:filename>")
def asset(filename: str) -> Response:
    """A file of the docs page: Swagger UI's, or the page's own script and style."""
    if filename in OWN_FILES:
        folder: Path | None = _OWN_FOLDER
    elif filename in SWAGGER_FILES:
        folder = swagger_folder()
    else:
        folder = None
    if folder is None:
        raise NotFound(f"No docs file {filename!r}")
    return send_from_directory(folder, filename, max_age=_MAX_AGE)
