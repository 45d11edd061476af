"""Content negotiation at ``/`` and the page's HTML: browsers get the page, API clients the map."""

from __future__ import annotations

from flask import Request
from flask import Response
from flask import render_template

#: The endpoints that answer the web page to a browser (and their JSON to everyone else).
PAGE_ENDPOINTS = frozenset({"ops.index"})

_HTML = "text/html"
_JSON = "application/json"


def wants_html(request: Request) -> bool:
    """Whether the request asks for HTML before JSON (a browser's navigation does).

    Only an ``Accept`` header that names ``text/html``, at a higher quality than JSON when it
    names JSON too, counts: no header, ``*/*`` (curl, requests), ``application/json`` and
    ``application/json, text/html`` all keep the JSON map.
    """
    accept = request.accept_mimetypes
    named = {value.lower() for value in accept.values()}
    if _HTML not in named:
        return False  # */* or text/* alone: a generic client, not a browser
    html, json = accept.quality(_HTML), accept.quality(_JSON)
    # A client that names JSON too gets HTML only when it prefers it outright.
    return html > json if _JSON in named else html > 0 and html >= json


def is_page_request(request: Request) -> bool:
    """A GET (or HEAD) of a page, negotiated to HTML: public, since the HTML holds no data."""
    return (
        request.endpoint in PAGE_ENDPOINTS
        and request.method in ("GET", "HEAD")
        and wants_html(request)
    )


def render_page() -> Response:
    """The page's HTML shell; the scripts fill it from the JSON API (even the server's version:
    the HTML is public, and says nothing about the server an anonymous client could not see)."""
    response = Response(render_template("web/index.html"), mimetype=_HTML)
    # The HTML is the same for everyone and holds no data, but it may change with the server.
    response.headers["Cache-Control"] = "no-cache"
    return response
