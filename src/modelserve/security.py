"""Who a request is and what it may do: API keys, JWT bearer tokens, scopes; no HTTP here.

Credentials: the key of ``MODELSERVE_API_KEY`` (scopes ``admin`` and ``predict``), the named
keys of ``MODELSERVE_KEYS_FILE`` (:mod:`modelserve.keys`), and JWTs from an external issuer
(``MODELSERVE_JWT_*``; needs ``pip install 'modelserve[jwt]'``). Authentication is on as soon
as one of them is configured. Keys are compared by their sha256 in constant time
(:func:`hmac.compare_digest`), against every stored key, so the time an answer takes says
nothing about which key, or how much of one, matched.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from .errors import ConfigError
from .errors import Forbidden
from .errors import Unauthenticated
from .keys import SCOPE_ADMIN
from .keys import SCOPE_PREDICT
from .keys import SCOPES
from .keys import KeyFile
from .keys import KeyRecord
from .keys import hash_key
from .keys import read_keys
from .settings import ServerSettings

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

logger = logging.getLogger(__name__)

Source = Literal["api_key", "keys_file", "jwt"]

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request.

    :param name: the key's name (``MODELSERVE_API_KEY`` for that one) or the token's ``sub``.
    :param scopes: what it may do (``predict``, ``admin``).
    :param models: the only models it may predict with; ``None`` for every model.
    :param source: where the credential came from.
    """

    name: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None
    source: Source = "keys_file"

    def allows(self, scope: str, model: str | None = None) -> bool:
        """Whether this caller has ``scope``, for ``model`` when one is named."""
        if scope not in self.scopes:
            return False
        return (
            scope != SCOPE_PREDICT or model is None or self.models is None or (model in self.models)
        )


def credential_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """The credential a request sent: ``X-API-Key: <key>`` or ``Authorization: Bearer <value>``.

    :raises Unauthenticated: for another ``Authorization`` scheme, an empty value, or both
        headers at once (which one would count is not obvious, so neither does).
    """
    bearer = None
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated(
                "The Authorization header must be 'Bearer <key or token>'", token_sent=True
            )
        bearer = value.strip()
        if not bearer:
            raise Unauthenticated("The Authorization header has no token", token_sent=True)
    if api_key is not None:
        if bearer is not None:
            raise Unauthenticated(
                "Send one credential: X-API-Key or Authorization, not both", token_sent=True
            )
        if not api_key.strip():
            raise Unauthenticated("The X-API-Key header is empty", token_sent=True)
        return api_key.strip()
    return bearer


def looks_like_jwt(value: str) -> bool:
    """Whether ``value`` has a JWT's shape (three base64url parts); API keys have no dots."""
    return _JWT_SHAPE.fullmatch(value) is not None


def scopes_from_claim(value: object) -> frozenset[str]:
    """The scopes modelserve knows in a token's scope claim: a space-separated string
    (OAuth 2 ``scope``) or a list of strings (``scp``, ``scopes``); anything else grants none."""
    if isinstance(value, str):
        items: Sequence[object] = value.split()
    elif isinstance(value, list):
        items = value
    else:
        return frozenset()
    return frozenset(item for item in items if isinstance(item, str) and item in SCOPES)


