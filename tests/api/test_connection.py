"""Keep-alive after an early error: unread request bodies are drained or the connection closes."""

from __future__ import annotations

import http.client
import io
import shutil
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelserve.api._connection import BodyGuard
from modelserve.demo_digits import load_split
from modelserve.demo_digits import render_digit

from ..conftest import LiveServer
from ..conftest import running_server
from ..images import encode
from ..images import png_header_only

#: Above gunicorn's own 64 KiB drain, so a body under it proves that the guard drained it.
LIMIT = 256 * 1024


# -- the middleware on its own ----------------------------------------------------------------


def reading_app(amount: int | None) -> Any:
    """A WSGI app that reads ``amount`` bytes of the body (all with ``None``), then answers."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        if amount is None:
            stream.read()
        elif amount:
            stream.read(amount)
        start_response("400 Bad Request", [("Content-Length", "2")])
        return [b"no"]

    return app


def call(app: Any, body: bytes, chunked: bool = False) -> tuple[list[tuple[str, str]], io.BytesIO]:
    stream = io.BytesIO(body)
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "wsgi.input": stream}
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    seen: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.extend(headers)

    b"".join(BodyGuard(app, drain_limit=100)(environ, start_response))
    return seen, stream


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("amount", [None, 0, 10])
def test_a_small_unread_rest_is_drained_and_the_connection_kept(
    amount: int | None, chunked: bool
) -> None:
    headers, stream = call(reading_app(amount), b"x" * 100, chunked)
    assert ("Connection", "close") not in headers
    assert stream.tell() == 100  # nothing left on the "socket"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_large_unread_rest_closes_the_connection(chunked: bool) -> None:
    headers, stream = call(reading_app(10), b"x" * 1000, chunked)
    assert ("Connection", "close") in headers
    # With a Content-Length the guard knows it is too large and reads nothing more.
    assert stream.tell() == (10 if not chunked else 10 + 101)


def test_gunicorn_is_told_to_close_through_its_response_object() -> None:
    class FakeGunicornResponse:
        closed = False

        def force_close(self) -> None:
            self.closed = True

        def start_response(self, status: str, headers: Any, exc_info: Any = None) -> None:
            pass

    resp = FakeGunicornResponse()
    environ = {"CONTENT_LENGTH": "1000", "wsgi.input": io.BytesIO(b"x" * 1000)}
    b"".join(BodyGuard(reading_app(0), drain_limit=100)(environ, resp.start_response))
    assert resp.closed


# -- real servers on one keep-alive connection ------------------------------------------------


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def server(
    request: pytest.FixtureRequest, demo_repo: Path, tmp_path_factory: Any
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("keepalive")
    shutil.copytree(demo_repo / "digits-onnx", root / "digits-onnx")
    args = [str(root), "--workers", "2", "--server", request.param]
    env = {
        "MODELSERVE_MAX_CONTENT_LENGTH": str(LIMIT),
        "MODELSERVE_MAX_IMAGE_PIXELS": "1000000",
        "MODELSERVE_DEFAULT_MODEL": "digits-onnx",
    }
    with running_server(args, env) as live:
        yield live


def multipart(data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def digit() -> bytes:
    _, x_test, _, _ = load_split()
    return encode(render_digit(x_test[0], 4), "PNG")


def post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> Any:
    conn.request("POST", "/predict_image", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response


CASES = {
    # refused on Content-Length, nothing read: too large to drain, so the connection closes
    "upload over the limit": (multipart(b"\0" * (4 * LIMIT)), 413, "close"),
    "raw image over the limit": (
        (b"\0" * (4 * LIMIT), {"Content-Type": "image/png"}),
        413,
        "close",
    ),
    # the body was read (that is how the bomb was found): the connection stays open
    "pixel bomb": (multipart(png_header_only(20_000, 20_000)), 413, "keep"),
    "raw pixel bomb": (
        (png_header_only(20_000, 20_000), {"Content-Type": "image/png"}),
        413,
        "keep",
    ),
    # refused before reading, but small: drained, the connection stays open
    "wrong content type": ((b"x" * 5000, {"Content-Type": "text/plain"}), 415, "keep"),
    # refused before reading, under the limit but over gunicorn's 64 KiB: drained by the guard
    "wrong content type, large": (
        (b"x" * (LIMIT - 1), {"Content-Type": "text/plain"}),
        415,
        "keep",
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(CASES))
def test_the_next_request_on_the_connection_succeeds(server: LiveServer, case: str) -> None:
    (body, headers), status, expect = CASES[case]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        first = post(conn, body, headers)
        assert first.status == status
        sock = conn.sock
        if expect == "close":
            assert first.getheader("Connection") == "close"
            assert sock is None  # http.client closed it, as told; the next request reconnects
        else:
            assert (first.getheader("Connection") or "keep-alive").lower() == "keep-alive"
            assert sock is not None
        good, good_headers = multipart(digit())
        second = post(conn, good, good_headers)
        assert second.status == 200
        if expect == "keep":
            assert conn.sock is sock  # the very same connection served the next request
    finally:
        conn.close()
