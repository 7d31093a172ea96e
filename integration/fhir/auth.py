"""Authentication for the FHIR client: none, HTTP Basic, static bearer, SMART Backend Services.

Every implementation follows the :class:`Auth` protocol:

* ``apply(headers)`` adds the credentials to one request's headers (called before every attempt, so a
  refreshed token is picked up);
* ``invalidate()`` forgets a cached credential after the server answered 401;
* ``refreshable`` tells the client whether re-authenticating once after a 401 can help (only for
  credentials that are fetched, i.e. SMART; a static password will not get better by retrying).

Secrets (passwords, tokens, private keys, client assertions) never appear in logs, exceptions or
``repr()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import certifi
import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from integration.errors import ConfigError, FhirAuthError, FhirTemporaryError, JsonRefused
from integration.jsonio import loads as json_loads

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUPPORTED_ALGS = ("RS384", "ES384", "RS256", "ES256")

# The minimal SMART v1 scopes ptbill needs: read the documentation it decides on, read/write the review
# resources it produces (it reads them back to update in place and retire stale ones). README lists them.
READ_TYPES = (
    "Encounter",
    "Procedure",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Coverage",
    "EpisodeOfCare",
)
WRITE_TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")
DEFAULT_SCOPE = " ".join(
    [
        *(f"system/{t}.read" for t in READ_TYPES),
        *(f"system/{t}.{p}" for t in WRITE_TYPES for p in ("read", "write")),
    ]
)

# Token refreshed this long before the server says it expires (halved for very short-lived tokens).
TOKEN_EXPIRY_MARGIN = 60.0
# Client assertion lifetime: SMART requires exp <= 5 minutes; 4 leaves room for clock skew.
ASSERTION_LIFETIME = 240
# Token and discovery answers are tiny; anything bigger than this is refused.
MAX_AUTH_RESPONSE_BYTES = 1_000_000

_TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@runtime_checkable
class Auth(Protocol):
    """What :class:`integration.fhir.client.FhirClient` needs from an authentication scheme."""

    refreshable: bool

    def apply(self, headers: MutableMapping[str, str]) -> None:
        """Add credentials to the headers of one outgoing request."""

    def invalidate(self) -> None:
        """Forget cached credentials (after a 401)."""


class AuthTransport:
    """The HTTP context a fetching auth scheme (SMART) borrows from its client.

    The client binds it (:meth:`SmartBackendAuth.bind`) so token requests share the client's
    connection pool, timeout and TLS settings.
    """

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
        user_agent: str = "ptbill/0.1",
    ):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.verify = verify
        self.user_agent = user_agent


# --- helpers shared with the client --------------------------------------------------------------


class ResponseTooLarge(Exception):
    """Internal: a response body exceeded its byte limit."""


class ResponseDeadline(Exception):
    """Internal: a response body was still arriving at the request's deadline."""


def tls_verify(verify: bool | str) -> bool | str:
    """What to pass as ``verify=`` on every request so that it means what the settings say.

    requests replaces ``verify=True`` (and a Session's ``verify``) by ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` from the environment, and lets a request-level value win over the Session's
    ``False``: ``PTBILL_TLS_VERIFY=false`` was ignored when ``REQUESTS_CA_BUNDLE`` was set. An explicit
    path (``PTBILL_CA_BUNDLE``, else certifi's bundle) or ``False`` is left alone by requests.
    """
    if verify is True:
        return str(certifi.where())
    return verify


def read_limited(resp: requests.Response, limit: int, deadline: float | None = None) -> bytes:
    """Read a streamed response body, refusing (ResponseTooLarge) once it grows past ``limit`` bytes.

    The limit applies to the decoded body, so a compressed bomb is stopped too. ``deadline`` (a
    ``time.monotonic()`` instant) bounds the whole read (ResponseDeadline): the socket's read timeout
    only bounds each wait, so a server sending a byte a second would otherwise hold the request for as
    long as it likes. At the deadline a timer shuts the connection down (urllib3's ``shutdown()``, made
    to unblock a read from another thread). Transport failures while reading (truncation, reset, read
    timeout) propagate as ``requests`` exceptions.
    """
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(int(declared))
    fired = threading.Event()
    timer: threading.Timer | None = None
    if deadline is not None:
        left = deadline - time.monotonic()
        shutdown = getattr(resp.raw, "shutdown", None)
        if left <= 0:
            raise ResponseDeadline(0)
        if callable(shutdown):

            def cut() -> None:
                fired.set()
                shutdown()

            timer = threading.Timer(left, cut)
            timer.daemon = True
            timer.start()
    buf = bytearray()
    try:
        for chunk in resp.iter_content(chunk_size=64 * 1024):
            buf += chunk
            if len(buf) > limit:
                raise ResponseTooLarge(len(buf))
    except (requests.RequestException, OSError, ValueError, AttributeError):
        if fired.is_set():
            raise ResponseDeadline(len(buf)) from None
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if fired.is_set():  # the read may also have ended quietly when the connection was cut
        raise ResponseDeadline(len(buf))
    return bytes(buf)