class JWTVerifier:
    """Verify bearer JWTs against one key source: an HMAC secret, a PEM public key, or a JWKS
    file (re-read when it changes, so the issuer can rotate keys without a restart).

    Signature, ``exp``, ``nbf``, ``iss`` and ``aud`` are checked; ``exp``, ``iss`` and ``aud``
    must be present. The accepted algorithms always belong to the key's own family, so a
    public key can never be used as an HMAC secret (algorithm confusion) and ``none`` is never
    accepted.

    :raises ConfigError: for incomplete or inconsistent settings, or when PyJWT is missing.
    """

    def __init__(self, settings: ServerSettings) -> None:
        try:
            import jwt
        except ImportError:  # pragma: no cover - the jwt extra is part of the dev install
            raise ConfigError(
                "JWT authentication needs PyJWT: pip install 'modelserve[jwt]'"
            ) from None
        self._jwt = jwt
        sources = [
            name
            for name, value in (
                ("MODELSERVE_JWT_SECRET", settings.jwt_secret),
                ("MODELSERVE_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file),
                ("MODELSERVE_JWT_JWKS_FILE", settings.jwt_jwks_file),
            )
            if value is not None
        ]
        if len(sources) != 1:
            raise ConfigError(f"Set one JWT key, not several: {', '.join(sources)}")
        missing = [
            name
            for name, value in (
                ("MODELSERVE_JWT_ISSUER", settings.jwt_issuer),
                ("MODELSERVE_JWT_AUDIENCE", settings.jwt_audience),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"JWT authentication needs {' and '.join(missing)}: tokens are accepted only "
                "from one issuer and only when minted for this server"
            )
        self.issuer: str = settings.jwt_issuer or ""
        self.audience: str = settings.jwt_audience or ""
        self._leeway = settings.jwt_leeway
        self._claim = settings.jwt_scopes_claim
        self._key: Any = None
        self._jwks: _JWKSFile | None = None
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value()
            if len(secret.encode()) < 32:
                raise ConfigError("MODELSERVE_JWT_SECRET must be at least 32 bytes long")
            self._key = secret
            family = _HMAC_ALGORITHMS
            default = ["HS256"]
        elif settings.jwt_public_key_file is not None:
            self._key = _read_public_key(settings.jwt_public_key_file)
            family, default = _family_of(self._key, settings.jwt_public_key_file)
        else:
            path = settings.jwt_jwks_file
            if path is None:  # pragma: no cover - one of the three is set (checked above)
                raise ConfigError("No JWT key is configured")
            self._jwks = _JWKSFile(path)
            family = _RSA_ALGORITHMS | _EC_ALGORITHMS
            default = ["RS256", "ES256"]
        algorithms = settings.jwt_algorithms or default
        wrong = sorted(set(algorithms) - family)
        if wrong:
            raise ConfigError(
                f"MODELSERVE_JWT_ALGORITHMS: {', '.join(wrong)} cannot be verified with the "
                f"configured key (use {', '.join(sorted(family))})"
            )
        self.algorithms: list[str] = list(algorithms)

    def verify(self, token: str) -> Principal:
        """The caller a valid token names.

        :raises Unauthenticated: saying why the token is refused (expired, not yet valid,
            another issuer or audience, a bad signature, an unknown key).
        """
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in self.algorithms:
                raise Unauthenticated(
                    f"The token's algorithm {algorithm!r} is not accepted", token_sent=True
                )
            key = self._key if self._jwks is None else self._jwks.key_for(header.get("kid"))
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The token has expired", token_sent=True) from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("The token is not valid yet (nbf)", token_sent=True) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                "The token was not issued for this server (aud)", token_sent=True
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                "The token's issuer is not trusted (iss)", token_sent=True
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "The token's signature does not verify", token_sent=True
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(
                f"The token has no {exc.claim!r} claim", token_sent=True
            ) from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError):
            raise Unauthenticated("The token is not a valid JWT", token_sent=True) from None
        subject = claims.get("sub")
        return Principal(
            name=subject if isinstance(subject, str) and subject else "jwt",
            scopes=scopes_from_claim(claims.get(self._claim)),
            source="jwt",
        )


def _read_public_key(path: Path) -> RSAPublicKey | EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"MODELSERVE_JWT_PUBLIC_KEY_FILE: {path} is not a readable PEM public key: {exc}"
        ) from exc
    if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey):
        raise ConfigError(f"MODELSERVE_JWT_PUBLIC_KEY_FILE: {path} must hold an RSA or EC key")
    return key


