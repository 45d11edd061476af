"""The id of the request being served, as the prediction log records it."""

from __future__ import annotations

from flask import request

from .. import telemetry


def request_id() -> str:
    """This request's id: the one :mod:`modelserve.api.observe` gave it (kept from the
    client's ``X-Request-ID`` when sane), else a new one. Called only for a logged request."""
    record = telemetry.current()
    if record is not None:
        return record.request_id
    return request.headers.get("X-Request-ID") or telemetry.new_request_id()
