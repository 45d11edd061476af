"""modelserve: serve a trained model as a fast, safe REST API with one command."""

from __future__ import annotations

__version__ = "0.1.0"

from .app import create_app
from .errors import ModelServeError
from .runtimes.base import Runtime
from .settings import ServerSettings

__all__ = ["ModelServeError", "Runtime", "ServerSettings", "__version__", "create_app"]
