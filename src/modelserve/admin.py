"""The repository's admin surface: list what is on disk, load and unload models at run time.

Everything here changes (or reveals) what the server serves; the transport guards it (the
``admin`` scope, in ``api/auth.py``). Listeners registered with :meth:`RepositoryAdmin.on_change`
hear of every change made here, so a server can tell its other workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from typing import TypeAlias

from .repository import FailedVersion
from .service import InferenceService

logger = logging.getLogger(__name__)

#: Called after a change; whatever it returns is ignored.
Listener: TypeAlias = Callable[[], object]


class RepositoryAdmin:
    """Load, unload and index the models of one service.

    :param service: the service whose repository it changes and republishes.
    """

    def __init__(self, service: InferenceService) -> None:
        self._service = service
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Call ``listener()`` after every load or unload made through this object."""
        self._listeners.append(listener)

    def index(self) -> list[dict[str, Any]]:
        """Every model version on disk that the server knows, with its state."""
        out: list[dict[str, Any]] = []
        for model in sorted(self._service.models(), key=lambda m: m.name):
            entry = model.entry
            for mv in entry.sorted_versions():
                item: dict[str, Any] = {
                    "name": entry.name,
                    "version": str(mv.version),
                    "state": "READY" if mv.version in model.versions else "UNAVAILABLE",
                }
                if isinstance(mv, FailedVersion):
                    item["reason"] = mv.error
                out.append(item)
        for name in self._service.repository.unloaded():
            out.append({"name": name, "state": "UNAVAILABLE", "reason": "unloaded"})
        return out

    def load(self, name: str) -> None:
        """Load or reload one model now, here and (through the listeners) everywhere.

        :raises ModelNotFound: no such model on disk.
        :raises ModelLoadError: none of its versions loads, or a changed one failed (the
            previous copy keeps serving).
        """
        try:
            self._service.repository.load_model(name)
        finally:
            self._service.publish()
            self._changed()

    def unload(self, name: str) -> None:
        """Stop serving one model, here and everywhere, until it is loaded again.

        :raises ModelNotFound: the model is not being served.
        """
        self._service.repository.unload_model(name)
        self._service.publish()
        self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                logger.exception("a repository change listener failed")