def strip_query(url: str) -> str:
    """The URL without query string, fragment or userinfo (safe to keep in errors and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what same-origin compares."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, None)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


# --- simple schemes ------------------------------------------------------------------------------


class NoAuth:
    """No credentials (open test servers)."""

    refreshable = False

    def apply(self, headers: MutableMapping[str, str]) -> None:
        return None

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NoAuth()"


class BasicAuth:
    """HTTP Basic. The password is kept only inside the prepared header value."""

    refreshable = False

    def __init__(self, user: str, password: str):
        if not user:
            raise ConfigError("BasicAuth needs a user name")
        self.user = user
        self.__header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def apply(self, headers: MutableMapping[str, str]) -> None:
        headers["Authorization"] = self.__header

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password='***')"


class BearerAuth:
    """A static bearer token (issued out of band)."""

    refreshable = False

    def __init__(self, token: str):
        if not token:
            raise ConfigError("BearerAuth needs a token")
        self.__token = token

    def apply(self, headers: MutableMapping[str, str]) -> None:
        headers["Authorization"] = f"Bearer {self.__token}"

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:
        return "BearerAuth(token='***')"


# --- SMART Backend Services ----------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: Any, alg: str, kid: str | None = None) -> dict[str, Any]:
    """The public JWK for a private (or public) RSA/EC key, with an RFC 7638 thumbprint as default kid."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    if isinstance(pub, rsa.RSAPublicKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(pub))
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(pub))
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    else:
        raise ConfigError(f"unsupported key type {type(pub).__name__}")
    thumb = _b64url(
        hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    )
    jwk.update({"alg": alg, "use": "sig", "kid": kid or thumb})
    return jwk


