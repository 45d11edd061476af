"""Reading a request's whole body: one sized read where werkzeug's get_data reads 8 KiB at a
time, with the same results for short reads, chunked and empty bodies and early ends."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Request
from werkzeug.exceptions import ClientDisconnected
from werkzeug.exceptions import RequestEntityTooLarge

from modelserve.api._json import request_body


class Trickle:
    """A wsgi.input that hands out at most ``step`` bytes a sized read, as sockets may
    (``read()`` reads to the end, as PEP 3333's input must)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self.step = step
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(-1 if size < 0 else min(size, self.step))

    def readline(self, size: int = -1) -> bytes:
        return self._data.readline(size)


def request(stream: Any, length: int | None, max_length: int | None = None) -> Request:
    environ = {
        "REQUEST_METHOD": "POST",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "PATH_INFO": "/predict_batch",
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/x-npy",
        "wsgi.input": stream,
    }
    if length is None:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(length)
    req = Request(environ)
    req.max_content_length = max_length
    return req


BODY = bytes(range(256)) * 10_000  # 2.56 MB


def test_a_sized_body_is_read_whole_in_one_read() -> None:
    stream = Trickle(BODY, len(BODY))
    assert request_body(request(stream, len(BODY))) == BODY
    assert stream.reads == 1


def test_short_reads_are_joined_to_the_whole_body() -> None:
    stream = Trickle(BODY, 65_000)
    assert request_body(request(stream, len(BODY))) == BODY
    assert stream.reads == -(-len(BODY) // 65_000)


def test_bytes_past_the_length_are_not_read() -> None:
    assert request_body(request(Trickle(BODY, 4096), 1000)) == BODY[:1000]


def test_chunked_and_empty_bodies_read_as_werkzeug_reads_them() -> None:
    assert request_body(request(Trickle(BODY, 4096), None)) == BODY
    assert request_body(request(Trickle(b"", 4096), 0)) == b""


def test_a_client_that_stops_early_is_a_disconnect_not_a_short_body() -> None:
    with pytest.raises(ClientDisconnected):
        request_body(request(Trickle(BODY[:5000], 4096), len(BODY)))


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    stream = Trickle(BODY, 4096)
    with pytest.raises(RequestEntityTooLarge):
        request_body(request(stream, len(BODY), max_length=1024))
    assert stream.reads == 0
