"""The one FHIR R4 REST client of ptbill: a single ``requests.Session`` with a bounded pool.

Every failure is sorted here, at the boundary, into ``integration.errors``:

* :class:`FhirTemporaryError` - 408, 429, 500, 502, 503, 504, connection errors and resets, timeouts,
  truncated or unparseable JSON on a 2xx - with ``retry_after`` from a ``Retry-After`` header;
* :class:`FhirFatalError` and its subclasses (:class:`FhirAuthError` 401/403, :class:`FhirNotFound`
  404/410, :class:`FhirConflict` 409/412) - everything else, including oversize bodies, next links to
  another host and paging loops.

Exceptions carry the OperationOutcome text in ``.outcome`` and the URL *without* its query string. Logs
carry method, path, status, size and timing only: never bodies, never query strings.

Temporary errors are retried in the client up to ``retries`` times (``Retry-After`` honoured, else
exponential backoff with jitter). A ``Retry-After`` longer than ``max_retry_wait`` is raised at once so
the Celery task can reschedule instead of blocking a worker. Non-idempotent writes (transaction/batch
POSTs) are only retried when the server certainly did not process them (429, 503, connect failures)
unless the caller declares the bundle idempotent (conditional creates / PUTs).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from integration.errors import (
    ConfigError,
    FhirAuthError,
    FhirConflict,
    FhirError,
    FhirFatalError,
    FhirNotFound,
    FhirTemporaryError,
    InputError,
    JsonRefused,
)
from integration.fhir.auth import (
    Auth,
    AuthTransport,
    ResponseDeadline,
    ResponseTooLarge,
    read_limited,
    strip_query,
    tls_verify,
)
from integration.jsonio import loads as json_loads

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# statuses after which a non-idempotent request was certainly not carried out
NOT_PROCESSED_STATUSES = frozenset({429, 503})
MAX_OUTCOME_CHARS = 2000

_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_RESOURCE_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_rng = random.SystemRandom()

Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | None

_insecure_warned: set[str] = set()
_insecure_lock = threading.Lock()


# --- results and statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class EntryResult:
    """One ``Bundle.entry.response`` of a transaction/batch answer."""

    status: int  # 0 when the entry has no parseable response.status
    location: str | None = None
    etag: str | None = None
    outcome: str | None = None  # OperationOutcome text of the entry, if any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def reference(self) -> str | None:
        """``Type/id`` parsed from ``location`` (``.../Type/id/_history/n``), or None."""
        if not self.location:
            return None
        path = urlsplit(self.location).path.strip("/").split("/")
        if "_history" in path:
            path = path[: path.index("_history")]
        if len(path) >= 2 and _RESOURCE_TYPE.match(path[-2]):
            return f"{path[-2]}/{path[-1]}"
        return None


class ClientStats:
    """Request counters of one client (thread-safe).

    ``snapshot()`` -> {"requests", "by_method", "by_status_class", "retries", "auth_refreshes",
    "bytes_received", "bytes_sent", "errors"}; status classes are "2xx".."5xx" and "transport"
    for requests that got no HTTP answer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_method: dict[str, int] = {}
            self.by_status_class: dict[str, int] = {}
            self.retries = 0
            self.auth_refreshes = 0
            self.bytes_received = 0
            self.bytes_sent = 0
            self.errors: dict[str, int] = {}

    def _record(self, method: str, status_class: str, received: int, sent: int) -> None:
        with self._lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            self.by_status_class[status_class] = self.by_status_class.get(status_class, 0) + 1
            self.bytes_received += received
            self.bytes_sent += sent

    def _bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _error(self, exc: FhirError) -> None:
        with self._lock:
            n = type(exc).__name__
            self.errors[n] = self.errors.get(n, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_method": dict(self.by_method),
                "by_status_class": dict(self.by_status_class),
                "retries": self.retries,
                "auth_refreshes": self.auth_refreshes,
                "bytes_received": self.bytes_received,
                "bytes_sent": self.bytes_sent,
                "errors": dict(self.errors),
            }


# --- pure helpers --------------------------------------------------------------------------------


