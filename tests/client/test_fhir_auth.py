"""Auth schemes: SMART Backend Services assertion JWT and token caching, static schemes, the factory."""

from __future__ import annotations

import base64

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from integration.errors import ConfigError, FhirAuthError, FhirTemporaryError
from integration.fhir.auth import (
    ASSERTION_TYPE,
    AuthTransport,
    BasicAuth,
    BearerAuth,
    NoAuth,
    SmartBackendAuth,
    auth_from_settings,
    public_jwk,
)
from integration.fhir.client import FhirClient
from tests.client.conftest import ScriptedServer, TokenEndpoint

TOKEN_URL = "https://auth.example.test/token"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def public_key(pem: bytes):
    return serialization.load_pem_private_key(pem, password=None).public_key()


def bound(auth: SmartBackendAuth, fhir) -> requests.Session:
    session = requests.Session()
    auth.bind(AuthTransport(session, fhir.base_url, timeout=5.0))
    return session


# --- the client assertion ------------------------------------------------------------------------


def test_assertion_claims_and_header(rsa_pem):
    clock = Clock()
    auth = SmartBackendAuth("ptbill-client", rsa_pem, clock=clock)
    token = auth.client_assertion(TOKEN_URL)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        public_key(rsa_pem),
        algorithms=["RS384"],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert header["alg"] == "RS384"
    assert header["typ"] == "JWT"
    assert header["kid"] == public_jwk(public_key(rsa_pem), "RS384")["kid"] == auth.kid
    assert "jku" not in header
    assert claims["iss"] == claims["sub"] == "ptbill-client"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(clock.t)
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert len(claims["jti"]) >= 16
    assert (
        claims["jti"]
        != jwt.decode(auth.client_assertion(TOKEN_URL), options={"verify_signature": False})["jti"]
    )


def test_assertion_verifies_with_registered_jwks_and_fails_with_another_key(rsa_pem):
    auth = SmartBackendAuth("c", rsa_pem, kid="key-2024", jku="https://ptbill.example/jwks.json")
    token = auth.client_assertion(TOKEN_URL)
    header = jwt.get_unverified_header(token)
    assert header["kid"] == "key-2024" and header["jku"] == "https://ptbill.example/jwks.json"
    (jwk,) = auth.public_jwks()["keys"]
    assert jwk["kid"] == "key-2024" and jwk["alg"] == "RS384" and "d" not in jwk  # no private part
    key = jwt.PyJWK(jwk).key
    assert jwt.decode(token, key, algorithms=["RS384"], audience=TOKEN_URL)["iss"] == "c"
    other = SmartBackendAuth("c", _fresh_rsa_pem())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(other.client_assertion(TOKEN_URL), key, algorithms=["RS384"], audience=TOKEN_URL)


def _fresh_rsa_pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_es384_assertion(ec_pem):
    auth = SmartBackendAuth("c", ec_pem, alg="ES384")
    token = auth.client_assertion(TOKEN_URL)
    assert jwt.get_unverified_header(token)["alg"] == "ES384"
    assert jwt.decode(token, public_key(ec_pem), algorithms=["ES384"], audience=TOKEN_URL)["sub"] == "c"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alg": "HS256"}, "alg must be one of"),
        ({"alg": "ES384"}, "needs an EC"),
        ({"client_id": ""}, "client_id"),
    ],
)
def test_smart_config_errors(rsa_pem, kwargs, message):
    args = {"client_id": "c", "private_key_pem": rsa_pem, **kwargs}
    with pytest.raises(ConfigError, match=message):
        SmartBackendAuth(**args)


def test_bad_pem_does_not_echo_key_material():
    secret = b"-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as info:
        SmartBackendAuth("c", secret)
    assert "TOPSECRET" not in str(info.value)


def test_rsa_key_with_es_alg_rejected(rsa_pem, ec_pem):
    with pytest.raises(ConfigError):
        SmartBackendAuth("c", ec_pem, alg="RS384")
    with pytest.raises(ConfigError):
        SmartBackendAuth("c", ec_pem, alg="ES256")  # P-384 key, P-256 alg


