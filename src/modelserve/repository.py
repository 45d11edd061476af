"""The model repository: find models on disk, check their hashes, load every version.

Layout (Triton-like)::

    models/<name>/model.yaml            manifest (optional when everything can be inferred)
    models/<name>/<version>/<artifact>  integer version folders; the highest ready one is default

The path given to the server may also be a single model folder or a single model file
("single-file mode", with an optional separate preprocessor file).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Collection
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from functools import cached_property
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Literal

import orjson

from . import preload as shared
from . import telemetry
from . import trust
from .errors import IntegrityError
from .errors import ModelLoadError
from .errors import ModelNotFound
from .errors import ModelNotReady
from .errors import ModelServeError
from .manifest import MANIFEST_NAME
from .manifest import Manifest
from .manifest import VersionPolicy
from .manifest import load_version_manifest
from .mlflow import is_mlflow_model
from .mlflow import load_mlflow_manifest
from .runtimes.base import ArtifactSet
from .runtimes.base import Runtime
from .runtimes.registry import get_runtime_class
from .runtimes.registry import is_fork_safe
from .runtimes.registry import known_extensions
from .runtimes.registry import runtime_for_file
from .settings import ServerSettings
from .types import Signature
from .warmup import warm_up_error
from .warmup import warm_up_inputs

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HASH_CHUNK = 1 << 20
#: (path, sha256) of unpinned artifacts already reported: the server's preflight reports them
#: in the main process, and the workers it forks inherit this set instead of repeating it.
_REPORTED_UNPINNED: set[tuple[Path, str]] = set()

State = Literal["ready", "failed"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large artifacts do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class LoadedVersion:
    """A version whose runtime loaded and answered its warm-up: it can serve.

    Never changed once built; compared by identity, so a rescan that keeps the very same
    object tells the service that nothing about it changed.
    """

    name: str
    version: int
    path: Path
    manifest: Manifest
    runtime: Runtime
    signature: Signature
    artifacts: ArtifactSet
    hashes: dict[str, str]
    loaded_at: float
    call_ms: float | None
    """How long one warm single-row call took at load (``None``: not measured)."""
    fingerprint: tuple[Any, ...] = ()
    """Names, sizes and mtimes of the version's files when it was loaded: a rescan that sees
    the same fingerprint keeps this object instead of loading the version again."""

    state: ClassVar[State] = "ready"
    ready: ClassVar[bool] = True
    error: ClassVar[None] = None

    def status(self) -> dict[str, Any]:
        return {"version": str(self.version), "state": self.state}


@dataclass(frozen=True, eq=False)
class FailedVersion:
    """A version that was found on disk but cannot serve, and why."""

    name: str
    version: int
    path: Path
    error: str
    manifest: Manifest = field(default_factory=Manifest)
    hashes: dict[str, str] = field(default_factory=dict)
    fingerprint: tuple[Any, ...] = ()

    state: ClassVar[State] = "failed"
    ready: ClassVar[bool] = False

    def status(self) -> dict[str, Any]:
        return {"version": str(self.version), "state": self.state, "error": self.error}


#: A version as the repository knows it: loaded, or failed with a reason.
ModelVersion = LoadedVersion | FailedVersion


@dataclass(frozen=True)
class VersionCheck:
    """What :meth:`ModelRepository.check` found for one version, without loading it."""

    name: str
    version: int
    error: str | None


@dataclass(eq=False)
class ModelEntry:
    """A named model and all its versions; never changed once published."""

    name: str
    path: Path
    versions: dict[int, ModelVersion]
    rejected: dict[int, FailedVersion] = field(default_factory=dict)
    """New copies of served versions that failed to load; the served copy stays in
    :attr:`versions` and keeps serving."""

    def failures(self) -> list[dict[str, Any]]:
        """Every version that is not serving because it failed, and every rejected reload."""
        out = [v.status() for v in self.versions.values() if not v.ready]
        for v in self.rejected.values():
            out.append({**v.status(), "state": "rejected", "serving": "previous copy"})
        return out

    @cached_property
    def default(self) -> LoadedVersion | None:
        """The highest version that loaded, or ``None``.

        Computed once: an entry is never changed after it is published (a rescan builds new
        entries and swaps the whole table), and every request asks for it.
        """
        ready = [v for v in self.versions.values() if isinstance(v, LoadedVersion)]
        return max(ready, key=lambda v: v.version, default=None)

    @property
    def latest(self) -> ModelVersion | None:
        return max(self.versions.values(), key=lambda v: v.version, default=None)

    def sorted_versions(self) -> list[ModelVersion]:
        """Every version, lowest number first."""
        return [self.versions[v] for v in sorted(self.versions)]


@dataclass(frozen=True)
class _Source:
    """A version found on disk, before loading."""

    name: str
    model_dir: Path
    version: int
    version_dir: Path | None
    single_file: Path | None = None


@dataclass
class ReloadReport:
    """What one repository scan changed: ``name/version`` strings in each list."""

    loaded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed_versions: dict[str, set[int]] = field(default_factory=dict)
    """The numbers behind :attr:`failed`, by model name."""

    @property
    def changed(self) -> bool:
        return bool(self.loaded or self.failed or self.removed)

    def to_dict(self) -> dict[str, list[str]]:
        return {"loaded": self.loaded, "failed": self.failed, "removed": self.removed}


class ModelRepository:
    """Discover, verify and load models; look them up by name and version.

    The repository owns the table of what is on disk and loaded. It never releases a runtime
    itself: whoever serves the versions (the :class:`~modelserve.service.InferenceService`)
    knows when the last request on a retired version is done.

    :param settings: the server settings; ``model_path`` says where to look.
    """

    def __init__(self, settings: ServerSettings) -> None:
        if settings.model_path is None:
            raise ModelLoadError(
                "No model path given: pass PATH to `modelserve serve` or set MODELSERVE_MODEL_PATH"
            )
        self.settings = settings
        self.root = Path(settings.model_path)
        # Readers never lock: they read this reference once, and a reload builds a new dict
        # (with new entries) and rebinds it, which is atomic.
        self._models: dict[str, ModelEntry] = {}
        # Serialises reloads (polling thread, SIGHUP, load/unload API); requests never take it.
        self._reload_lock = threading.Lock()
        self._unloaded: set[str] = set()

    # -- discovery --------------------------------------------------------------------------

    def _sources(self) -> Iterator[_Source]:
        root = self.root
        if not root.exists():
            raise ModelLoadError(f"Model path {root} does not exist")
        if root.is_file():
            if self.settings.preprocessor is not None and not self.settings.preprocessor.is_file():
                raise ModelLoadError(
                    f"Preprocessor file {self.settings.preprocessor} does not exist"
                )
            yield _Source(_safe_name(root.stem), root.parent, 1, None, single_file=root)
            return
        if self.settings.preprocessor is not None:
            raise ModelLoadError("--preprocessor only applies when PATH is a single model file")
        if _is_model_dir(root):
            yield from _versions_of(root)
            return
        found = False
        for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if _is_model_dir(child):
                found = True
                yield from _versions_of(child)
        if not found:
            raise ModelLoadError(
                f"No models found in {root}: expected <name>/model.yaml and/or "
                f"<name>/<version>/<artifact> (or an MLflow model folder with MLmodel) "
                f"(artifact extensions: {', '.join(known_extensions())})"
            )

    # -- loading ----------------------------------------------------------------------------

    def load_all(self) -> None:
        """Load every version the version policies select; failures are recorded on the
        version, not raised.

        :raises ModelLoadError: when nothing at all was found.
        """
        self.refresh()

    def refresh(self, names: Collection[str] | None = None) -> ReloadReport:
        """Rescan the repository and load what is new or changed, beside what is serving.

        Versions whose files did not change are kept as they are. A changed or new version is
        loaded and warmed first; only then is the new model table swapped in, in one
        assignment, so a request sees either the old table or the new one, and a request that
        already holds a version finishes on it. A copy that fails to load never replaces a
        ready copy of the same version.

        :param names: rescan only these models (the load API); ``None`` rescans everything.
        :raises ModelLoadError: when the path is gone or holds no model at all.
        """
        with self._reload_lock:
            self._read_state()
            current = self._models
            grouped: dict[str, list[_Source]] = {}
            for source in self._sources():
                grouped.setdefault(source.name, []).append(source)
            report = ReloadReport()
            models: dict[str, ModelEntry] = {}
            for name, sources in grouped.items():
                old = current.get(name)
                if name in self._unloaded:
                    continue
                if names is not None and name not in names:
                    if old is not None:
                        models[name] = old
                    continue
                models[name] = self._refresh_entry(name, sources, old, report)
            for name, old in current.items():
                if name in models:
                    continue
                if names is not None and name not in names and name not in self._unloaded:
                    models[name] = old
                else:
                    report.removed += [f"{name}/{v}" for v in old.versions]
            for name, entry in models.items():
                old = current.get(name)
                if old is not None:
                    report.removed += [
                        f"{name}/{v}" for v in old.versions if v not in entry.versions
                    ]
            self._models = models
        if report.changed:
            logger.info(
                "repository rescan: loaded %s; failed %s; removed %s",
                ", ".join(report.loaded) or "-",
                ", ".join(report.failed) or "-",
                ", ".join(report.removed) or "-",
            )
        return report

    def _refresh_entry(
        self, name: str, sources: list[_Source], old: ModelEntry | None, report: ReloadReport
    ) -> ModelEntry:
        candidates, latest = self._candidates(sources)
        versions: dict[int, ModelVersion] = {}
        rejected: dict[int, FailedVersion] = {}
        ready = 0
        for source in candidates:
            if latest is not None and ready >= latest:
                break
            fingerprint = _fingerprint(source, self.settings.preprocessor)
            prev = old.versions.get(source.version) if old else None
            prev_rejected = old.rejected.get(source.version) if old else None
            mv: ModelVersion
            if prev is not None and prev.fingerprint == fingerprint:
                mv = prev
            elif (
                prev is not None
                and prev_rejected is not None
                and prev_rejected.fingerprint == fingerprint
            ):
                # Already tried these exact files and they failed: keep serving, do not retry.
                mv = prev
                rejected[source.version] = prev_rejected
            else:
                mv = self.load_version(source, fingerprint)
                key = f"{name}/{source.version}"
                if isinstance(mv, LoadedVersion):
                    report.loaded.append(key)
                else:
                    report.failed.append(key)
                    report.failed_versions.setdefault(name, set()).add(source.version)
                    if isinstance(prev, LoadedVersion):
                        logger.error(
                            "model %s version %s changed on disk but the new copy failed to "
                            "load; the previous copy keeps serving",
                            name,
                            source.version,
                        )
                        rejected[source.version] = mv
                        mv = prev
            versions[source.version] = mv
            if mv.ready:
                ready += 1
        return ModelEntry(name, sources[0].model_dir, versions, rejected)

    def _candidates(self, sources: list[_Source]) -> tuple[list[_Source], int | None]:
        """The versions the model's policy may serve, newest first, and how many of them
        (the first ones that load) serve; ``None``: all of them."""
        policy = self._policy(sources[0])
        candidates = sorted(sources, key=lambda s: s.version, reverse=True)
        if not isinstance(policy, VersionPolicy):
            return candidates, None
        if policy.specific is not None:
            wanted = set(policy.specific)
            candidates = [s for s in candidates if s.version in wanted]
        return candidates, policy.latest

    def _policy(self, source: _Source) -> Literal["all"] | VersionPolicy:
        if source.single_file is not None:
            return "all"
        try:
            return load_version_manifest(source.model_dir, None).version_policy
        except ModelServeError:
            # Every version will fail on the same manifest error and report it.
            return "all"

    # -- load / unload API ------------------------------------------------------------------

    def load_model(self, name: str) -> ModelEntry:
        """Load (or reload) one model by name, undoing an earlier :meth:`unload_model`.

        :raises ModelNotFound: when no such model is on disk.
        :raises ModelLoadError: when none of its versions loads, or a changed one failed.
        """
        with self._reload_lock:
            self._read_state()
            self._unloaded.discard(name)
            self._write_state()
        report = self.refresh([name])
        entry = self._models.get(name)
        if entry is None:
            raise ModelNotFound(name)
        default = entry.default
        failed = report.failed_versions.get(name, set())
        if default is None or failed:
            reasons = "; ".join(
                f"version {mv.version}: {mv.error}"
                for mv in [*entry.versions.values(), *entry.rejected.values()]
                if isinstance(mv, FailedVersion) and (default is None or mv.version in failed)
            )
            serving = f"; version {default.version} keeps serving" if default else ""
            raise ModelLoadError(f"Model {name!r} failed to load: {reasons}{serving}")
        return entry

    def unload_model(self, name: str) -> None:
        """Stop serving a model until :meth:`load_model` is called for it.

        Requests already running on it finish; later ones get :class:`ModelNotFound`.

        :raises ModelNotFound: when the model is not being served.
        """
        with self._reload_lock:
            self._read_state()
            if name not in self._models:
                raise ModelNotFound(name)
            self._unloaded.add(name)
            self._write_state()
            self._models = {k: v for k, v in self._models.items() if k != name}
        logger.info("model %s unloaded", name)

    def unloaded(self) -> list[str]:
        return sorted(self._unloaded)

    def _read_state(self) -> None:
        """Pick up models other workers unloaded (``state_file`` is shared by one server)."""
        path = self.settings.state_file
        if path is None or not path.is_file():
            return
        try:
            self._unloaded = set(orjson.loads(path.read_bytes()).get("unloaded", []))
        except (OSError, orjson.JSONDecodeError, AttributeError) as exc:
            logger.warning("cannot read repository state %s: %s", path, exc)

    def _write_state(self) -> None:
        path = self.settings.state_file
        if path is None:
            return
        tmp = path.with_name(path.name + f".{threading.get_ident()}.tmp")
        tmp.write_bytes(orjson.dumps({"unloaded": sorted(self._unloaded)}))
        tmp.replace(path)

    def preload(self) -> list[str]:
        """Load the fork-safe versions the policies select and offer them to the workers
        forked after this (:mod:`modelserve.preload`); return their ``name/version``.

        Run by a server's main process before the fork. Nothing here is fatal: a version
        that fails is left for the workers, which load it themselves and report the error
        exactly as without preloading. Runtimes that are not fork-safe are not touched.
        """
        grouped: dict[str, list[_Source]] = {}
        for source in self._sources():
            grouped.setdefault(source.name, []).append(source)
        loaded: list[str] = []
        for sources in grouped.values():
            candidates, latest = self._candidates(sources)
            for source in candidates[:latest]:
                try:
                    prepared = self._prepare(source)
                    if not is_fork_safe(prepared.runtime_name):
                        continue  # never import onnxruntime or torch into the main process
                    runtime_class = get_runtime_class(prepared.runtime_name)
                    runtime = runtime_class(prepared.artifacts)
                    runtime.load()
                except Exception as exc:  # the worker loads it and reports what is wrong
                    logger.debug("not preloading %s/%s: %s", source.name, source.version, exc)
                    continue
                shared.offer(prepared.runtime_name, prepared.artifacts, prepared.hashes, runtime)
                loaded.append(f"{source.name}/{source.version}")
        return loaded

    def check(self) -> list[VersionCheck]:
        """Find every version and verify manifests and hashes, without loading any model.

        Cheap enough for a server's master process to fail fast before it forks workers.
        """
        checked = []
        for source in self._sources():
            try:
                self._prepare(source)
            except ModelServeError as exc:
                checked.append(VersionCheck(source.name, source.version, exc.message))
            else:
                checked.append(VersionCheck(source.name, source.version, None))
        return checked

    def _prepare(self, source: _Source) -> _Prepared:
        """Read the manifest, find and hash-check the artifacts, pick the runtime.

        :raises ModelServeError: naming what is wrong; a manifest that could be read is
            attached to the error's version by :meth:`load_version`.
        """
        manifest = Manifest()
        root = self.root.resolve()
        if source.single_file is not None:
            artifact, pre = source.single_file, self.settings.preprocessor
            manifest = _pins_beside(artifact)
            inside = [artifact]  # --preprocessor names its file explicitly: anywhere
            root = root.parent
            pin_target = f"{artifact}" + (f" --preprocessor {pre}" if pre else "")
        else:
            manifest = load_version_manifest(source.model_dir, source.version_dir)
            folder = source.version_dir or source.model_dir
            if is_mlflow_model(folder):
                manifest = load_mlflow_manifest(folder, manifest)
            artifact, pre = _artifact_paths(manifest, source)
            inside = [p for p in (artifact, pre) if p]
            pin_target = str(source.model_dir)
        for path in inside:  # before a byte is read: no symlink or '..' leads out
            trust.check_inside(path, root)
        files = [p for p in (artifact, pre) if p]
        hashes = self._verify(manifest, source.model_dir, files)
        runtime_name = manifest.runtime or runtime_for_file(artifact)
        if runtime_name is None:
            raise ModelLoadError(
                f"Cannot tell which runtime loads {artifact.name}: set runtime in model.yaml"
            )
        # The preprocessor is always read by scikit-learn's loader (pickle unless .skops).
        unpickled = [
            _pin_key(path, source.model_dir)
            for path in files
            if trust.unpickles(path, runtime_name if path == artifact else "sklearn")
        ]
        unpinned = [key for key in unpickled if key not in manifest.sha256]
        trust.check_pickles(self.settings, manifest.trust, unpinned, Path(pin_target))
        artifacts = ArtifactSet(artifact=artifact, preprocessor=pre, manifest=manifest)
        return _Prepared(manifest, artifacts, hashes, runtime_name)

    def load_version(self, source: _Source, fingerprint: tuple[Any, ...] = ()) -> ModelVersion:
        """Load one version; a failure comes back as a :class:`FailedVersion`, not raised."""
        started = time.perf_counter()
        path = source.single_file or source.version_dir or source.model_dir
        prepared: _Prepared | None = None
        try:
            prepared = self._prepare(source)
            runtime = shared.take(prepared.runtime_name, prepared.artifacts, prepared.hashes)
            if runtime is None:
                runtime = get_runtime_class(prepared.runtime_name)(prepared.artifacts)
                runtime.load()
            signature = runtime.signature()
            call_ms = _warm_up(runtime, signature)
        except ModelServeError as exc:
            logger.error(
                "model %s version %s failed to load: %s", source.name, source.version, exc.message
            )
            telemetry.observer().model_load_failed(source.name, source.version)
            return FailedVersion(
                name=source.name,
                version=source.version,
                path=path,
                error=exc.message,
                manifest=prepared.manifest if prepared else Manifest(),
                hashes=prepared.hashes if prepared else {},
                fingerprint=fingerprint,
            )
        seconds = time.perf_counter() - started
        logger.info(
            "loaded model %s version %s (%s) in %.0f ms",
            source.name,
            source.version,
            prepared.runtime_name,
            seconds * 1000,
        )
        telemetry.observer().model_loaded(source.name, source.version, seconds)
        return LoadedVersion(
            name=source.name,
            version=source.version,
            path=path,
            manifest=prepared.manifest,
            runtime=runtime,
            signature=signature,
            artifacts=prepared.artifacts,
            hashes=prepared.hashes,
            loaded_at=time.time(),
            call_ms=call_ms,
            fingerprint=fingerprint,
        )

    def _verify(self, manifest: Manifest, model_dir: Path, files: list[Path]) -> dict[str, str]:
        """Hash each file and compare with the manifest's pins.

        :raises IntegrityError: on a mismatch.
        :raises ModelLoadError: when a file is unpinned and ``require_sha256`` is set.
        """
        hashes: dict[str, str] = {}
        for path in files:
            key = _pin_key(path, model_dir)
            actual = sha256_file(path)
            hashes[key] = actual
            expected = manifest.sha256.get(key)
            if expected is not None:
                if expected != actual:
                    raise IntegrityError(key, expected, actual)
            elif self.settings.require_sha256:
                raise ModelLoadError(
                    f"{key} has no sha256 pinned in model.yaml "
                    "and MODELSERVE_REQUIRE_SHA256 is on; "
                    "pin it with `modelserve validate --write-manifest`"
                )
            elif (path, actual) not in _REPORTED_UNPINNED:
                _REPORTED_UNPINNED.add((path, actual))
                logger.warning("%s is not pinned by sha256 in its manifest", key)
        return hashes

    # -- lookup -----------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return list(self._models.values())

    def names(self) -> list[str]:
        return sorted(self._models)

    def find_entry(self, name: str) -> ModelEntry | None:
        return self._models.get(name)

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        """Return a ready version: the default one when ``version`` is ``None``.

        :raises ModelNotFound: for an unknown name or version.
        :raises ModelNotReady: when it exists but did not load.
        """
        entry = self._models.get(name)
        if entry is None:
            raise ModelNotFound(name)
        return get_version(entry, version)

    def default_name(self) -> str | None:
        """The model a request that names none is for: the configured one, or the only one."""
        if self.settings.default_model is not None:
            return self.settings.default_model
        names = self.names()
        return names[0] if len(names) == 1 else None


def get_version(entry: ModelEntry, version: int | None) -> LoadedVersion:
    """The entry's ready version ``version`` (its default when ``None``).

    :raises ModelNotFound: no such version.
    :raises ModelNotReady: it exists but did not load.
    """
    if version is None:
        mv = entry.default
        if mv is None:
            latest = entry.latest
            raise ModelNotReady(entry.name, None, latest.error if latest else None)
        return mv
    found = entry.versions.get(version)
    if found is None:
        raise ModelNotFound(entry.name, version)
    if isinstance(found, FailedVersion):
        raise ModelNotReady(entry.name, version, found.error)
    return found


@dataclass(frozen=True)
class _Prepared:
    """A version's checked files and runtime choice, before the runtime loads."""

    manifest: Manifest
    artifacts: ArtifactSet
    hashes: dict[str, str]
    runtime_name: str


