"""Trusting the EHR on CDS Hooks calls (CDS Hooks 2.0 "Trusting CDS Clients"), with PyJWT.

Every service call carries ``Authorization: Bearer <JWT>`` signed with the EHR's private key. It is
accepted only when all of these hold, else ``HookAuthError`` (401, with a short reason code):

* the header names an allowed asymmetric ``alg`` (``PTBILL_CDS_ALGORITHMS``) and a ``kid``; ``typ``, when
  present, is ``JWT``;
* ``iss`` is allow-listed (``PTBILL_CDS_CLIENTS``: issuer -> JWKS URL); a ``jku`` header, when present,
  must be that same URL (ptbill never fetches a key set the token points at);
* the signature verifies with the key ``kid`` of that JWKS (kty and, when given, alg must match);
* ``aud`` is the URL of the service being called, ``exp`` is in the future, ``iat`` not in the future
  (30 s leeway), ``jti`` is present and has not been seen before from that issuer (replay guard in
  Redis, kept until the token expires).

The JWKS is cached (5 minutes); an unknown ``kid`` refetches it at most every 30 s, so forged tokens
naming a trusted issuer cannot hammer the EHR's key endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
import redis
import requests

from integration.errors import PtbillError

REPLAY_PREFIX = "ptbill:cds:jti"  # Redis keys of the jti replay guard (shared by every ptbill serve)
KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_JWKS_BYTES = 1_000_000


class HookAuthError(PtbillError):
    """The call is not from a trusted EHR. ``reason`` is a short code safe to log and return."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class KeyNotCached(Exception):
    """``check(fetch=False)`` needs the issuer's JWKS first (the caller fetches it off the event loop)."""