# --- token endpoint, discovery, caching ------------------------------------------------------------


def test_token_request_discovers_endpoint_and_posts_assertion(fhir, rsa_pem, token_endpoint):
    auth = SmartBackendAuth("ptbill", rsa_pem, scope="system/Encounter.read system/ChargeItem.write")
    bound(auth, fhir)
    headers: dict[str, str] = {}
    auth.apply(headers)
    assert headers == {"Authorization": "Bearer tok-1"}
    (form,) = token_endpoint.forms
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/Encounter.read system/ChargeItem.write"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    claims = jwt.decode(
        form["client_assertion"],
        public_key(rsa_pem),
        algorithms=["RS384"],
        audience=f"{fhir.root}/auth/token",
    )
    assert claims["iss"] == "ptbill"
    assert auth.token_endpoint() == f"{fhir.root}/auth/token"
    assert len(fhir.to("/fhir/.well-known/smart-configuration")) == 1  # discovered once


def test_token_cached_until_60s_before_expiry_and_invalidate(fhir, rsa_pem, token_endpoint):
    clock = Clock()
    token_endpoint.expires_in = 300
    auth = SmartBackendAuth("ptbill", rsa_pem, clock=clock)
    bound(auth, fhir)
    assert auth.access_token() == "tok-1"
    clock.t += 239
    assert auth.access_token() == "tok-1"  # still > 60 s left
    clock.t += 1
    assert auth.access_token() == "tok-2"  # 60 s before expiry: refreshed
    assert auth.access_token() == "tok-2"
    auth.invalidate()
    assert auth.access_token() == "tok-3"
    assert auth.token_requests == 3


def test_short_lived_token_margin_is_halved(fhir, rsa_pem, token_endpoint):
    clock = Clock()
    token_endpoint.expires_in = 20
    auth = SmartBackendAuth("ptbill", rsa_pem, clock=clock)
    bound(auth, fhir)
    assert auth.access_token() == "tok-1"
    clock.t += 9
    assert auth.access_token() == "tok-1"
    clock.t += 1
    assert auth.access_token() == "tok-2"


def test_configured_token_url_skips_discovery(fhir, rsa_pem):
    ep_calls = []

    def token(req):
        ep_calls.append(req)
        return fhir.json(200, {"access_token": "abc", "token_type": "Bearer", "expires_in": 600})

    fhir.on("POST", "/oauth/token", token)
    auth = SmartBackendAuth("ptbill", rsa_pem, token_url=f"{fhir.root}/oauth/token")
    bound(auth, fhir)
    assert auth.access_token() == "abc"
    assert [r.path for r in fhir.requests] == ["/oauth/token"]


def test_discovery_falls_back_to_capability_statement(fhir, rsa_pem):
    fhir.on("GET", "/fhir/.well-known/smart-configuration", fhir.outcome(404, "no"))
    oauth = {
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": [{"url": "token", "valueUri": f"{fhir.root}/t"}],
    }
    fhir.on("GET", "/fhir/metadata", fhir.json(200, {"rest": [{"security": {"extension": [oauth]}}]}))
    auth = SmartBackendAuth("ptbill", rsa_pem)
    bound(auth, fhir)
    assert auth.token_endpoint() == f"{fhir.root}/t"


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://auth.attacker.example/token",  # another host
        "http://127.0.0.1:{other}/auth/token",  # same host, another port
        "https://127.0.0.1:{port}/auth/token",  # same host and port, another scheme
    ],
)
def test_discovered_token_endpoint_on_another_origin_is_refused(fhir, rsa_pem, elsewhere):
    """The signed client assertion is never sent to a host the discovery document merely names."""
    url = elsewhere.format(port=fhir.port, other=fhir.port + 1)
    fhir.on("GET", "/fhir/.well-known/smart-configuration", fhir.json(200, {"token_endpoint": url}))
    auth = SmartBackendAuth("ptbill", rsa_pem)
    bound(auth, fhir)
    with pytest.raises(FhirAuthError, match="not on the FHIR server's origin") as info:
        auth.access_token()
    assert "PTBILL_SMART_TOKEN_URL" in str(info.value)
    assert "eyJ" not in str(info.value)
    assert [r.path for r in fhir.requests] == ["/fhir/.well-known/smart-configuration"]  # nothing posted


