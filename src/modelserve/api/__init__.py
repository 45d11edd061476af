"""HTTP transport: thin blueprints that parse requests, call the service, serialise results."""

from __future__ import annotations

from flask import Flask

from ..service import InferenceService
from . import _connection
from . import auth
from . import docs
from . import drift
from . import errors
from . import headers
from . import jobs
from . import limits
from . import observe
from . import openapi
from . import ops
from . import pipeline
from . import predict
from . import v2
from ._handlers import EXTENSION_KEY
from ._handlers import Handlers


def init_app(app: Flask, service: InferenceService) -> None:
    """Build the handlers over ``service``; register every API blueprint and the JSON error
    handlers.

    Cross-cutting request work (auth, rate limits, metrics) belongs in ``before_request`` /
    ``after_request`` hooks registered here, once, so that adding it changes no route.
    """
    app.extensions[EXTENSION_KEY] = Handlers.create(service)
    observe.init_app(app, service.settings)
    errors.init_app(app)
    auth.init_app(app, service.settings)
    headers.init_app(app, service.settings)
    # Observe, authenticate, add the headers: one hook of each kind, first of the hooks.
    pipeline.init_app(app)
    _connection.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(predict.bp)
    app.register_blueprint(v2.bp)
    app.register_blueprint(drift.bp)
    openapi.init_app(app)
    app.register_blueprint(docs.bp)
    jobs.init_app(app, service)
    # Last: counts requests by the principal that authentication (a hook before it) found.
    limits.init_app(app, service.settings)
