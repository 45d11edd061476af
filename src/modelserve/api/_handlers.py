"""The objects the views call, built once per app: the service and what sits on top of it."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ..admin import RepositoryAdmin
from ..listing import ModelListing
from ..predlog import PredictionLog
from ..predlog import create_prediction_log
from ..protocols.images import ImageProtocol
from ..protocols.seed import SeedProtocol
from ..protocols.v2 import V2Protocol
from ..service import InferenceService
from ._request_id import request_id

EXTENSION_KEY = "modelserve.handlers"


@dataclass(frozen=True)
class Handlers:
    """One app's protocol adapters, admin surface and listings over its service."""

    service: InferenceService
    seed: SeedProtocol
    images: ImageProtocol
    v2: V2Protocol
    admin: RepositoryAdmin
    listing: ModelListing
    log: PredictionLog | None = None
    """The prediction log the protocols hand sampled answers to (``None``: off)."""

    @classmethod
    def create(cls, service: InferenceService) -> Handlers:
        images = ImageProtocol(service)
        log = create_prediction_log(service.settings, request_id)
        return cls(
            service=service,
            seed=SeedProtocol(service, log),
            images=images,
            v2=V2Protocol(service, images, log),
            admin=RepositoryAdmin(service),
            listing=ModelListing(service),
            log=log,
        )


def get_handlers() -> Handlers:
    """This app's handlers, set once by ``api.init_app``."""
    handlers: Handlers = current_app.extensions[EXTENSION_KEY]
    return handlers