def test_capability_statement_token_endpoint_on_another_origin_is_refused(fhir, rsa_pem):
    fhir.on("GET", "/fhir/.well-known/smart-configuration", fhir.outcome(404, "no"))
    oauth = {
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": [{"url": "token", "valueUri": "https://auth.elsewhere.example/t"}],
    }
    fhir.on("GET", "/fhir/metadata", fhir.json(200, {"rest": [{"security": {"extension": [oauth]}}]}))
    auth = SmartBackendAuth("ptbill", rsa_pem)
    bound(auth, fhir)
    with pytest.raises(FhirAuthError, match="origin"):
        auth.token_endpoint()


def test_same_origin_with_default_port_spelled_out_is_accepted(rsa_pem):
    from integration.fhir.auth import origin

    assert origin("https://EMR.example/fhir") == origin("https://emr.example:443/oauth/token")
    assert origin("http://emr.example/fhir") != origin("https://emr.example/fhir")


def test_explicit_token_url_on_another_origin_is_trusted(fhir, rsa_pem):
    """An operator who configures PTBILL_SMART_TOKEN_URL decides: no discovery, no origin check."""
    other = ScriptedServer()
    try:
        other.on("POST", "/oauth/token", TokenEndpoint())
        auth = SmartBackendAuth("ptbill", rsa_pem, token_url=f"{other.root}/oauth/token")
        bound(auth, fhir)
        assert auth.access_token() == "tok-1"
        assert fhir.requests == []  # discovery was not even asked
        form = other.to("/oauth/token")[0].body.decode()
        assert "client_assertion=" in form
    finally:
        other.stop()


def test_settings_token_url_reaches_the_auth(fhir, rsa_pem):
    from integration.runner import make_client
    from integration.settings import Settings

    s = Settings.from_env(
        {
            "PTBILL_FHIR_BASE_URL": fhir.base_url,
            "PTBILL_FHIR_AUTH": "smart",
            "PTBILL_SMART_CLIENT_ID": "ptbill",
            "PTBILL_SMART_PRIVATE_KEY": rsa_pem.decode(),
            "PTBILL_SMART_TOKEN_URL": "https://auth.elsewhere.example/token",
        }
    )
    with make_client(s) as client:
        assert client.auth is not None
        assert client.auth.token_endpoint() == "https://auth.elsewhere.example/token"


def test_no_token_endpoint_anywhere_is_an_auth_error(fhir, rsa_pem):
    fhir.on("GET", "/fhir/.well-known/smart-configuration", fhir.outcome(404, "no"))
    fhir.on("GET", "/fhir/metadata", fhir.json(200, {"resourceType": "CapabilityStatement"}))
    auth = SmartBackendAuth("ptbill", rsa_pem)
    bound(auth, fhir)
    with pytest.raises(FhirAuthError, match="token endpoint"):
        auth.access_token()


@pytest.mark.parametrize(
    ("reply", "exc"),
    [
        (("json", 400, {"error": "invalid_scope", "error_description": "no"}), FhirAuthError),
        (("json", 401, {"error": "invalid_client"}), FhirAuthError),
        (("json", 503, {"error": "temporarily_unavailable"}), FhirTemporaryError),
        (("json", 200, {"token_type": "bearer"}), FhirAuthError),
        (("json", 200, {"access_token": "x", "token_type": "mac"}), FhirAuthError),
        (("reset",), FhirTemporaryError),
    ],
)
def test_token_endpoint_failures(fhir, rsa_pem, reply, exc):
    r = fhir.json(*reply[1:]) if reply[0] == "json" else fhir.reset()
    fhir.on("POST", "/auth/token", r)
    auth = SmartBackendAuth("ptbill", rsa_pem, token_url=f"{fhir.root}/auth/token")
    bound(auth, fhir)
    with pytest.raises(exc) as info:
        auth.access_token()
    assert type(info.value) is exc
    assert "client_assertion" not in str(info.value) and "eyJ" not in str(info.value)