class SmartBackendAuth:
    """SMART Backend Services: OAuth2 client_credentials with a ``private_key_jwt`` client assertion.

    The assertion is signed by PyJWT (cryptography backend): ``iss = sub = client_id``, ``aud`` = token
    endpoint, random ``jti``, ``exp`` 4 minutes ahead. The token endpoint comes from ``token_url`` or is
    discovered from ``{base}/.well-known/smart-configuration`` (falling back to the CapabilityStatement's
    oauth-uris extension); a discovered endpoint must share the FHIR base's origin (scheme, host, port),
    or the signed assertion could be sent to whatever host a tampered or misconfigured document names.
    The access token is cached until 60 s before it expires.

    ``clock`` is injectable for tests.
    """

    refreshable = True

    def __init__(
        self,
        client_id: str,
        private_key_pem: bytes,
        kid: str | None = None,
        alg: str = "RS384",
        scope: str = DEFAULT_SCOPE,
        token_url: str | None = None,
        jku: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        if not client_id:
            raise ConfigError("SmartBackendAuth needs a client_id")
        if alg not in SUPPORTED_ALGS:
            raise ConfigError(f"SMART alg must be one of {', '.join(SUPPORTED_ALGS)}, not {alg!r}")
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except (ValueError, TypeError) as e:
            # never echo the key material
            raise ConfigError(f"SMART private key for client {client_id!r} is not a PEM private key") from e
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("SMART private key must be RSA or EC")
        if alg.startswith("RS") and not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"alg {alg} needs an RSA private key")
        if alg.startswith("ES"):
            want = "secp384r1" if alg == "ES384" else "secp256r1"
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != want:
                raise ConfigError(f"alg {alg} needs an EC {want} private key")
        self.client_id = client_id
        self.alg = alg
        self.scope = scope
        self.jku = jku
        self.__key = key
        self.kid = kid or public_jwk(key, alg)["kid"]
        self._configured_token_url = token_url
        self._token_url = token_url
        self._clock = clock
        self._lock = threading.RLock()
        self.__token: str | None = None
        self._token_valid_until = 0.0
        self._transport: AuthTransport | None = None
        self.token_requests = 0  # how many tokens were fetched (for stats and tests)
        self.granted_scope: str | None = None

    # -- wiring ---------------------------------------------------------------------------------

    def bind(self, transport: AuthTransport) -> None:
        """Called by FhirClient: token requests use the client's session, timeout and TLS settings."""
        with self._lock:
            if self._transport is not None and self._transport.base_url != transport.base_url:
                # a different server: discovered endpoint and cached token do not carry over
                self._token_url = self._configured_token_url
                self.__token = None
            self._transport = transport

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS to register at the authorisation server for this client."""
        jwk = public_jwk(self.__key, self.alg, self.kid)
        jwk["key_ops"] = ["verify"]
        return {"keys": [jwk]}

    # -- Auth protocol --------------------------------------------------------------------------

    def apply(self, headers: MutableMapping[str, str]) -> None:
        headers["Authorization"] = f"Bearer {self.access_token()}"

    def invalidate(self) -> None:
        with self._lock:
            self.__token = None
            self._token_valid_until = 0.0

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(client_id={self.client_id!r}, kid={self.kid!r}, alg={self.alg!r}, "
            f"scope={self.scope!r}, token_url={self._token_url!r}, private_key='***', token='***')"
        )

    # -- token handling -------------------------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token, fetched (and cached) when needed."""
        with self._lock:
            if self.__token is not None and self._clock() < self._token_valid_until:
                return self.__token
            return self._fetch_token()

    def client_assertion(self, token_url: str) -> str:
        """A freshly signed client assertion JWT for ``token_url`` (single use: new jti each call)."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers: dict[str, Any] = {"kid": self.kid, "typ": "JWT"}
        if self.jku:
            headers["jku"] = self.jku
        return jwt.encode(claims, self.__key, algorithm=self.alg, headers=headers)

    def token_endpoint(self) -> str:
        with self._lock:
            if self._token_url:
                return self._token_url
            transport = self._require_transport()
            found = self._discover(transport)
            if origin(found) != origin(transport.base_url):
                # the signed assertion (and the scopes it asks for) must not be handed to another host
                # because a discovery document says so: a different origin is trusted only when set
                # explicitly (PTBILL_SMART_TOKEN_URL / token_url=)
                raise FhirAuthError(
                    f"SMART token endpoint {strip_query(found)} is not on the FHIR server's origin "
                    f"{'://'.join(origin(transport.base_url)[:2])}; set PTBILL_SMART_TOKEN_URL to it "
                    "if the EMR's authorisation server really lives there",
                    method="GET",
                    url=strip_query(found),
                )
            self._token_url = found
            return self._token_url

    def _require_transport(self) -> AuthTransport:
        if self._transport is None:
            raise ConfigError(
                "SmartBackendAuth is not bound to a FhirClient (pass it as FhirClient(auth=...))"
            )
        return self._transport

    def _get_json(self, transport: AuthTransport, url: str, accept: str) -> tuple[int, dict[str, Any] | None]:
        try:
            resp = transport.session.get(
                url,
                headers={"Accept": accept, "User-Agent": transport.user_agent},
                timeout=transport.timeout,
                verify=transport.verify,
                stream=True,
                allow_redirects=False,
            )
            with resp:
                body = read_limited(resp, MAX_AUTH_RESPONSE_BYTES)
        except requests.RequestException as e:
            raise FhirTemporaryError(
                f"SMART discovery failed: {type(e).__name__}", method="GET", url=strip_query(url)
            ) from e
        except ResponseTooLarge as e:
            raise FhirAuthError("SMART discovery answer too large", method="GET", url=strip_query(url)) from e
        try:
            doc = json_loads(body) if body else None
        except JsonRefused:
            doc = None
        return resp.status_code, doc if isinstance(doc, dict) else None

    def _discover(self, transport: AuthTransport) -> str:
        url = f"{transport.base_url}/.well-known/smart-configuration"
        status, doc = self._get_json(transport, url, "application/json")
        if status in _TEMPORARY_STATUSES:
            raise FhirTemporaryError(
                f"SMART discovery: HTTP {status}", status=status, method="GET", url=strip_query(url)
            )
        if status == 200 and doc and isinstance(doc.get("token_endpoint"), str):
            return str(doc["token_endpoint"])
        # fallback: CapabilityStatement.rest.security oauth-uris extension
        meta_url = f"{transport.base_url}/metadata"
        mstatus, cap = self._get_json(transport, meta_url, "application/fhir+json")
        for rest in (cap or {}).get("rest", []) or []:
            for ext in ((rest or {}).get("security") or {}).get("extension", []) or []:
                if str(ext.get("url", "")).endswith("oauth-uris"):
                    for sub in ext.get("extension", []) or []:
                        if sub.get("url") == "token" and isinstance(sub.get("valueUri"), str):
                            return str(sub["valueUri"])
        raise FhirAuthError(
            f"no SMART token endpoint found at {strip_query(url)} (HTTP {status}) "
            f"nor in the CapabilityStatement (HTTP {mstatus}); set token_url",
            status=status,
            method="GET",
            url=strip_query(url),
        )

    def _fetch_token(self) -> str:
        transport = self._require_transport()
        token_url = self.token_endpoint()
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(token_url),
        }
        safe_url = strip_query(token_url)
        self.token_requests += 1
        try:
            resp = transport.session.post(
                token_url,
                data=form,
                headers={"Accept": "application/json", "User-Agent": transport.user_agent},
                timeout=transport.timeout,
                verify=transport.verify,
                stream=True,
                allow_redirects=False,
            )
            with resp:
                body = read_limited(resp, MAX_AUTH_RESPONSE_BYTES)
        except requests.RequestException as e:
            raise FhirTemporaryError(
                f"SMART token request failed: {type(e).__name__}", method="POST", url=safe_url
            ) from e
        except ResponseTooLarge as e:
            raise FhirAuthError("SMART token answer too large", method="POST", url=safe_url) from e
        try:
            doc = json_loads(body) if body else {}
        except JsonRefused:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        status = resp.status_code
        if status != 200:
            # OAuth error fields are meant for clients and carry no secret
            reason = " ".join(str(doc.get(k, "")) for k in ("error", "error_description")).strip() or None
            cls = FhirTemporaryError if status in _TEMPORARY_STATUSES else FhirAuthError
            raise cls(
                f"SMART token request for client {self.client_id!r}: HTTP {status}"
                + (f": {reason}" if reason else ""),
                status=status,
                method="POST",
                url=safe_url,
                outcome=reason,
            )
        token = doc.get("access_token")
        token_type = str(doc.get("token_type", "bearer"))
        if not isinstance(token, str) or not token or token_type.lower() != "bearer":
            raise FhirAuthError(
                "SMART token answer has no bearer access_token", status=status, method="POST", url=safe_url
            )
        try:
            lifetime = float(doc.get("expires_in", 300))
        except (TypeError, ValueError):
            lifetime = 300.0
        margin = min(TOKEN_EXPIRY_MARGIN, lifetime / 2)
        self.__token = token
        self._token_valid_until = self._clock() + lifetime - margin
        self.granted_scope = doc.get("scope") if isinstance(doc.get("scope"), str) else None
        log.info("SMART token obtained", extra={"url": safe_url, "expires_in": int(lifetime)})
        return token


# --- factory -------------------------------------------------------------------------------------


def auth_from_settings(kind: str | None, **values: Any) -> Auth:
    """Build an Auth from plain settings values.

    kinds: ``none``; ``basic`` (user, password); ``bearer`` (token); ``smart`` (client_id,
    private_key_pem or private_key_path, optional kid, alg, scope, token_url, jku). Empty values are
    ignored; missing required values raise ConfigError (naming the value, never echoing secrets).
    """
    vals = {k: v for k, v in values.items() if v not in (None, "")}
    k = (kind or "none").strip().lower()

    def need(name: str) -> Any:
        if name not in vals:
            raise ConfigError(f"auth kind {k!r} needs {name!r}")
        return vals[name]

    if k == "none":
        return NoAuth()
    if k == "basic":
        return BasicAuth(str(need("user")), str(need("password")))
    if k == "bearer":
        return BearerAuth(str(need("token")))
    if k == "smart":
        pem = vals.get("private_key_pem")
        if pem is None and "private_key_path" in vals:
            try:
                with open(vals["private_key_path"], "rb") as f:
                    pem = f.read()
            except OSError as e:
                raise ConfigError(f"cannot read SMART private key file: {e.strerror}") from e
        if pem is None:
            raise ConfigError("auth kind 'smart' needs 'private_key_pem' or 'private_key_path'")
        if isinstance(pem, str):
            pem = pem.encode()
        kwargs = {n: vals[n] for n in ("kid", "alg", "scope", "token_url", "jku") if n in vals}
        return SmartBackendAuth(str(need("client_id")), pem, **kwargs)
    raise ConfigError(f"unknown auth kind {kind!r} (none, basic, bearer, smart)")