def outcome_text(body: Any) -> str | None:
    """Readable text of an OperationOutcome: issue[].diagnostics / details.text joined with '; '."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    parts: list[str] = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        for text in (issue.get("diagnostics"), (issue.get("details") or {}).get("text")):
            if isinstance(text, str) and text.strip() and text.strip() not in parts:
                parts.append(text.strip())
    if not parts:
        return None
    text = "; ".join(parts)
    return text if len(text) <= MAX_OUTCOME_CHARS else text[: MAX_OUTCOME_CHARS - 1] + "…"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_class_for(status: int) -> type[FhirError]:
    """Exception class for a non-2xx HTTP status."""
    if status in (401, 403):
        return FhirAuthError
    if status in (404, 410):
        return FhirNotFound
    if status in (409, 412):
        return FhirConflict
    if status in TEMPORARY_STATUSES:
        return FhirTemporaryError
    return FhirFatalError


def _status_code(text: Any) -> int:
    m = re.match(r"^\s*(\d{3})\b", str(text or ""))
    return int(m.group(1)) if m else 0


def parse_transaction_response(bundle_response: Mapping[str, Any]) -> list[EntryResult]:
    """One :class:`EntryResult` per entry of a transaction-/batch-response Bundle (in order)."""
    if not isinstance(bundle_response, Mapping) or bundle_response.get("resourceType") != "Bundle":
        raise FhirFatalError("transaction answer is not a Bundle")
    results = []
    for entry in bundle_response.get("entry") or []:
        resp = (entry or {}).get("response") or {}
        results.append(
            EntryResult(
                status=_status_code(resp.get("status")),
                location=resp.get("location") if isinstance(resp.get("location"), str) else None,
                etag=resp.get("etag") if isinstance(resp.get("etag"), str) else None,
                outcome=outcome_text(resp.get("outcome")),
            )
        )
    return results


def _has_key(params: Params, key: str) -> bool:
    if params is None:
        return False
    if isinstance(params, Mapping):
        return key in params
    return any(k == key for k, _ in params)


def _param_list(params: Params) -> list[tuple[str, Any]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in params.items():
            if isinstance(v, list | tuple):
                out.extend((k, x) for x in v)
            else:
                out.append((k, v))
        return out
    return [(k, v) for k, v in params]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _maybe_sent(exc: requests.RequestException) -> bool:
    """False when the request certainly never reached the server (connect failed)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        if isinstance(inner, NewConnectionError | ConnectTimeoutError):
            return False
    return True


# --- the client ----------------------------------------------------------------------------------


