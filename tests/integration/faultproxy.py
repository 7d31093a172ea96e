"""A fault-injecting HTTP reverse proxy for tests with real processes (stdlib, a thread per connection).

Placed between the ptbill workers and a real FHIR server, it forwards method, path, query, headers and
body unchanged (hop-by-hop headers excepted, as any proxy must) and relays the answer unchanged, except
where a :class:`FaultPlan` says to inject a fault:

* ``status``   answer a status without forwarding (429 + ``Retry-After``, 503, 422 + OperationOutcome);
* ``close``    read the request, then close the connection without any answer (clean FIN);
* ``rst``      read the request, then reset the connection (RST: ``SO_LINGER`` 0);
* ``slow``     forward, then hold the answer for ``seconds`` (past the client's timeout), then send it;
* ``truncate`` forward, then send the headers with the full ``Content-Length`` but only part of the body;
* ``delay``    wait ``seconds`` (latency below the client timeout), then forward normally;
* ``hold``     (forward, then) keep the client waiting until :meth:`FaultProxy.release` (or stop).

``forward=True`` on ``close``/``rst``/``hold`` forwards the request first: the server carries the
write out, but its answer is lost - the interesting case for idempotent write-back.

Plans are deterministic: a rule fires on the n-th matching requests (``nth``, 1-based) or with a
probability drawn from a ``random.Random(seed)``; ``burst`` repeats a firing on the next matching
requests, ``limit`` caps the firings. Decisions are made under one lock in arrival order.

Bounded: at most ``max_requests`` requests are served (later ones get a 503 and ``exhausted`` is set),
the proxy stops by itself after ``lifetime`` seconds, and a held or slowed request never waits past the
proxy's stop. ``counts`` tallies requests by (method, status), with ``"close"``, ``"rst"``,
``"truncated"`` or ``"slow"`` as the status of answers a fault cut short; ``faults`` by fault label,
``bundles`` the POSTed Bundles by type (transaction, batch), ``forwarded`` what reached the server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "Fault",
    "FaultPlan",
    "FaultProxy",
    "ProxyRequest",
    "Rule",
    "any_request",
    "is_batch",
    "is_get",
    "is_transaction",
    "transaction_for",
    "transaction_for_encounter",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

FaultKind = Literal["status", "close", "rst", "slow", "truncate", "delay", "hold"]


@dataclass(frozen=True)
class ProxyRequest:
    """What a rule's matcher sees of one request."""

    seq: int  # 1-based arrival number over all requests
    method: str
    target: str  # path and query, exactly as received
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def bundle_type(self) -> str | None:
        """``transaction``/``batch`` for a Bundle POSTed to the base, else None."""
        if self.method != "POST":
            return None
        doc = self.json()
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            t = doc.get("type")
            return t if isinstance(t, str) else None
        return None


Matcher = Callable[[ProxyRequest], bool]


def any_request(_: ProxyRequest) -> bool:
    return True


def is_get(req: ProxyRequest) -> bool:
    return req.method == "GET"


def is_transaction(req: ProxyRequest) -> bool:
    return req.bundle_type() == "transaction"


def is_batch(req: ProxyRequest) -> bool:
    return req.bundle_type() == "batch"


def transaction_for_encounter(
    encounter_id: str, tag_system: str = "https://ptbill.dev/fhir/CodeSystem/encounter"
) -> Matcher:
    """Matches a transaction Bundle holding a Provenance tagged with this encounter (its write-back)."""

    def match(req: ProxyRequest) -> bool:
        if not is_transaction(req):
            return False
        return any(
            isinstance(e, dict)
            and (e.get("resource") or {}).get("resourceType") == "Provenance"
            and any(
                isinstance(t, dict) and t.get("system") == tag_system and t.get("code") == encounter_id
                for t in ((e.get("resource") or {}).get("meta") or {}).get("tag") or []
            )
            for e in req.json().get("entry") or []
        )

    return match


