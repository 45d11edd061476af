"""create_app(settings): the only place that wires Flask, the service and the blueprints."""

from __future__ import annotations

import secrets

from flask import Flask
from flask import Request
from flask import Response
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionMixin

from . import api
from . import threads
from .api import express
from .api import observe
from .api._json import OrjsonProvider
from .api.headers import trust_proxies
from .api.pipeline import PipelineFlask
from .errors import ModelLoadError
from .logging import configure_logging
from .service import InferenceService
from .settings import ServerSettings
from .settings import load_settings


class LazySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only when the request carries the cookie.

    Flask builds a signing serializer to open a session on every request; API calls never
    carry a session cookie, and skipping that work is a sizeable share of a small request's
    cost. A request with the cookie (a browser on the web page) gets the full behaviour.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # No Cookie header at all (every API client): skip even parsing the cookies.
        if "HTTP_COOKIE" not in request.environ or self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified and not session.accessed:
            return  # never touched: nothing to write, no Vary header to add
        super().save_session(app, session, response)


def create_app(
    settings: ServerSettings | None = None, service: InferenceService | None = None
) -> Flask:
    """Build the WSGI app and load every model before the first request.

    :param settings: server settings; read from the environment when omitted.
    :param service: an already-loaded service (tests, preloaded servers); built when omitted.
    :raises ConfigError: for settings unsafe in the chosen profile.
    :raises ModelLoadError: when no model at all could be loaded.
    """
    settings = settings or load_settings()
    settings.check_safe()
    configure_logging(settings)
    threads.configure(settings.model_threads or threads.default_model_threads(settings.workers))

    app = PipelineFlask(__name__)
    app.config.update(
        # Servers hand their workers one shared key (server.py); a lone app makes its own.
        SECRET_KEY=(
            settings.secret_key.get_secret_value() if settings.secret_key else secrets.token_hex(32)
        ),
        DEBUG=settings.debug,
        TESTING=settings.profile == "testing",
        MAX_CONTENT_LENGTH=settings.max_content_length,
    )
    app.json = OrjsonProvider(app)
    app.session_interface = LazySessionInterface()

    observe.init_metrics()  # before the models load: their load times are metrics
    if service is None:
        service = InferenceService(settings)
        service.load()
    if not any(model.default for model in service.models()):
        failures = [
            f"{mv.name} v{mv.version}: {mv.error}"
            for model in service.models()
            for mv in model.entry.sorted_versions()
        ]
        raise ModelLoadError("No model could be loaded. " + " | ".join(failures))
    app.extensions["modelserve"] = service

    api.init_app(app, service)
    express.init_app(app)  # in front of every wrapper but the proxy fix
    trust_proxies(app, settings)
    return app
