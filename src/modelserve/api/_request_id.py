"""The id of the request being served, as the prediction log records it."""

from __future__ import annotations

from flask import g
from flask import request

from ..predlog import new_request_id


def request_id() -> str:
    """This request's id: the one the request-id middleware set (``g.request_id``), else the
    client's ``X-Request-ID``, else a new one. Called only for a logged request."""
    rid = g.get("request_id")
    if rid:
        return str(rid)
    return request.headers.get("X-Request-ID") or new_request_id()