class ReplayGuard(Protocol):
    def first_use(self, key: str, ttl: int) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds."""


class RedisReplayGuard:
    def __init__(self, client: redis.Redis, prefix: str = REPLAY_PREFIX):
        self.r = client
        self.prefix = prefix

    def first_use(self, key: str, ttl: int) -> bool:
        return bool(self.r.set(f"{self.prefix}:{key}", "1", nx=True, ex=max(1, ttl)))


def fetch_jwks(url: str, timeout: float) -> dict[str, Any]:
    """GET a JWK Set (bounded size, no redirects to elsewhere)."""
    with requests.get(url, timeout=timeout, stream=True, allow_redirects=False) as resp:
        if resp.status_code != 200:
            raise HookAuthError("jwks-unavailable", f"the issuer's JWKS answered HTTP {resp.status_code}")
        body = b""
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise HookAuthError("jwks-unavailable", "the issuer's JWKS is too large")
    try:
        data = json.loads(body)
    except ValueError:
        raise HookAuthError("jwks-unavailable", "the issuer's JWKS is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise HookAuthError("jwks-unavailable", "the issuer's JWKS has no keys")
    return data


@dataclass
class _Entry:
    keys: dict[str, dict[str, Any]]
    fetched: float
    parsed: dict[tuple[str, str], Any] = field(default_factory=dict)  # (kid, alg) -> public key object


class JwksCache:
    """JWK Sets by URL: cached for ``ttl`` s; a missing ``kid`` refetches at most every ``min_refetch`` s."""

    def __init__(
        self,
        fetch: Callable[[str], dict[str, Any]] | None = None,
        *,
        timeout: float = 5.0,
        ttl: float = 300.0,
        min_refetch: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fetch = fetch or (lambda url: fetch_jwks(url, timeout))
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def cached(self, url: str, kid: str) -> bool:
        """The key is in the cache and fresh, or a refetch would be throttled anyway (no fetch needed)."""
        entry = self._cache.get(url)
        if entry is None:
            return False
        age = self._clock() - entry.fetched
        return (kid in entry.keys and age < self.ttl) or age < self.min_refetch

    def public_key(self, url: str, kid: str, alg: str) -> Any:
        """The key object of ``kid`` for ``alg`` (built once per fetched JWKS)."""
        jwk = self.key(url, kid)
        entry = self._cache[url]
        found = entry.parsed.get((kid, alg))
        if found is None:
            found = jwt.PyJWK(jwk, algorithm=alg).key
            entry.parsed[(kid, alg)] = found
        return found

    def key(self, url: str, kid: str) -> dict[str, Any]:
        now = self._clock()
        entry = self._cache.get(url)
        if entry is not None and now - entry.fetched < self.ttl and kid in entry.keys:
            return entry.keys[kid]
        if entry is not None and now - entry.fetched < self.min_refetch:
            raise HookAuthError("unknown-key", "no key with this kid in the issuer's JWKS")
        with self._lock:
            entry = self._cache.get(url)
            if entry is None or self._clock() - entry.fetched >= self.min_refetch:
                data = self._fetch(url)
                keys = {
                    str(k["kid"]): k
                    for k in data.get("keys") or []
                    if isinstance(k, dict) and isinstance(k.get("kid"), str)
                }
                entry = _Entry(keys, self._clock())
                self._cache[url] = entry
        if kid not in entry.keys:
            raise HookAuthError("unknown-key", "no key with this kid in the issuer's JWKS")
        return entry.keys[kid]


@dataclass
class HookVerifier:
    clients: Mapping[str, str]  # iss -> JWKS URL
    algorithms: tuple[str, ...]
    jwks: JwksCache
    replay: ReplayGuard
    leeway: float = 30.0
    clock: Callable[[], float] = field(default=time.time)

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims of the call's JWT, or HookAuthError."""
        claims, replay_key, ttl = self.check(authorization, audience)
        if not self.replay.first_use(replay_key, ttl):
            raise HookAuthError("replayed", "this JWT (jti) was already used")
        return claims

    @staticmethod
    def _parse(authorization: str | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The token, its header and its claims, unverified: only to pick the issuer's key (PyJWT then
        verifies the token in full)."""
        if not authorization or not authorization.startswith("Bearer "):
            raise HookAuthError("missing-token", "the call carries no Authorization: Bearer <JWT>")
        token = authorization[len("Bearer ") :].strip()
        parts = token.split(".")
        try:
            if len(parts) != 3:
                raise ValueError("not three parts")
            header, claims = (
                json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]
            )
        except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
            raise HookAuthError("malformed-token", "the bearer token is not a JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise HookAuthError("malformed-token", "the bearer token is not a JWT")
        return token, header, claims

    def check(
        self, authorization: str | None, audience: str, *, fetch: bool = True
    ) -> tuple[dict[str, Any], str, int]:
        """Everything but the replay guard: (claims, replay key, seconds to remember the jti).
        ``fetch=False``: raise KeyNotCached instead of fetching the issuer's JWKS (blocking I/O)."""
        token, header, unverified = self._parse(authorization)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise HookAuthError(
                "algorithm-not-allowed", f"JWT alg must be one of {', '.join(self.algorithms)}"
            )
        if header.get("typ") not in (None, "JWT"):
            raise HookAuthError("malformed-token", "JWT typ must be JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise HookAuthError("malformed-token", "the JWT header has no kid")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or iss not in self.clients:
            raise HookAuthError(
                "untrusted-issuer", "the JWT issuer is not a trusted EHR (PTBILL_CDS_CLIENTS)"
            )
        jwks_url = self.clients[iss]
        if header.get("jku") not in (None, jwks_url):
            raise HookAuthError("jku-not-allowed", "the JWT jku is not the issuer's registered JWKS URL")
        if not fetch and not self.jwks.cached(jwks_url, kid):
            raise KeyNotCached
        jwk = self.jwks.key(jwks_url, kid)
        if jwk.get("kty") != KTY_FOR_ALG.get(alg[:2]) or jwk.get("alg") not in (None, alg):
            raise HookAuthError("bad-signature", "the issuer's key does not match the JWT alg")
        if jwk.get("use") not in (None, "sig"):
            raise HookAuthError("bad-signature", "the issuer's key is not a signing key")
        try:
            key = self.jwks.public_key(jwks_url, kid, alg)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self.leeway,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise HookAuthError("expired", "the JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise HookAuthError("not-yet-valid", "the JWT is not valid yet (iat/nbf)") from None
        except jwt.InvalidAudienceError:
            raise HookAuthError("wrong-audience", "the JWT aud is not this service's URL") from None
        except jwt.MissingRequiredClaimError as e:
            raise HookAuthError("missing-claim", f"the JWT has no {e.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise HookAuthError("bad-signature", "the JWT signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise HookAuthError("malformed-token", "the JWT cannot be verified") from None
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise HookAuthError("missing-claim", "the JWT has no jti claim")
        ttl = max(1, int(float(claims["exp"]) - self.clock() + self.leeway) + 1)
        digest = hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()[:40]
        return claims, digest, ttl