def _warm_up(runtime: Runtime, signature: Signature) -> float | None:
    """Score one example row before the version serves, so the first request does not pay
    for lazy initialisation, and a model that cannot score at all never goes live.

    :returns: the milliseconds of one more, warm, call (the cost batching would share), or
        ``None`` for models without an example input.
    :raises ModelLoadError: when the model fails on it, naming the column to fix if any.
    """
    inputs = warm_up_inputs(signature)
    if inputs is None:
        return None
    try:
        runtime.predict(inputs)
        started = time.perf_counter()
        runtime.predict(inputs)
        return (time.perf_counter() - started) * 1000
    except Exception as exc:
        raise warm_up_error(signature, exc) from exc


def _fingerprint(source: _Source, preprocessor: Path | None) -> tuple[Any, ...]:
    """Cheap identity of a version's files on disk: (name, size, mtime) of each."""
    if source.single_file is not None:
        paths = [source.single_file] + ([preprocessor] if preprocessor else [])
        paths.append(source.single_file.parent / MANIFEST_NAME)  # its pins
    else:
        folder = source.version_dir or source.model_dir
        paths = [source.model_dir / MANIFEST_NAME]
        try:
            paths += sorted(p for p in folder.iterdir() if not p.is_dir())
        except OSError:  # removed while we scan: the next scan sees the final state
            pass
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _safe_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return name


