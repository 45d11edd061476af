"""Keys, scopes and JWTs without HTTP: what is accepted, what is refused and why."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from modelserve.errors import ConfigError
from modelserve.errors import Forbidden
from modelserve.errors import Unauthenticated
from modelserve.keys import create_key
from modelserve.keys import revoke_key
from modelserve.security import Authenticator
from modelserve.security import Principal
from modelserve.security import authorize
from modelserve.security import credential_from_headers
from modelserve.security import looks_like_jwt
from modelserve.security import scopes_from_claim
from modelserve.settings import ServerSettings

ISSUER = "https://issuer.example"
AUDIENCE = "modelserve-tests"
SECRET = "s" * 64


def _settings(**kwargs: Any) -> ServerSettings:
    return ServerSettings(profile="testing", **kwargs)


def _jwt_settings(**kwargs: Any) -> ServerSettings:
    return _settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **kwargs)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": now + 600,
        "nbf": now - 10,
        "scope": "predict",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- credentials and scopes -------------------------------------------------------------------


def test_credentials_come_from_either_header() -> None:
    assert credential_from_headers(None, None) is None
    assert credential_from_headers("Bearer abc", None) == "abc"
    assert credential_from_headers("bearer  abc ", None) == "abc"
    assert credential_from_headers(None, " abc ") == "abc"
    for auth, key, message in [
        ("Basic dXNlcjpwdw==", None, "must be 'Bearer"),
        ("Bearer ", None, "no token"),
        (None, "", "empty"),
        ("Bearer abc", "abc", "not both"),
    ]:
        with pytest.raises(Unauthenticated, match=message) as info:
            credential_from_headers(auth, key)
        assert info.value.token_sent


def test_jwt_shape_and_scope_claims() -> None:
    assert looks_like_jwt("eyJh.eyJz.c2ln") and not looks_like_jwt("ms_abc-def_ghi")
    assert not looks_like_jwt("a.b") and not looks_like_jwt("a b.c.d")
    assert scopes_from_claim("predict admin other") == {"predict", "admin"}
    assert scopes_from_claim(["admin", 3, "x"]) == {"admin"}
    assert scopes_from_claim({"predict": True}) == frozenset()
    assert scopes_from_claim(None) == frozenset()


def test_principal_scopes_and_models() -> None:
    limited = Principal("ci", frozenset({"predict"}), frozenset({"iris"}))
    assert limited.allows("predict", "iris") and limited.allows("predict", None)
    assert not limited.allows("predict", "forest") and not limited.allows("admin")
    admin = Principal("ops", frozenset({"admin"}))
    assert admin.allows("admin", "anything") and not admin.allows("predict", "iris")


def test_authorize_decides_401_and_403() -> None:
    limited = Principal("ci", frozenset({"predict"}), frozenset({"iris"}))
    authorize(limited, "predict", "iris")
    with pytest.raises(Unauthenticated, match="Authentication required") as missing:
        authorize(None, "predict", "iris")
    assert not missing.value.token_sent
    with pytest.raises(Forbidden, match="lacks the 'admin' scope") as scope:
        authorize(limited, "admin", None)
    assert scope.value.scope == "admin"
    with pytest.raises(Forbidden, match="may not use model 'forest'"):
        authorize(limited, "predict", "forest")
    authorize(None, "predict", "iris", enabled=False)  # open while auth is off
    with pytest.raises(Forbidden, match="admin API is closed"):
        authorize(None, "admin", None, enabled=False)


# -- API keys ---------------------------------------------------------------------------------


def test_no_credential_configured_means_auth_off() -> None:
    auth = Authenticator(_settings())
    assert not auth.enabled
    assert "authentication is OFF" in auth.describe()
    assert "open to anyone" in auth.describe()


def test_the_env_key_grants_admin_and_predict() -> None:
    auth = Authenticator(_settings(api_key="k" * 32))
    assert auth.enabled and "MODELSERVE_API_KEY" in auth.describe()
    principal = auth.authenticate("k" * 32)
    assert principal.scopes == {"admin", "predict"} and principal.source == "api_key"
    for wrong in ("k" * 31, "k" * 33, "K" * 32, ""):
        with pytest.raises(Unauthenticated, match="Invalid API key"):
            auth.authenticate(wrong)


def test_keys_file_keys_and_revocation(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    ci = create_key(path, "ci", ["predict"], ["iris"])
    ops = create_key(path, "ops", ["admin"])
    auth = Authenticator(_settings(keys_file=path), key_file_interval=0)
    assert "2 key(s) in" in auth.describe()
    assert auth.authenticate(ci) == Principal("ci", frozenset({"predict"}), frozenset({"iris"}))
    assert auth.authenticate(ops).scopes == {"admin"}
    revoke_key(path, "ci")
    with pytest.raises(Unauthenticated):
        auth.authenticate(ci)
    assert auth.authenticate(ops).name == "ops"


def test_a_configured_keys_file_must_exist_and_be_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create a key first"):
        Authenticator(_settings(keys_file=tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[x]\nhash = 1\n")
    with pytest.raises(ConfigError, match="needs hash"):
        Authenticator(_settings(keys_file=bad))


def test_an_empty_keys_file_keeps_auth_on_and_lets_no_one_in(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    key = create_key(path, "a", ["predict"])
    revoke_key(path, "a")
    auth = Authenticator(_settings(keys_file=path))
    assert auth.enabled
    with pytest.raises(Unauthenticated):
        auth.authenticate(key)


# -- JWT --------------------------------------------------------------------------------------


def test_hs256_tokens_are_verified() -> None:
    auth = Authenticator(_jwt_settings(jwt_secret=SECRET))
    assert auth.enabled and "JWTs from https://issuer.example (HS256)" in auth.describe()
    token = jwt.encode(_claims(scope="predict admin"), SECRET, algorithm="HS256")
    principal = auth.authenticate(token)
    assert principal == Principal("alice", frozenset({"predict", "admin"}), source="jwt")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": "https://evil.example"}, "issuer is not trusted"),
        ({"aud": "another-service"}, "not issued for this server"),
        ({"exp": None}, "no 'exp' claim"),
        ({"aud": None}, "no 'aud' claim"),
        ({"iss": None}, "no 'iss' claim"),
    ],
)
def test_bad_claims_are_refused(claims: dict[str, Any], message: str) -> None:
    auth = Authenticator(_jwt_settings(jwt_secret=SECRET))
    token = jwt.encode(_claims(**claims), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match=message) as info:
        auth.authenticate(token)
    assert info.value.token_sent


def test_leeway_allows_small_clock_skew() -> None:
    auth = Authenticator(_jwt_settings(jwt_secret=SECRET, jwt_leeway=30))
    token = jwt.encode(_claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert auth.authenticate(token).name == "alice"
    strict = Authenticator(_jwt_settings(jwt_secret=SECRET, jwt_leeway=0))
    with pytest.raises(Unauthenticated, match="expired"):
        strict.authenticate(token)


def test_forged_signatures_are_refused() -> None:
    auth = Authenticator(_jwt_settings(jwt_secret=SECRET))
    forged = jwt.encode(_claims(scope="admin"), "x" * 64, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        auth.authenticate(forged)
    # The same claims with a tampered payload and the original signature.
    good = jwt.encode(_claims(), SECRET, algorithm="HS256")
    head, _, sig = good.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(scope="admin")).encode()).rstrip(b"=")
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        auth.authenticate(f"{head}.{payload.decode()}.{sig}")


def test_alg_none_and_other_algorithms_are_refused() -> None:
    auth = Authenticator(_jwt_settings(jwt_secret=SECRET))
    unsigned = jwt.encode(_claims(scope="admin"), None, algorithm="none")
    with pytest.raises(Unauthenticated, match="algorithm 'none' is not accepted"):
        auth.authenticate(unsigned)
    hs512 = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated, match="'HS512' is not accepted"):
        auth.authenticate(hs512)
    with pytest.raises(Unauthenticated, match="not a valid JWT"):
        auth.authenticate("eyJh.eyJz.c2ln")


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_public_key_tokens_are_verified(
    kind: str,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
) -> None:
    private = rsa_key if kind == "rsa" else ec_key
    algorithm = "RS256" if kind == "rsa" else "ES256"
    pem = _pem(private, tmp_path / "public.pem")
    auth = Authenticator(_jwt_settings(jwt_public_key_file=pem))
    token = jwt.encode(_claims(scp=["admin"], scope=None), private, algorithm=algorithm)
    assert auth.authenticate(token).scopes == frozenset()  # scope claim is "scope" by default
    custom = Authenticator(_jwt_settings(jwt_public_key_file=pem, jwt_scopes_claim="scp"))
    assert custom.authenticate(token).scopes == {"admin"}
    other = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        auth.authenticate(jwt.encode(_claims(), other, algorithm=algorithm))


def test_a_public_key_is_never_used_as_an_hmac_secret(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Algorithm confusion: an HS256 token signed with the (public) PEM as the secret."""
    pem = _pem(rsa_key, tmp_path / "public.pem")
    auth = Authenticator(_jwt_settings(jwt_public_key_file=pem))
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(scope="admin")).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signing_input = header + b"." + payload
    mac = hmac.new(pem.read_bytes(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    with pytest.raises(Unauthenticated, match="'HS256' is not accepted"):
        auth.authenticate(token)
    with pytest.raises(ConfigError, match="HS256 cannot be verified"):
        Authenticator(_jwt_settings(jwt_public_key_file=pem, jwt_algorithms=["HS256"]))


def test_jwks_file_picks_the_key_by_kid_and_follows_rotation(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    def jwk(private: Any, kid: str) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else jwt.algorithms.ECAlgorithm
        )
        data: dict[str, Any] = json.loads(algorithm.to_jwk(private.public_key()))
        return {**data, "kid": kid}

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1")]}))
    auth = Authenticator(_jwt_settings(jwt_jwks_file=path))
    rs = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(_claims(sub="bob"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert auth.authenticate(rs).name == "alice"
    assert auth.authenticate(es).name == "bob"
    unknown = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-9"})
    with pytest.raises(Unauthenticated, match=r"signing key \(kid\) is unknown"):
        auth.authenticate(unknown)
    # A token whose kid names the EC key but is signed with RSA does not verify.
    mixed = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
    with pytest.raises(Unauthenticated):
        auth.authenticate(mixed)
    # Rotation: the issuer drops rsa-1; within about a second its tokens stop working.
    path.write_text(json.dumps({"keys": [jwk(ec_key, "ec-1")]}))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            auth.authenticate(rs)
        except Unauthenticated:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a key removed from the JWKS file was still accepted after 3 s")
    assert auth.authenticate(es).name == "bob"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jwt_secret": SECRET, "jwt_issuer": None}, "MODELSERVE_JWT_ISSUER"),
        ({"jwt_secret": SECRET, "jwt_audience": None}, "MODELSERVE_JWT_AUDIENCE"),
        ({"jwt_secret": "short"}, "at least 32 bytes"),
        ({"jwt_secret": SECRET, "jwt_algorithms": ["RS256"]}, "RS256 cannot be verified"),
        ({"jwt_secret": SECRET, "jwt_algorithms": ["none"]}, "none cannot be verified"),
    ],
)
def test_bad_jwt_settings_fail_at_start(kwargs: dict[str, Any], message: str) -> None:
    settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Authenticator(_settings(**settings))


def test_one_jwt_key_source_only(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key, tmp_path / "public.pem")
    with pytest.raises(ConfigError, match="Set one JWT key"):
        Authenticator(_jwt_settings(jwt_secret=SECRET, jwt_public_key_file=pem))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not a readable PEM public key"):
        Authenticator(_jwt_settings(jwt_public_key_file=tmp_path / "junk.pem"))
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a readable JWKS file"):
        Authenticator(_jwt_settings(jwt_jwks_file=tmp_path / "junk.json"))


def test_keys_and_jwts_side_by_side(tmp_path: Path) -> None:
    """A bearer value is a JWT when it looks like one (and JWT is on), else an API key."""
    auth = Authenticator(_jwt_settings(jwt_secret=SECRET, api_key="k" * 32))
    assert auth.authenticate("k" * 32).source == "api_key"
    assert auth.authenticate(jwt.encode(_claims(), SECRET, algorithm="HS256")).source == "jwt"


def test_security_settings_survive_the_worker_hand_off(tmp_path: Path) -> None:
    from modelserve.settings import settings_from_json
    from modelserve.settings import settings_to_json

    original = _jwt_settings(
        jwt_secret=SECRET,
        api_key="k" * 32,
        keys_file=tmp_path / "keys.toml",
        public_paths=["/health"],
        cors_origins=["https://a.example"],
        proxy_hops=1,
    )
    rebuilt = settings_from_json(settings_to_json(original), ServerSettings)
    assert rebuilt == original
    assert rebuilt.jwt_secret is not None and rebuilt.jwt_secret.get_secret_value() == SECRET
    assert rebuilt.api_key is not None and rebuilt.api_key.get_secret_value() == "k" * 32