class FhirClient:
    """A FHIR R4 REST client owning one ``requests.Session``. Use as a context manager or ``close()``."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        page_size: int = 100,
        max_response_bytes: int = 50_000_000,
        retries: int = 2,
        backoff: float = 0.5,
        max_retry_wait: float = 30.0,
        user_agent: str = "ptbill/0.1",
        pool_size: int = 5,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(
                f"FHIR base URL must be http(s)://host[/path] without query: {strip_query(base_url)}"
            )
        if parts.username or parts.password:
            raise ConfigError("FHIR base URL must not carry credentials; use auth=")
        if timeout <= 0 or page_size < 1 or max_response_bytes < 1 or retries < 0 or pool_size < 1:
            raise ConfigError(
                "timeout, page_size, max_response_bytes, pool_size must be positive, retries >= 0"
            )
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = float(timeout)  # the whole request: connect, answer and body (see _attempt)
        self.verify = verify
        self._verify = tls_verify(verify)  # passed on every request: the environment cannot override it
        self.page_size = page_size
        self.max_response_bytes = max_response_bytes
        self.retries = retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self.user_agent = user_agent
        self._sleep = sleep
        self._closed = False
        self._origin = _origin(self.base_url)
        self.stats = ClientStats()
        self._clock_lock = threading.Lock()
        self._server_date: tuple[datetime, float] | None = None  # (HTTP Date, monotonic when received)

        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.verify = self._verify
        self._session.headers.update({"User-Agent": user_agent, "Accept": FHIR_JSON})
        if verify is False:
            with _insecure_lock:
                first = self.base_url not in _insecure_warned
                _insecure_warned.add(self.base_url)
            if first:
                log.warning(
                    "TLS certificate verification is OFF (explicit verify=False)",
                    extra={"url": strip_query(self.base_url)},
                )
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

        bind = getattr(auth, "bind", None)
        if callable(bind):
            bind(
                AuthTransport(
                    self._session,
                    self.base_url,
                    timeout=self.timeout,
                    verify=self._verify,
                    user_agent=user_agent,
                )
            )

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r}, auth={self.auth!r})"

    # -- public API -----------------------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> dict[str, Any]:
        """GET ``{base}/{type}/{id}``. 404/410 -> FhirNotFound."""
        self._check_type(resource_type)
        if not isinstance(id, str) or not _RESOURCE_ID.match(id):
            raise InputError("not a valid FHIR id", resource_type=resource_type, resource_id=None)
        return self._request("GET", f"{self.base_url}/{resource_type}/{id}")

    def search(
        self, resource_type: str, params: Params = None, *, max_pages: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield each searchset Bundle page, following ``link[relation=next]``.

        ``_count`` = page_size is added unless given. Next links may be absolute or relative; a link to
        another scheme/host/port, a repeated link, or more than ``max_pages`` pages -> FhirFatalError.
        """
        self._check_type(resource_type)
        plist = _param_list(params)
        if not _has_key(plist, "_count"):
            plist.append(("_count", self.page_size))
        url: str | None = f"{self.base_url}/{resource_type}"
        query: list[tuple[str, Any]] | None = plist
        seen: set[str] = set()
        pages = 0
        while url is not None:
            page = self._request("GET", url, params=query)
            if page.get("resourceType") != "Bundle":
                raise FhirFatalError(
                    f"search answer is a {page.get('resourceType')!r}, not a Bundle",
                    method="GET",
                    url=strip_query(url),
                )
            pages += 1
            yield page
            nxt = self._next_link(page, url)
            if nxt is None:
                return
            if nxt in seen:
                raise FhirFatalError(
                    "paging loop: next link repeats an earlier page", method="GET", url=strip_query(nxt)
                )
            if max_pages is not None and pages >= max_pages:
                raise FhirFatalError(
                    f"search exceeded max_pages={max_pages}", method="GET", url=strip_query(nxt)
                )
            seen.add(nxt)
            url, query = nxt, None

    def search_entries(
        self, resource_type: str, params: Params = None, *, max_pages: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every ``Bundle.entry`` of every page (includes ``search.mode`` include/outcome entries)."""
        for page in self.search(resource_type, params, max_pages=max_pages):
            for entry in page.get("entry") or []:
                if isinstance(entry, dict):
                    yield entry

    def get(self, url_or_path: str, params: Params = None) -> dict[str, Any]:
        """GET an absolute URL on this server, or a path relative to the base (``Patient/1/$everything``)."""
        url = self._resolve(url_or_path)
        return self._request("GET", url, params=_param_list(params) or None)

    def capabilities(self) -> dict[str, Any]:
        """The server's CapabilityStatement (``GET {base}/metadata``)."""
        return self._request("GET", f"{self.base_url}/metadata")

    def transaction(self, bundle: Mapping[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST a transaction Bundle; returns the transaction-response.

        Raises FhirFatalError (or FhirConflict/FhirAuthError/FhirNotFound by the entry's status) with the
        entry's OperationOutcome text when any entry failed, or when the answer's entry count differs.
        ``idempotent=True`` (all entries conditional / PUT) allows retrying after timeouts and resets.
        """
        self._check_bundle(bundle, "transaction")
        answer = self._request("POST", self.base_url, body=bundle, idempotent=idempotent)
        self._check_transaction_answer(bundle, answer)
        return answer

    def batch(self, bundle: Mapping[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST a batch Bundle; entries succeed or fail independently: inspect with
        :func:`parse_transaction_response`."""
        self._check_bundle(bundle, "batch")
        answer = self._request("POST", self.base_url, body=bundle, idempotent=idempotent)
        if answer.get("resourceType") != "Bundle":
            raise FhirFatalError("batch answer is not a Bundle", method="POST", url=self.base_url)
        return answer

    def server_clock(self) -> datetime | None:
        """The server's clock from the HTTP ``Date`` header of its latest answer (any answer, errors too)
        plus the time since it came; None before any answer with a readable Date. Second precision: the
        header is truncated, so this never runs ahead of the server."""
        with self._clock_lock:
            seen = self._server_date
        if seen is None:
            return None
        date, at = seen
        return date + timedelta(seconds=max(0.0, time.monotonic() - at))

    def _note_date(self, value: str | None) -> None:
        if not value:
            return
        try:
            date = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        if date.tzinfo is None:
            return
        with self._clock_lock:
            self._server_date = (date.astimezone(UTC), time.monotonic())

    # -- internals: validation ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("FhirClient is closed")

    @staticmethod
    def _check_type(resource_type: str) -> None:
        if not isinstance(resource_type, str) or not _RESOURCE_TYPE.match(resource_type):
            raise InputError("not a valid FHIR resource type", resource_type=None)

    @staticmethod
    def _check_bundle(bundle: Mapping[str, Any], kind: str) -> None:
        if (
            not isinstance(bundle, Mapping)
            or bundle.get("resourceType") != "Bundle"
            or bundle.get("type") != kind
        ):
            raise ValueError(f"expected a Bundle of type {kind!r}")

    def _check_transaction_answer(self, sent: Mapping[str, Any], answer: dict[str, Any]) -> None:
        results = parse_transaction_response(answer)
        expected = len(sent.get("entry") or [])
        for i, res in enumerate(results):
            if not res.ok:
                cls = error_class_for(res.status)
                if not issubclass(cls, FhirFatalError):
                    cls = FhirFatalError  # a 200 transaction with a failed entry is never "just retry"
                raise cls(
                    f"POST {self.base_url} transaction entry {i} failed: HTTP {res.status or '?'}"
                    + (f": {res.outcome}" if res.outcome else ""),
                    status=res.status or None,
                    method="POST",
                    url=self.base_url,
                    outcome=res.outcome,
                )
        if len(results) != expected:
            raise FhirFatalError(
                f"transaction answer has {len(results)} entries for {expected} sent",
                method="POST",
                url=self.base_url,
            )

    def _resolve(self, url_or_path: str, relative_to: str | None = None) -> str:
        """Absolute URL for a link/path; refuses other origins (credentials must not leave the server)."""
        if url_or_path.startswith("?") and relative_to:
            url = urljoin(relative_to, url_or_path)
        else:
            url = urljoin(self.base_url + "/", url_or_path)
        if _origin(url) != self._origin:
            raise FhirFatalError(
                "refusing a URL on another host than the FHIR base", method="GET", url=strip_query(url)
            )
        return url

    def _next_link(self, page: dict[str, Any], current: str) -> str | None:
        for link in page.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
                return self._resolve(str(link["url"]), relative_to=current)
        return None

    # -- internals: HTTP ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, Any]] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        self._check_open()
        safe_url = strip_query(url)
        data = (
            json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() if body is not None else None
        )
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        attempt = 0
        reauthed = False
        while True:
            try:
                return self._attempt(method, url, safe_url, params, data)
            except FhirAuthError as exc:
                if (
                    exc.status == 401
                    and not reauthed
                    and self.auth is not None
                    and getattr(self.auth, "refreshable", False)
                    and not getattr(exc, "_auth_stage", False)
                ):
                    reauthed = True
                    self.auth.invalidate()
                    self.stats._bump("auth_refreshes")
                    log.info(
                        "HTTP 401: re-authenticating once", extra={"method": method, "url": safe_url}
                    )
                    continue
                self.stats._error(exc)
                raise
            except FhirTemporaryError as exc:
                wait = self._retry_wait(exc, attempt, method, idempotent)
                if wait is None:
                    self.stats._error(exc)
                    raise
                attempt += 1
                self.stats._bump("retries")
                log.warning(
                    "FHIR request failed; retrying",
                    extra={
                        "method": method,
                        "url": safe_url,
                        "error": type(exc).__name__,
                        "kind": exc.kind,
                        "http_status": exc.status,
                        "attempt": attempt,
                        "max_attempts": self.retries,
                        "retry_in": round(wait, 2),
                    },
                )
                self._sleep(wait)
            except FhirError as exc:
                self.stats._error(exc)
                raise

    def _retry_wait(
        self, exc: FhirTemporaryError, attempt: int, method: str, idempotent: bool
    ) -> float | None:
        """Seconds to wait before retrying, or None to raise now."""
        if attempt >= self.retries:
            return None
        if not idempotent and not (exc.status in NOT_PROCESSED_STATUSES or getattr(exc, "_not_sent", False)):
            return None  # the server may have carried out the write: let the caller decide
        if exc.retry_after is not None:
            if exc.retry_after > self.max_retry_wait:
                return None  # too long to block a worker: the task reschedules on exc.retry_after
            return exc.retry_after
        return min(self.max_retry_wait, self.backoff * (2**attempt) * _rng.uniform(0.5, 1.5))

    def _attempt(
        self,
        method: str,
        url: str,
        safe_url: str,
        params: list[tuple[str, Any]] | None,
        data: bytes | None,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if data is not None:
            headers["Content-Type"] = FHIR_JSON
        if self.auth is not None:
            try:
                self.auth.apply(headers)
            except FhirError as e:
                # the FHIR request itself was never sent; a token failure is not a 401 to re-auth on
                e._not_sent = True  # type: ignore[attr-defined]
                e._auth_stage = True  # type: ignore[attr-defined]
                raise
        started = time.monotonic()
        sent = len(data) if data else 0
        try:
            resp = self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                verify=self._verify,
                stream=True,
                allow_redirects=False,  # a redirect is reported, not followed (see below)
            )
        except requests.RequestException as e:
            self.stats._record(method, "transport", 0, sent)
            err = FhirTemporaryError(
                f"{method} {safe_url}: {_transport_reason(e)}",
                method=method,
                url=safe_url,
                kind=_transport_kind(e),
            )
            err._not_sent = not _maybe_sent(e)  # type: ignore[attr-defined]
            raise err from e
        status = resp.status_code
        self._note_date(resp.headers.get("Date"))
        status_class = f"{status // 100}xx"
        try:
            with resp:
                # a total deadline: a server trickling its body cannot hold the request past the timeout
                raw = read_limited(resp, self.max_response_bytes, deadline=started + self.timeout)
        except ResponseTooLarge as e:
            self.stats._record(method, status_class, self.max_response_bytes, sent)
            raise FhirFatalError(
                f"{method} {safe_url}: response larger than max_response_bytes={self.max_response_bytes}",
                status=status,
                method=method,
                url=safe_url,
                kind="too-large",
            ) from e
        except ResponseDeadline as e:
            self.stats._record(method, status_class, 0, sent)
            raise FhirTemporaryError(
                f"{method} {safe_url}: no complete answer within {self.timeout:g} s",
                status=status if status in TEMPORARY_STATUSES else None,
                method=method,
                url=safe_url,
                kind="deadline",
            ) from e
        except requests.RequestException as e:
            self.stats._record(method, status_class, 0, sent)
            raise FhirTemporaryError(
                f"{method} {safe_url}: body read failed ({_transport_reason(e)})",
                status=status if status in TEMPORARY_STATUSES else None,
                method=method,
                url=safe_url,
                kind="truncated",
            ) from e
        self.stats._record(method, status_class, len(raw), sent)
        log.debug(
            "FHIR request done",
            extra={
                "method": method,
                "url": safe_url,
                "http_status": status,
                "bytes": len(raw),
                "duration_ms": int((time.monotonic() - started) * 1000),
            },
        )

        parsed: Any = None
        parse_ok = False
        if raw:
            try:
                parsed = json_loads(raw)
                parse_ok = True
            except JsonRefused as e:
                if e.kind == "too-deep" and 200 <= status < 300:  # no retry makes it shallower
                    raise FhirFatalError(
                        f"{method} {safe_url}: HTTP {status} but {e.reason}",
                        status=status,
                        method=method,
                        url=safe_url,
                        kind="too-deep",
                    ) from None
                parse_ok = False

        if 200 <= status < 300:
            if not parse_ok or not isinstance(parsed, dict):
                what = "empty body" if not raw else "body is not a JSON object"
                raise FhirTemporaryError(
                    f"{method} {safe_url}: HTTP {status} but {what} (truncated?)",
                    status=status,
                    method=method,
                    url=safe_url,
                    kind="not-json",
                )
            return parsed

        outcome = outcome_text(parsed) if parse_ok else None
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        cls = error_class_for(status)
        reason = resp.reason or ""
        if 300 <= status < 400 and resp.headers.get("Location"):
            # not followed: credentials must not travel to another URL, and a POST must not turn into a
            # GET. A redirecting FHIR base is a configuration problem (e.g. http:// vs https://).
            reason += (
                f" (redirect to {strip_query(urljoin(url, resp.headers['Location']))}; fix the base URL)"
            )
        raise cls(
            f"{method} {safe_url}: HTTP {status} {reason}".rstrip() + (f": {outcome}" if outcome else ""),
            status=status,
            method=method,
            url=safe_url,
            outcome=outcome,
            retry_after=retry_after if cls is FhirTemporaryError else None,
        )


def _transport_kind(exc: requests.RequestException) -> str:
    """ptbill's word for a transport failure (``integration.errors.KINDS``)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect-timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read-timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "truncated"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        if isinstance(inner, NewConnectionError):
            text = str(inner).lower()
            if "refused" in text:
                return "connection-refused"
            if "name or service" in text or "resolution" in text or "nodename" in text:
                return "host-not-found"
        return "connection-reset"
    return "connection-reset"


def _transport_reason(exc: requests.RequestException) -> str:
    """A short, query-free description of a transport failure."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken while reading the body (truncated)"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "body could not be decoded"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed or reset"
    return type(exc).__name__
