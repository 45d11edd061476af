"""InferenceService: the data plane's core, the table of what serves, transport-agnostic.

It loads the repository, publishes one :class:`~modelserve.serving.ServedVersion` per ready
version (codecs, batcher and cache built once), swaps the whole table on a reload, and
resolves the version a request addresses. The wire protocols (``protocols/``), the admin
surface (``admin.py``) and the listings (``listing.py``) are small objects on top of it; it
knows nothing of HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

from .errors import ModelNotFound
from .errors import ModelNotReady
from .repository import FailedVersion
from .repository import LoadedVersion
from .repository import ModelRepository
from .repository import ReloadReport
from .serving import ServedModel
from .serving import ServedVersion
from .settings import ServerSettings

#: How often :meth:`InferenceService.acquire` looks again when the version it found was
#: released between the lookup and the count (a reload finished in between).
_ACQUIRE_TRIES = 3


class InferenceService:
    """Serve the models of one repository.

    :param settings: server settings.
    :param repository: a repository to serve; built from ``settings`` when omitted.
    """

    def __init__(self, settings: ServerSettings, repository: ModelRepository | None = None) -> None:
        self.settings = settings
        self.repository = repository or ModelRepository(settings)
        self.started_at = time.time()
        # Readers never lock: they read this reference once; a publication rebinds it.
        self._table: dict[str, ServedModel] = {}
        self._publish_lock = threading.Lock()
        self._generation = 0
        #: The sorted names of one table, and the table they are of (every request that
        #: names no model asks for the default, which sorting each time made a sizeable
        #: share of a small request).
        self._names: tuple[dict[str, ServedModel], list[str]] = (self._table, [])

    def load(self) -> None:
        """Load every model version now (called once at start-up, never per request)."""
        self.repository.load_all()
        self.publish()

    def reload(self, names: Collection[str] | None = None) -> ReloadReport:
        """Rescan the repository (hot reload) and publish what changed.

        :param names: rescan only these models; ``None`` rescans everything.
        """
        report = self.repository.refresh(names)
        if report.changed:
            self.publish()
        return report

    def publish(self) -> None:
        """Swap in a table matching the repository's: a version that did not change keeps
        its record; a new one gets a record built now; a dropped one is retired (released
        once its last request is done)."""
        with self._publish_lock:
            before = self._table
            known: dict[LoadedVersion, ServedVersion] = {
                sv.model: sv for model in before.values() for sv in model.versions.values()
            }
            table: dict[str, ServedModel] = {}
            for entry in self.repository.entries():
                versions = {
                    number: known.get(mv) or ServedVersion(mv, self.settings)
                    for number, mv in entry.versions.items()
                    if isinstance(mv, LoadedVersion)
                }
                table[entry.name] = ServedModel(entry, versions)
            self._table = table
            self._generation += 1
            live = {id(sv) for model in table.values() for sv in model.versions.values()}
        for sv in known.values():
            if id(sv) not in live:
                sv.retire()

    @property
    def generation(self) -> int:
        """How many tables were published: anything derived from the table (the OpenAPI
        document) can be cached under it and rebuilt when it moves."""
        return self._generation

    # -- lookup -----------------------------------------------------------------------------

    def models(self) -> list[ServedModel]:
        """Every published model, in repository order."""
        return list(self._table.values())

    def find_model(self, name: str) -> ServedModel | None:
        return self._table.get(name)

    def names(self) -> list[str]:
        return list(self._sorted_names())

    def _sorted_names(self) -> list[str]:
        """The current table's names, sorted once per published table (do not change)."""
        table = self._table
        cached = self._names
        if cached[0] is not table:
            cached = self._names = (table, sorted(table))
        return cached[1]

    def default_name(self) -> str | None:
        """The model a request that names none is for: the configured one, or the only one."""
        if self.settings.default_model is not None:
            return self.settings.default_model
        names = self._sorted_names()
        return names[0] if len(names) == 1 else None

    def ready(self) -> bool:
        """Server readiness: at least one model, and every model has a loaded version."""
        table = self._table
        return bool(table) and all(m.default is not None for m in table.values())

    def resolve(self, name: str | None, version: int | None = None) -> ServedVersion:
        """Find the version a request addresses; ``name=None`` means the default model.

        :raises ModelNotFound: no such model/version, or no default model is configured.
        :raises ModelNotReady: the version exists but did not load.
        """
        if name is None:
            name = self.default_name()
            if name is None:
                raise ModelNotFound(None)
        model = self._table.get(name)
        if model is None:
            raise ModelNotFound(name)
        if version is None:
            if model.default is None:
                latest = model.entry.latest
                raise ModelNotReady(name, None, latest.error if latest else None)
            return model.default
        found = model.versions.get(version)
        if found is None:
            failed = model.entry.versions.get(version)
            if isinstance(failed, FailedVersion):
                raise ModelNotReady(name, version, failed.error)
            raise ModelNotFound(name, version)
        return found

    def acquire(self, name: str | None, version: int | None = None) -> ServedVersion:
        """:meth:`resolve` and hold the version for one request; the caller must
        :meth:`ServedVersion.leave` it when done (a ``finally``).

        The request then finishes on this version even if a reload retires it meanwhile.
        """
        for _ in range(_ACQUIRE_TRIES):
            sv = self.resolve(name, version)
            if sv.acquire():
                return sv
        raise ModelNotReady(sv.name, version, "it is being replaced; retry")