def transaction_for(provenance_id: str) -> Matcher:
    """Matches a transaction Bundle that writes the Provenance with this id (one encounter's write-back)."""

    def match(req: ProxyRequest) -> bool:
        if not is_transaction(req):
            return False
        doc = req.json()
        return any(
            isinstance(e, dict)
            and (e.get("resource") or {}).get("resourceType") == "Provenance"
            and (e.get("resource") or {}).get("id") == provenance_id
            for e in doc.get("entry") or []
        )

    return match


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 503
    retry_after: str | None = None  # Retry-After header value of a ``status`` fault
    outcome: str | None = None  # OperationOutcome diagnostics of a ``status`` fault
    forward: bool = False  # close/rst/hold: carry the request out upstream first
    seconds: float = 0.0  # slow/delay
    fraction: float = 0.5  # truncate: share of the body sent before closing

    @property
    def label(self) -> str:
        if self.kind == "status":
            return f"status:{self.status}"
        return self.kind + (":forwarded" if self.forward else "")


@dataclass
class Rule:
    """Fire ``fault`` on matching requests chosen by ``nth`` or ``probability``."""

    fault: Fault
    match: Matcher = any_request
    nth: Collection[int] | None = None  # 1-based numbers among the requests this rule matches
    probability: float = 0.0  # used when nth is None
    burst: int = 1  # a firing also covers the next burst-1 matching requests
    limit: int | None = None  # at most this many firings (a burst counts each request)
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)
    _burst_left: int = field(default=0, init=False)


class FaultPlan:
    """Ordered rules; the first rule that fires decides the request's fault (None: forward as is)."""

    def __init__(self, rules: Iterable[Rule] = (), seed: int = 0):
        self.rules = list(rules)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def decide(self, req: ProxyRequest) -> Fault | None:
        with self._lock:
            chosen: Fault | None = None
            for rule in self.rules:
                if not rule.match(req):
                    continue
                rule.seen += 1
                if chosen is not None:
                    continue  # keep counting matches so nth stays per-rule
                if rule.limit is not None and rule.fired >= rule.limit:
                    continue
                if rule._burst_left > 0:
                    fire = True
                    rule._burst_left -= 1
                else:
                    if rule.nth is not None:
                        fire = rule.seen in rule.nth
                    else:
                        fire = rule.probability > 0 and self._rng.random() < rule.probability
                    if fire:
                        rule._burst_left = rule.burst - 1
                if fire:
                    rule.fired += 1
                    chosen = rule.fault
            return chosen


class UpstreamError(Exception):
    """The real server could not be reached (answered to the client as 502)."""


@dataclass(frozen=True)
class Record:
    seq: int
    method: str
    path: str
    result: str  # status code or fault label


