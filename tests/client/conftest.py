"""A scripted, in-process HTTP server for FHIR client tests (stdlib http.server on 127.0.0.1:0).

Each test queues replies per (method, path): ``fhir.on("GET", "/fhir/Patient/1", fhir.json(200, {...}))``.
Replies are consumed in order; a request with nothing queued gets 418 + OperationOutcome "unscripted",
which makes the test fail loudly. Besides plain answers, replies can close the socket without an answer,
reset it (RST), truncate the body, answer without Content-Length, or stall (released at teardown).
Every request is recorded (method, path, query, headers, body).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    kind: str = "respond"  # respond | close | reset | truncate | nolength | slow | trickle
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    then: Reply | None = None


ReplyLike = Reply | Callable[[Recorded], Reply]


class ScriptedServer:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[ReplyLike]] = {}
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/fhir"

    # -- scripting ------------------------------------------------------------------------------

    def on(self, method: str, path: str, *replies: ReplyLike) -> None:
        with self._lock:
            self._routes.setdefault((method.upper(), path), []).extend(replies)

    def always(self, method: str, path: str, reply: ReplyLike, times: int = 50) -> None:
        self.on(method, path, *([reply] * times))

    def to(self, path: str, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def _next(self, req: Recorded) -> Reply:
        with self._lock:
            self.requests.append(req)
            queue = self._routes.get((req.method, req.path))
            item: ReplyLike | None = queue.pop(0) if queue else None
        if item is None:
            return self.outcome(418, f"unscripted request {req.method} {req.path}")
        return item(req) if callable(item) else item

    # -- reply factories ------------------------------------------------------------------------

    @staticmethod
    def json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
        h = {"Content-Type": "application/fhir+json"}
        h.update(headers or {})
        return Reply(status=status, body=json.dumps(obj).encode(), headers=h)

    @staticmethod
    def raw(status: int, body: bytes, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def outcome(cls, status: int, *texts: str, headers: dict[str, str] | None = None) -> Reply:
        issues = [{"severity": "error", "code": "processing", "diagnostics": t} for t in texts]
        return cls.json(status, {"resourceType": "OperationOutcome", "issue": issues}, headers)

    @staticmethod
    def close() -> Reply:
        return Reply(kind="close")

    @staticmethod
    def reset() -> Reply:
        return Reply(kind="reset")

    @staticmethod
    def truncated(status: int, body: bytes, missing: int = 100) -> Reply:
        return Reply(kind="truncate", status=status, body=body, headers={"X-Missing": str(missing)})

    @staticmethod
    def no_length(status: int, body: bytes) -> Reply:
        return Reply(kind="nolength", status=status, body=body)

    @staticmethod
    def slow(seconds: float, then: Reply) -> Reply:
        return Reply(kind="slow", delay=seconds, then=then)

    @staticmethod
    def trickle(status: int, body: bytes, every: float) -> Reply:
        """Headers at once, then the body one byte every ``every`` seconds (until released)."""
        return Reply(kind="trickle", status=status, body=body, delay=every)

    @staticmethod
    def bundle(entries: list[dict[str, Any]], next_url: str | None = None) -> Reply:
        links = [{"relation": "self", "url": "x"}]
        if next_url is not None:
            links.append({"relation": "next", "url": next_url})
        return ScriptedServer.json(
            200,
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": links,
                "entry": [{"resource": r} for r in entries],
            },
        )

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _make_handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            req = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                raw_query=parts.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            self._play(server._next(req))

        def _play(self, reply: Reply) -> None:
            if reply.kind == "slow":
                server.release.wait(reply.delay)
                assert reply.then is not None
                try:
                    self._play(reply.then)
                except OSError:
                    self.close_connection = True
                return
            if reply.kind == "close":
                self.close_connection = True
                return
            if reply.kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                if k != "X-Missing":
                    self.send_header(k, v)
            if reply.kind == "truncate":
                self.send_header("Content-Length", str(len(reply.body) + int(reply.headers["X-Missing"])))
                self.close_connection = True
            elif reply.kind == "nolength":
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.kind == "trickle":
                for i in range(len(reply.body)):
                    if server.release.wait(reply.delay):
                        return
                    try:
                        self.wfile.write(reply.body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        self.close_connection = True
                        return
                return
            self.wfile.write(reply.body)
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


@pytest.fixture
def fhir() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """Pass ``sleep=sleeps.append`` to a client: records requested waits instead of sleeping."""
    return []


@pytest.fixture(scope="session")
def rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="session")
def ec_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TokenEndpoint:
    """A fake SMART token endpoint: hands out tok-1, tok-2, ... and records the posted forms."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.forms: list[dict[str, str]] = []

    def __call__(self, req: Recorded) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.forms.append(form)
        return ScriptedServer.json(
            200,
            {"access_token": f"tok-{len(self.forms)}", "token_type": "bearer", "expires_in": self.expires_in},
        )


@pytest.fixture
def token_endpoint(fhir: ScriptedServer) -> TokenEndpoint:
    """Discovery document + token endpoint on the scripted server (up to 20 token requests)."""
    ep = TokenEndpoint()
    fhir.always(
        "GET",
        "/fhir/.well-known/smart-configuration",
        ScriptedServer.json(200, {"token_endpoint": f"{fhir.root}/auth/token"}),
        times=20,
    )
    fhir.on("POST", "/auth/token", *([ep] * 20))
    return ep
