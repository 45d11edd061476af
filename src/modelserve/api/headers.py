"""Security headers on every response, CORS for an origin allowlist, and the client address
behind trusted proxies (``ProxyFix``)."""

from __future__ import annotations

from flask import Flask
from flask import Response
from werkzeug.middleware.proxy_fix import ProxyFix

from ..settings import ServerSettings

#: For HTML pages (the web page): only this server's own scripts, styles and images (plus
#: ``data:`` and ``blob:`` images: previews of the pictures a user picks, which never leave
#: the browser), no inline script or style, no plugins, no framing, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

#: What a browser page of an allowed origin may send and read (CORS).
CORS_ALLOW_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Content-Encoding",
    "Inference-Header-Content-Length",
]
CORS_EXPOSE_HEADERS = [
    "Retry-After",
    "WWW-Authenticate",
    "Inference-Header-Content-Length",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]


#: On every response: no content sniffing.
EVERY_RESPONSE = (("X-Content-Type-Options", "nosniff"),)
#: On every inference answer, too: answers about one caller's data, which no shared cache (a
#: proxy, a CDN) may keep.
INFERENCE_RESPONSE = (*EVERY_RESPONSE, ("Cache-Control", "no-store"))


def add_security_headers(response: Response, inference: bool) -> Response:
    """``nosniff`` everywhere, ``no-store`` on predictions, the CSP on HTML (called by the
    request pipeline, which knows whether the endpoint is an ``inference`` one)."""
    headers = response.headers
    for name, value in INFERENCE_RESPONSE if inference else EVERY_RESPONSE:
        headers[name] = value
    # The raw header, not response.mimetype, which parses it on every response.
    if headers.get("Content-Type", "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
    return response


def init_app(app: Flask, settings: ServerSettings) -> None:
    """Answer CORS for ``MODELSERVE_CORS_ORIGINS`` only (the request pipeline adds the
    security headers to every response)."""
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(
            app,
            origins=list(settings.cors_origins),
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            supports_credentials=False,  # keys travel in headers, never in cookies
            max_age=600,
        )


def trust_proxies(app: Flask, settings: ServerSettings) -> None:
    """Believe ``X-Forwarded-For`` / ``-Proto`` for ``MODELSERVE_PROXY_HOPS`` proxies only.

    With 0 (the default) the headers are ignored: ``request.remote_addr`` is the peer that
    connected, which a client cannot forge. With N, the N-th address from the right of
    ``X-Forwarded-For`` (the one the outermost trusted proxy saw) becomes it; whatever a client
    put further left is ignored. Wraps the WSGI app, so every hook sees the fixed address.
    """
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
