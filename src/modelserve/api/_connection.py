"""Keep-alive hygiene: never answer with request-body bytes left unread on the connection.

A request refused before its body is read (a 413 on ``Content-Length``, a 415 for the wrong
content type, a 404 on an unknown model) leaves the body on the socket. The server then has
to guess: gunicorn drains at most 64 KiB and otherwise closes the connection *after* having
answered ``Connection: keep-alive``, and granian does not always say that it will close, so
the client's next request on that connection fails with ``RemoteDisconnected`` or a broken
pipe. :class:`BodyGuard` decides once, for every route, when the response starts:

- a body that was read to its end: nothing to do;
- the rest is at most ``drain_limit`` bytes (the ``MAX_CONTENT_LENGTH`` the server accepts
  anyway): it is read and discarded, and the connection stays usable;
- more than that (an upload over the limit): it is not read, because a limit that makes the
  server read the whole body anyway protects nothing, and the response says
  ``Connection: close``, so the client knows to reconnect instead of reusing the socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from flask import Flask

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

#: What is drained when the app has no MAX_CONTENT_LENGTH.
DEFAULT_DRAIN_LIMIT = 1024 * 1024
_CHUNK = 64 * 1024


class _CountingInput:
    """``wsgi.input`` with a count of the bytes the application read, and whether it hit the
    end. Only the methods PEP 3333 requires; no ``readinto``, so werkzeug's ``LimitedStream``
    reads through :meth:`read` and every byte is counted."""

    def __init__(self, stream: Any, length: int | None) -> None:
        self._stream = stream
        self.length = length
        self.read_bytes = 0
        self.eof = False

    def _counted(self, data: bytes, asked: int | None) -> bytes:
        self.read_bytes += len(data)
        if not data and asked != 0:
            self.eof = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._stream.read() if size is None or size < 0 else self._stream.read(size)
        if size is None or size < 0:
            self.eof = True  # read() without a size reads to the end
        return self._counted(data, size)

    def readline(self, size: int | None = -1) -> bytes:
        data: bytes = self._stream.readline() if size is None else self._stream.readline(size)
        return self._counted(data, size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    @property
    def consumed(self) -> bool:
        """Whether nothing of the body is left on the connection."""
        if self.length is not None:
            return self.read_bytes >= self.length
        return self.eof

    def drain(self, limit: int) -> bool:
        """Read and discard the rest of the body if it is at most ``limit`` bytes.

        :returns: whether the body is now fully read (``False``: too large, or the client
            went away mid-body; either way the connection must close).
        """
        if self.length is not None and self.length - self.read_bytes > limit:
            return False  # known to be too large: do not read a byte of it
        drained = 0
        try:
            while not self.consumed:
                if self.length is None:
                    # No length (chunked): one byte past the limit tells "too large" from "done".
                    want = min(_CHUNK, limit + 1 - drained)
                    if want <= 0:
                        return False
                else:
                    want = min(_CHUNK, self.length - self.read_bytes)
                data = self.read(want)
                if not data:
                    break
                drained += len(data)
        except (OSError, ValueError):  # the client disconnected mid-body
            return False
        return self.consumed


class BodyGuard:
    """WSGI middleware that drains a small unread request body, or closes the connection.

    The decision is taken when the application calls ``start_response``: the view (and any
    error handler) has run by then, so the count of body bytes it read is final.

    :param app: the WSGI application to wrap (Flask's ``app.wsgi_app``).
    :param drain_limit: the most unread bytes read and discarded to keep the connection.
    """

    def __init__(self, app: WSGIApplication, drain_limit: int) -> None:
        self.app = app
        self.drain_limit = drain_limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = _content_length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not length and not chunked:
            return self.app(environ, start_response)  # no body: every GET, nothing to guard
        body = _CountingInput(environ["wsgi.input"], None if chunked else length)
        environ["wsgi.input"] = body

        def guarded_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if not body.consumed and not body.drain(self.drain_limit):
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
                headers.append(("Connection", "close"))
                _force_close(start_response)
            return start_response(status, headers, exc_info)

        return self.app(environ, guarded_start_response)


def _content_length(environ: WSGIEnvironment) -> int | None:
    try:
        value = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    return value if value >= 0 else None


def _force_close(start_response: StartResponse) -> None:
    """Make gunicorn close too. PEP 3333 forbids hop-by-hop headers from applications, so
    gunicorn drops our ``Connection: close`` and would answer ``keep-alive`` before closing;
    its ``start_response`` is a method of its response object, whose ``force_close`` makes it
    say ``close`` itself. Other servers (granian, werkzeug's) send the header as given."""
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):
        force_close()


def init_app(app: Flask) -> None:
    """Wrap the app's WSGI callable in :class:`BodyGuard`, draining up to MAX_CONTENT_LENGTH."""
    limit = app.config.get("MAX_CONTENT_LENGTH") or DEFAULT_DRAIN_LIMIT
    app.wsgi_app = BodyGuard(app.wsgi_app, limit)  # type: ignore[method-assign]