def test_unbound_smart_auth_is_a_config_error(rsa_pem):
    with pytest.raises(ConfigError, match="not bound"):
        SmartBackendAuth("c", rsa_pem).access_token()


def test_client_binds_smart_auth_and_token_goes_through_its_session(fhir, rsa_pem, token_endpoint):
    enc = {"resourceType": "Encounter", "id": "e1"}
    fhir.on("GET", "/fhir/Encounter/e1", fhir.json(200, enc), fhir.json(200, enc))
    auth = SmartBackendAuth("ptbill", rsa_pem)
    with FhirClient(fhir.base_url, auth=auth, user_agent="ua-test") as c:
        c.read("Encounter", "e1")
        c.read("Encounter", "e1")
    token_req = fhir.to("/auth/token")[0]
    assert token_req.headers["user-agent"] == "ua-test"
    assert len(token_endpoint.forms) == 1  # cached across requests
    assert [r.headers["authorization"] for r in fhir.to("/fhir/Encounter/e1")] == ["Bearer tok-1"] * 2


# --- static schemes, reprs, factory ----------------------------------------------------------------


def test_static_schemes_apply_headers():
    h: dict[str, str] = {}
    BasicAuth("user", "pa:ss").apply(h)
    assert base64.b64decode(h["Authorization"].split()[1]) == b"user:pa:ss"
    BearerAuth("tkn").apply(h)
    assert h["Authorization"] == "Bearer tkn"
    h2: dict[str, str] = {}
    NoAuth().apply(h2)
    assert h2 == {}
    assert not BasicAuth("u", "p").refreshable and not BearerAuth("t").refreshable
    assert SmartBackendAuth.refreshable


def test_reprs_redact_secrets(fhir, rsa_pem, token_endpoint):
    smart = SmartBackendAuth("ptbill", rsa_pem)
    bound(smart, fhir)
    token = smart.access_token()
    texts = [
        repr(BasicAuth("alice", "hunter2")),
        repr(BearerAuth("tok-secret")),
        repr(smart),
        repr(FhirClient(fhir.base_url, auth=BearerAuth("tok-secret"))),
    ]
    joined = "\n".join(texts)
    for secret in ("hunter2", "tok-secret", token, "PRIVATE KEY", "MII"):
        assert secret not in joined
    assert "alice" in texts[0] and "ptbill" in texts[2]


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        (None, {}, NoAuth),
        ("none", {"token": "ignored"}, NoAuth),
        ("BASIC", {"user": "u", "password": "p"}, BasicAuth),
        ("bearer", {"token": "t"}, BearerAuth),
        ("smart", {"client_id": "c", "private_key_pem": "PEM", "scope": "system/*.read"}, SmartBackendAuth),
        ("smart", {"client_id": "c", "private_key_path": "PATH"}, SmartBackendAuth),
    ],
)
def test_auth_from_settings(kind, values, expected, rsa_pem, tmp_path):
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(rsa_pem)
    vals = {
        k: (rsa_pem.decode() if v == "PEM" else str(key_file) if v == "PATH" else v)
        for k, v in values.items()
    }
    auth = auth_from_settings(kind, **vals)
    assert type(auth) is expected
    if expected is SmartBackendAuth:
        assert auth.scope == values.get("scope", auth.scope)


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        ("basic", {"user": "u"}, "'password'"),
        ("bearer", {"token": ""}, "'token'"),
        ("smart", {"client_id": "c"}, "private_key"),
        ("smart", {"client_id": "c", "private_key_path": "/nonexistent/key.pem"}, "cannot read"),
        ("kerberos", {}, "unknown auth kind"),
    ],
)
def test_auth_from_settings_errors(kind, values, message):
    with pytest.raises(ConfigError, match=message):
        auth_from_settings(kind, **values)