def _family_of(key: object, path: Path) -> tuple[frozenset[str], list[str]]:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    if isinstance(key, EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        algorithm = by_curve.get(key.curve.name)
        if algorithm is None:
            raise ConfigError(f"{path}: the EC curve {key.curve.name} is not supported")
        return frozenset({algorithm}), [algorithm]
    return _RSA_ALGORITHMS, ["RS256"]


class _JWKSFile:
    """A JWKS document on disk, re-read (at most once a second) when it changes."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self._interval = interval
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._keys: Mapping[str | None, Any] = {}
        self._checked = time.monotonic()
        self._load(strict=True)

    def key_for(self, kid: object) -> Any:
        now = time.monotonic()
        if now - self._checked >= self._interval and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                self._load(strict=False)
            finally:
                self._lock.release()
        keys = self._keys
        if isinstance(kid, str) and kid in keys:
            return keys[kid]
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        raise Unauthenticated("The token's signing key (kid) is unknown", token_sent=True)

    def _load(self, strict: bool) -> None:
        import jwt

        try:
            st = self.path.stat()
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            if signature == self._signature:
                return
            keys = jwt.PyJWKSet.from_json(self.path.read_text(encoding="utf-8")).keys
        except (OSError, jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as exc:
            message = f"MODELSERVE_JWT_JWKS_FILE: {self.path} is not a readable JWKS file: {exc}"
            if strict:
                raise ConfigError(message) from exc
            logger.error("%s; no token is accepted until it is fixed", message)
            self._signature, self._keys = None, {}
            return
        usable = {k.key_id: k.key for k in keys if k.key_type in ("RSA", "EC")}
        if strict and not usable:
            raise ConfigError(f"MODELSERVE_JWT_JWKS_FILE: {self.path} holds no RSA or EC key")
        self._signature, self._keys = signature, usable


class Authenticator:
    """Every credential one server accepts, and the decision for one request.

    Built once per worker (and once in the main process to check the settings and say what
    is protected); safe to share between threads.

    :raises ConfigError: for a keys file that is missing or invalid, or bad JWT settings.
    """

    def __init__(self, settings: ServerSettings, key_file_interval: float = 1.0) -> None:
        self._env: tuple[str, Principal] | None = None
        if settings.api_key is not None:
            key = settings.api_key.get_secret_value()
            if not key:
                raise ConfigError("MODELSERVE_API_KEY is empty")
            principal = Principal("MODELSERVE_API_KEY", SCOPES, source="api_key")
            self._env = (hash_key(key), principal)
        self._file: KeyFile | None = None
        if settings.keys_file is not None:
            path = settings.keys_file
            if not path.is_file():
                raise ConfigError(
                    f"MODELSERVE_KEYS_FILE: {path} does not exist; create a key first: "
                    f"modelserve keys create NAME --scope predict --keys-file {path}"
                )
            read_keys(path)  # fail at start, naming the problem, not at the first request
            self._file = KeyFile(path, key_file_interval)
        jwt_configured = any(
            value is not None
            for value in (settings.jwt_secret, settings.jwt_public_key_file, settings.jwt_jwks_file)
        )
        self._jwt = JWTVerifier(settings) if jwt_configured else None
        self._snapshot: tuple[KeyRecord, ...] | None = None
        #: Every stored hash and its principal: the env key's, then the keys file's as of
        #: ``_snapshot`` (rebuilt only when the file's records change).
        self._principals: tuple[tuple[str, Principal], ...] = (
            (self._env,) if self._env is not None else ()
        )

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured: then every route but the public ones needs one."""
        return self._env is not None or self._file is not None or self._jwt is not None

    def authenticate(self, credential: str) -> Principal:
        """The caller ``credential`` (a key or a JWT) belongs to.

        A value shaped like a JWT is verified as one when JWT is configured; anything else is
        an API key.

        :raises Unauthenticated: for an unknown or revoked key, or a token that does not verify.
        """
        if self._jwt is not None and looks_like_jwt(credential):
            return self._jwt.verify(credential)
        digest = hash_key(credential)
        found = None
        for stored, principal in self._candidates():
            # No early exit: every comparison runs, whichever key matches.
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise Unauthenticated("Invalid API key", token_sent=True)
        return found

    def _candidates(self) -> tuple[tuple[str, Principal], ...]:
        if self._file is None:
            return self._principals
        records = self._file.records()
        if records is not self._snapshot:  # the file changed: rebuild the principals once
            env = (self._env,) if self._env is not None else ()
            self._principals = env + tuple(
                (r.hash, Principal(r.name, r.scopes, r.models, "keys_file")) for r in records
            )
            self._snapshot = records
        return self._principals

    def describe(self) -> str:
        """One line for the start-up log: what protects the routes, or that nothing does."""
        if not self.enabled:
            return (
                "authentication is OFF: no API key, keys file or JWT issuer is configured, so "
                "the prediction routes are open to anyone who can reach the server; the admin "
                "routes stay closed (403). Protect them: modelserve keys create NAME "
                "--scope predict --keys-file FILE, then MODELSERVE_KEYS_FILE=FILE"
            )
        sources = []
        if self._env is not None:
            sources.append("MODELSERVE_API_KEY")
        if self._file is not None:
            sources.append(f"{len(self._file.records())} key(s) in {self._file.path}")
        if self._jwt is not None:
            sources.append(f"JWTs from {self._jwt.issuer} ({', '.join(self._jwt.algorithms)})")
        return "authentication is on: " + "; ".join(sources)


def authorize(
    principal: Principal | None, scope: str, model: str | None, enabled: bool = True
) -> None:
    """Check that ``principal`` may use a route that needs ``scope`` (for ``model``).

    :param enabled: whether authentication is on; when it is off only the admin routes are
        refused (nothing could grant them).
    :raises Unauthenticated: no credential, while one is needed.
    :raises Forbidden: the credential lacks the scope or the model; or an admin route while
        no admin credential can exist.
    """
    if not enabled:
        if scope == SCOPE_ADMIN:
            raise Forbidden(
                "The admin API is closed: no credential is configured that could open it. Set "
                "MODELSERVE_API_KEY, or create a key with `modelserve keys create NAME "
                "--scope admin` and set MODELSERVE_KEYS_FILE",
                SCOPE_ADMIN,
            )
        return
    if principal is None:
        raise Unauthenticated(
            "Authentication required: send an API key in X-API-Key or "
            "'Authorization: Bearer <key or token>'"
        )
    if scope not in principal.scopes:
        raise Forbidden(f"The credential {principal.name!r} lacks the {scope!r} scope", scope)
    if not principal.allows(scope, model):
        raise Forbidden(f"The credential {principal.name!r} may not use model {model!r}", scope)
