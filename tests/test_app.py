"""create_app wiring: sessions stay available for browsers while API calls skip them."""

from __future__ import annotations

from flask import Flask
from flask import session

from modelserve.app import LazySessionInterface


def test_sessions_open_only_for_requests_with_the_cookie(app: Flask) -> None:
    assert isinstance(app.session_interface, LazySessionInterface)

    @app.get("/_visits")  # registered before the first request on this app
    def visits() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert client.get("/_visits").get_data(as_text=True) == "1"
    assert client.get("/_visits").get_data(as_text=True) == "2"  # the signed cookie round-trips
    plain = app.test_client(use_cookies=False)
    resp = plain.get("/health")
    assert resp.status_code == 200
    assert "Set-Cookie" not in resp.headers and "Vary" not in resp.headers