class FaultProxy:
    """Reverse proxy on 127.0.0.1 (port 0 by default) forwarding to ``upstream`` (scheme://host:port).

    ``upstream`` may be set after start (the FHIR server may need the proxy's URL as its base URL so
    that its paging links lead back through the proxy).
    """

    def __init__(
        self,
        upstream: str | None = None,
        plan: FaultPlan | None = None,
        *,
        port: int = 0,
        max_requests: int = 20_000,
        lifetime: float = 600.0,
        upstream_timeout: float = 60.0,
        hold_timeout: float = 120.0,
    ):
        self.upstream = upstream
        self.plan = plan or FaultPlan()
        self.requested_port = port
        self.max_requests = max_requests
        self.lifetime = lifetime
        self.upstream_timeout = upstream_timeout
        self.hold_timeout = hold_timeout
        self.port = 0
        self.counts: Counter[tuple[str, int | str]] = Counter()
        self.faults: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.bundles: Counter[str] = Counter()  # POSTed Bundles by type (transaction, batch)
        self.records: list[Record] = []
        self.exhausted = False
        self.held = 0  # requests currently held
        self.held_total = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", self.requested_port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._release.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/fhir") -> str:
        return self.root_url + path

    # -- control ----------------------------------------------------------------------------------

    def set_plan(self, plan: FaultPlan | None) -> None:
        self.plan = plan or FaultPlan()

    def release(self) -> None:
        """Let held requests go on (and any later ``hold`` fault pass straight through)."""
        self._release.set()

    def rearm(self) -> None:
        """After :meth:`release`: ``hold`` faults hold again."""
        self._release.clear()

    def count(self, method: str | None = None, status: int | str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (m, s), n in self.counts.items()
                if (method is None or m == method) and (status is None or s == status)
            )

    def fault_count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(n for k, n in self.faults.items() if k.startswith(prefix))

    # -- internals (called from handler threads) --------------------------------------------------

    def _admit(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> tuple[ProxyRequest, Fault | None, bool]:
        with self._lock:
            self._seq += 1
            seq = self._seq
            over = seq > self.max_requests
            if over:
                self.exhausted = True
        req = ProxyRequest(seq, method, target, headers, body)
        return req, (None if over else self.plan.decide(req)), over

    def _record(self, req: ProxyRequest, result: int | str, fault: Fault | None) -> None:
        kind = req.bundle_type()
        with self._lock:
            if kind:
                self.bundles[kind] += 1
            self.counts[(req.method, result)] += 1
            if fault is not None:
                self.faults[fault.label] += 1
            if len(self.records) < self.max_requests:
                self.records.append(Record(req.seq, req.method, req.path, str(result)))

    def _forward(self, req: ProxyRequest) -> tuple[int, str, list[tuple[str, str]], bytes]:
        if not self.upstream:
            raise UpstreamError("no upstream set")
        parts = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.upstream_timeout
        )
        try:
            conn.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
            for k, v in req.headers:
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    conn.putheader(k, v)
            if req.body or req.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders(req.body or None)
            resp = conn.getresponse()
            body = resp.read()
            headers = [
                (k, v)
                for k, v in resp.getheaders()
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
            ]
            with self._lock:
                self.forwarded[req.method] += 1
            return resp.status, resp.reason, headers, body
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError(f"upstream failed: {type(e).__name__}") from e
        finally:
            conn.close()

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server: a reset may hit a pooled connection
    timeout = 30  # idle keep-alive connections end after this

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self) -> None:
        proxy = self.owner
        body = self._read_body()
        headers = tuple((k, v) for k, v in self.headers.items())
        if proxy._stop.is_set():  # stopped: serve nothing more on connections still open
            self._drop(rst=False)
            return
        req, fault, over = proxy._admit(self.command, self.path, headers, body)
        try:
            if over:
                msg = b"fault proxy: request budget exhausted"
                self._send(503, "Service Unavailable", [("Content-Type", "text/plain")], msg)
                proxy._record(req, 503, None)
                return
            self._serve(req, fault)
        except UpstreamError as e:
            proxy._record(req, 502, None)
            self._send(502, "Bad Gateway", [("Content-Type", "text/plain")], f"fault proxy: {e}".encode())
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True  # the client went away (timed out or was killed)

    def _serve(self, req: ProxyRequest, fault: Fault | None) -> None:
        proxy = self.owner
        if fault is None or fault.kind == "delay":
            if fault is not None:
                proxy._wait(fault.seconds)
            status, reason, headers, body = proxy._forward(req)
            proxy._record(req, status, fault)
            self._send(status, reason, headers, body)
            return
        if fault.kind == "status":
            oo = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "processing" if fault.status == 422 else "transient",
                        "diagnostics": fault.outcome or f"injected HTTP {fault.status}",
                    }
                ],
            }
            hdrs = [("Content-Type", "application/fhir+json")]
            if fault.retry_after is not None:
                hdrs.append(("Retry-After", fault.retry_after))
            proxy._record(req, fault.status, fault)
            reason = http.client.responses.get(fault.status, "")
            self._send(fault.status, reason, hdrs, json.dumps(oo).encode())
            return
        if fault.kind in ("close", "rst"):
            if fault.forward:
                proxy._forward(req)
            proxy._record(req, fault.kind, fault)
            self._drop(rst=fault.kind == "rst")
            return
        if fault.kind == "hold":
            answer = proxy._forward(req) if fault.forward else None
            with proxy._lock:
                proxy.held += 1
                proxy.held_total += 1
            try:
                proxy._release.wait(proxy.hold_timeout)
            finally:
                with proxy._lock:
                    proxy.held -= 1
            if answer is None:
                answer = proxy._forward(req)
            proxy._record(req, answer[0], fault)
            self._send(*answer)
            return
        status, reason, headers, body = proxy._forward(req)
        if fault.kind == "slow":
            proxy._record(req, "slow", fault)
            proxy._wait(fault.seconds)
            self._send(status, reason, headers, body)
            return
        # truncate: announce the whole body, send part of it, close
        proxy._record(req, "truncated", fault)
        cut = max(0, min(len(body) - 1, int(len(body) * fault.fraction)))
        self.send_response_only(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self._drop(rst=False)

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self, rst: bool) -> None:
        self.close_connection = True
        if rst:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)  # FIN now, no answer
        self.connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