def _is_model_dir(path: Path) -> bool:
    # An MLflow model folder is one version, like a manifest beside its artifact.
    if (path / MANIFEST_NAME).is_file() or is_mlflow_model(path):
        return True
    return any(p.is_dir() and p.name.isdigit() for p in path.iterdir())


def _versions_of(model_dir: Path) -> Iterator[_Source]:
    name = model_dir.name
    if not _NAME_RE.match(name):
        raise ModelLoadError(
            f"Model folder name {name!r} is not a valid model name (letters, digits, '_', '.', '-')"
        )
    version_dirs = sorted(
        (p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    if not version_dirs:
        # A manifest beside the artifact, with no version folders: that is version 1.
        yield _Source(name, model_dir, 1, None)
        return
    for vdir in version_dirs:
        yield _Source(name, model_dir, int(vdir.name), vdir)


def _pin_key(path: Path, model_dir: Path) -> str:
    # The path as the repository names it: a symlink inside the repository keeps the key of
    # the place it is linked from (``1/model.joblib``), wherever its target lives.
    for candidate, base in ((path, model_dir), (path.resolve(), model_dir.resolve())):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.name


def _pins_beside(single_file: Path) -> Manifest:
    """The sha256 pins and trust flag of the ``model.yaml`` beside a single model file (what
    ``modelserve validate FILE --write-manifest`` writes); nothing else of it applies."""
    if not (single_file.parent / MANIFEST_NAME).is_file():
        return Manifest()
    found = load_version_manifest(single_file.parent, None)
    return Manifest(sha256=found.sha256, trust=found.trust)


def _artifact_paths(manifest: Manifest, source: _Source) -> tuple[Path, Path | None]:
    folder = source.version_dir or source.model_dir
    for field_name in ("artifact", "preprocessor"):
        value = getattr(manifest, field_name)
        if value:
            trust.check_relative(value, field_name, folder)
    pre = None
    if manifest.preprocessor:
        pre = folder / manifest.preprocessor
        if not pre.is_file():
            raise ModelLoadError(f"Preprocessor {manifest.preprocessor} not found in {folder}")
    if manifest.artifact:
        artifact = folder / manifest.artifact
        if not artifact.is_file():
            raise ModelLoadError(f"Artifact {manifest.artifact} not found in {folder}")
        return artifact, pre
    extensions = set(known_extensions())
    candidates = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in extensions and (pre is None or p != pre)
    )
    if len(candidates) == 1:
        return candidates[0], pre
    if not candidates:
        raise ModelLoadError(
            f"No model artifact in {folder} (looked for {', '.join(sorted(extensions))})"
        )
    raise ModelLoadError(
        f"Several artifacts in {folder} ({', '.join(p.name for p in candidates)}): "
        "name the model file with artifact: in model.yaml"
    )
