"""The one exception hierarchy modelserve raises on purpose; it knows nothing of HTTP.

``api/errors.py`` maps these classes to status codes. Each exception keeps the structured
arguments it was built from, so that a transport can render them without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ModelServeError(Exception):
    """Base class for every error modelserve raises on purpose.

    :param message: a sentence a user can act on; it is shown to API clients verbatim, so it
        must never contain a traceback or a secret.
    :param details: optional structured items (``{"path": ..., "message": ...}``) that list
        every problem found, not just the first.
    """

    def __init__(self, message: str, details: Sequence[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = list(details or ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigError(ModelServeError):
    """The settings are invalid or unsafe for the chosen profile."""


class ModelNotFound(ModelServeError):
    """No model (or no such version of it) is served under that name."""

    def __init__(self, name: str | None, version: int | None = None) -> None:
        if name is None:
            msg = (
                "No default model is configured: name the model in the request "
                "or set MODELSERVE_DEFAULT_MODEL"
            )
        elif version is None:
            msg = f"Model {name!r} not found"
        else:
            msg = f"Version {version} of model {name!r} not found"
        super().__init__(msg)
        self.name = name
        self.version = version


class ModelNotReady(ModelServeError):
    """The model exists but is not loaded (it failed to load, or is still loading)."""

    def __init__(self, name: str, version: int | None = None, reason: str | None = None) -> None:
        where = f"{name!r}" if version is None else f"{name!r} version {version}"
        msg = f"Model {where} is not ready" + (f": {reason}" if reason else "")
        super().__init__(msg)
        self.name = name
        self.version = version
        self.reason = reason


class InvalidInput(ModelServeError):
    """The request body cannot be turned into model inputs (bad JSON, schema, shape, dtype)."""


class UnsupportedMediaType(InvalidInput):
    """The request's content type has no codec on this route."""


class PayloadTooLarge(InvalidInput):
    """The request is larger than a configured limit (bytes, rows or pixels)."""


class InferenceError(ModelServeError):
    """The model rejected input that passed validation (it raised while scoring)."""


class ModelLoadError(ModelServeError):
    """An artifact or manifest could not be loaded."""


class IntegrityError(ModelLoadError):
    """An artifact's sha256 does not match the one pinned in its manifest."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch for {path}: manifest pins {expected}, file has {actual}; "
            "refusing to load it (re-export the artifact or update the manifest with "
            "`modelserve validate --write-manifest`)"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class RuntimeUnavailable(ModelLoadError):
    """The runtime a model needs is not installed (an optional extra is missing)."""

    def __init__(self, runtime: str, extra: str) -> None:
        super().__init__(
            f"The {runtime!r} runtime needs an optional dependency: "
            f"pip install 'modelserve[{extra}]'"
        )
        self.runtime = runtime
        self.extra = extra


class ServerBusy(ModelServeError):
    """The server cannot take more work right now; the client should retry later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReferenceNotFound(ModelServeError):
    """A model version has no reference profile (``reference.json``) to compare traffic with."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(
            f"Model {name!r} version {version} has no reference profile: build one with "
            "`modelserve validate PATH --reference data.csv` (it writes reference.json next to "
            "the artifact)"
        )
        self.name = name
        self.version = version


class PredictionLogOff(ModelServeError):
    """A report needs the prediction log, and the server keeps none."""

    def __init__(self) -> None:
        super().__init__(
            "The prediction log is off, so there is no traffic to compare: set "
            "MODELSERVE_PREDICTION_LOG to a SQLite file or a PostgreSQL URL"
        )


class Unauthenticated(ModelServeError):
    """The request carries no valid credential: none, an unknown or revoked key, or a token
    that does not verify.

    :param token_sent: whether the request sent a credential at all (it is then *invalid*,
        not missing, which the transport tells the client).
    """

    def __init__(self, message: str, token_sent: bool = False) -> None:
        super().__init__(message)
        self.token_sent = token_sent


class Forbidden(ModelServeError):
    """The credential is valid, or none is needed, but it does not grant what the request
    asks: the scope the route needs, or the model it names.

    :param scope: the scope that would have been needed (``predict`` or ``admin``).
    """

    def __init__(self, message: str, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


class JobNotFound(ModelServeError):
    """No batch job with that id exists for this caller (another key's jobs are not shown)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id!r} not found")
        self.job_id = job_id


class JobConflict(ModelServeError):
    """The job is not in a state that allows the request (a result before it succeeded, a
    cancel after it finished)."""

    def __init__(self, job_id: str, state: str, wanted: str) -> None:
        said = {"succeeded": "has succeeded", "failed": "has failed", "cancelled": "was cancelled"}
        super().__init__(f"Job {job_id!r} {said.get(state, f'is {state}')}: {wanted}")
        self.job_id = job_id
        self.state = state
