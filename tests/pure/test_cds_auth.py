"""The EHR's JWT on CDS Hooks calls: RS384/ES384 accepted from an allow-listed issuer with its own JWKS;
expired, foreign, replayed, wrongly addressed, unsigned or symmetric tokens refused with a reason.
(The JWKS fetch and the replay store are injected: no network, no Redis here.)"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from integration.fhir.auth import public_jwk
from integration.hook_auth import HookAuthError, HookVerifier, JwksCache

ISS = "https://ehr.example.org"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
AUD = "https://ptbill.example/cds-services/ptbill-encounter-discharge"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = {
    "keys": [
        public_jwk(RSA_KEY.public_key(), "RS384", "rsa-1"),
        public_jwk(EC_KEY.public_key(), "ES384", "ec-1"),
    ]
}


class MemoryReplay:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first_use(self, key: str, ttl: int) -> bool:
        assert ttl > 0
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class Fetcher:
    def __init__(self, jwks: dict[str, Any]):
        self.jwks = jwks
        self.calls = 0

    def __call__(self, url: str) -> dict[str, Any]:
        assert url == JWKS_URL
        self.calls += 1
        return self.jwks


def verifier(fetch: Fetcher | None = None, clock=time.monotonic) -> HookVerifier:
    return HookVerifier(
        clients={ISS: JWKS_URL},
        algorithms=("RS384", "ES384"),
        jwks=JwksCache(fetch or Fetcher(JWKS), clock=clock),
        replay=MemoryReplay(),
    )


def token(
    key: Any = RSA_KEY, alg: str = "RS384", kid: str = "rsa-1", headers: dict | None = None, **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": ISS, "aud": AUD, "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})})


@pytest.mark.parametrize(("key", "alg", "kid"), [(RSA_KEY, "RS384", "rsa-1"), (EC_KEY, "ES384", "ec-1")])
def test_valid_tokens_are_accepted(key, alg, kid):
    claims = verifier().verify("Bearer " + token(key, alg, kid, tenant="t1"), AUD)
    assert claims["iss"] == ISS and claims["tenant"] == "t1"


def test_aud_may_be_a_list_and_jku_may_name_the_registered_jwks():
    v = verifier()
    assert v.verify("Bearer " + token(aud=[AUD]), AUD)
    assert v.verify("Bearer " + token(headers={"jku": JWKS_URL}), AUD)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "missing-token"),
        (lambda: "Basic dXNlcjpwYXNz", "missing-token"),
        (lambda: "Bearer not.a.jwt", "malformed-token"),
        (lambda: "Bearer " + token(exp=int(time.time()) - 120), "expired"),
        (lambda: "Bearer " + token(iat=int(time.time()) + 3600), "not-yet-valid"),
        (lambda: "Bearer " + token(aud="https://ptbill.example/cds-services/other"), "wrong-audience"),
        (lambda: "Bearer " + token(iss="https://evil.example"), "untrusted-issuer"),
        (lambda: "Bearer " + token(OTHER_KEY), "bad-signature"),  # a foreign key under a trusted kid
        (lambda: "Bearer " + token(kid="unknown"), "unknown-key"),
        (lambda: "Bearer " + token(EC_KEY, "ES384", "rsa-1"), "bad-signature"),  # kid of the RSA key
        (lambda: "Bearer " + token(headers={"jku": "https://evil.example/jwks"}), "jku-not-allowed"),
        (lambda: "Bearer " + token(jti=None), "missing-claim"),
        (lambda: "Bearer " + token(exp=None), "missing-claim"),
        (lambda: "Bearer " + token(RSA_KEY, "RS256"), "algorithm-not-allowed"),
        (
            lambda: (
                "Bearer "
                + jwt.encode(
                    {"iss": ISS, "aud": AUD},
                    "secret-secret-secret-secret-32b!",
                    algorithm="HS256",
                    headers={"kid": "rsa-1"},
                )
            ),
            "algorithm-not-allowed",
        ),
        (
            lambda: "Bearer " + jwt.encode({"iss": ISS, "aud": AUD}, None, algorithm="none"),
            "algorithm-not-allowed",
        ),
        (lambda: "Bearer " + token(headers={"typ": "at+jwt"}), "malformed-token"),
    ],
)
def test_refusals(make, reason):
    with pytest.raises(HookAuthError) as e:
        verifier().verify(make(), AUD)
    assert e.value.reason == reason


def test_a_token_is_accepted_once():
    v = verifier()
    t = "Bearer " + token()
    v.verify(t, AUD)
    with pytest.raises(HookAuthError) as e:
        v.verify(t, AUD)
    assert e.value.reason == "replayed"


def test_unknown_kids_refetch_the_jwks_at_most_every_30_seconds():
    now = [1000.0]
    fetch = Fetcher(JWKS)
    v = verifier(fetch, clock=lambda: now[0])
    v.verify("Bearer " + token(), AUD)
    for _ in range(5):
        with pytest.raises(HookAuthError):
            v.verify("Bearer " + token(kid="rotated"), AUD)
    assert fetch.calls == 1
    now[0] += 31
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fetch.jwks = {"keys": [*JWKS["keys"], public_jwk(rotated.public_key(), "RS384", "rotated")]}
    assert v.verify("Bearer " + token(rotated, kid="rotated"), AUD)  # key rotation picked up
    assert fetch.calls == 2
