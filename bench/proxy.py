"""A tiny counting reverse proxy for benchmarks: counts (and records) every request to a FHIR server.

    python bench/proxy.py --port 8101 --upstream http://127.0.0.1:8100 --record /tmp/requests.jsonl

Runs in its own process (own GIL), HTTP/1.1 keep-alive on both sides, one upstream connection per
client connection thread. Each request is classified and appended to the record file as one JSON line
``{"phase", "seq", "method", "path", "cat", "status", "ms", "headers", "body"}`` (body: POST bodies only).

Categories: ``page`` (GET search: paging, incl. next links), ``probe`` (GET ``_summary=count``),
``read`` (GET Type/id), ``batch-context`` (POST batch of context searches), ``batch-existing`` (POST
batch of ``_tag`` searches: reading existing ptbill output), ``transaction`` (POST transaction),
``other``.

Control endpoints (not forwarded): ``GET /__proxy/phase?name=X`` starts a phase (counts are kept per
phase), ``GET /__proxy/stats?phase=X`` returns that phase's counts as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
REPLAY_HEADERS = {"accept", "content-type", "prefer", "accept-encoding", "if-match", "if-none-exist"}


def classify(method: str, path: str, body: bytes | None) -> str:
    parts = urlsplit(path)
    segs = [s for s in parts.path.split("/") if s]
    if method == "GET":
        if "_summary=count" in parts.query:
            return "probe"
        if len(segs) >= 2 and segs[-1] == "metadata":
            return "metadata"
        if len(segs) >= 3 and not segs[-1].startswith("$"):
            return "read"
        return "page"
    if method == "POST" and body:
        try:
            b = json.loads(body)
        except ValueError:
            return "other"
        if isinstance(b, dict) and b.get("resourceType") == "Bundle":
            if b.get("type") == "transaction":
                return "transaction"
            if b.get("type") == "batch":
                urls = [((e.get("request") or {}).get("url") or "") for e in b.get("entry") or []]
                return "batch-existing" if any("_tag=" in u for u in urls) else "batch-context"
    return "other"


class State:
    def __init__(self, record: str | None):
        self.lock = threading.Lock()
        self.phase = "default"
        self.stats: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.record = open(record, "a", encoding="utf-8") if record else None

    def add(self, item: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            item["seq"] = self.seq
            item["phase"] = self.phase
            st = self.stats.setdefault(
                self.phase, {"requests": 0, "by_cat": {}, "ms_by_cat": {}, "errors": 0, "bytes_in": 0}
            )
            st["requests"] += 1
            c = item["cat"]
            st["by_cat"][c] = st["by_cat"].get(c, 0) + 1
            st["ms_by_cat"][c] = round(st["ms_by_cat"].get(c, 0.0) + item["ms"], 3)
            st["bytes_in"] += item.pop("resp_bytes", 0)
            if item["status"] >= 400:
                st["errors"] += 1
            if self.record is not None:
                self.record.write(json.dumps(item) + "\n")
                self.record.flush()


def make_handler(upstream: str, state: State) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(upstream)
    local = threading.local()

    def conn() -> http.client.HTTPConnection:
        c = getattr(local, "c", None)
        if c is None:
            c = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80, timeout=300)
            local.c = c
        return c

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _control(self) -> bool:
            if not self.path.startswith("/__proxy/"):
                return False
            q = parse_qs(urlsplit(self.path).query)
            if self.path.startswith("/__proxy/phase"):
                with state.lock:
                    state.phase = q.get("name", ["default"])[0]
                out: Any = {"phase": state.phase}
            else:
                with state.lock:
                    out = state.stats.get(q.get("phase", [state.phase])[0], {"requests": 0, "by_cat": {}})
                    out = json.loads(json.dumps(out))
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True

        def _forward(self) -> None:
            if self._control():
                return
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Host"] = up.netloc
            t0 = time.perf_counter()
            for attempt in (1, 2):
                c = conn()
                try:
                    c.request(self.command, self.path, body=body, headers=headers)
                    resp = c.getresponse()
                    data = resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    c.close()
                    local.c = None
                    if attempt == 2:
                        self.send_error(502, "upstream unreachable")
                        return
            ms = (time.perf_counter() - t0) * 1000
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            state.add(
                {
                    "method": self.command,
                    "path": self.path,
                    "cat": classify(self.command, self.path, body),
                    "status": resp.status,
                    "ms": round(ms, 3),
                    "resp_bytes": len(data),
                    "headers": {k: v for k, v in headers.items() if k.lower() in REPLAY_HEADERS},
                    "body": body.decode() if body else None,
                }
            )

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="http://host:port of the real server (no path)")
    ap.add_argument("--record", help="append every request as a JSON line to this file")
    args = ap.parse_args()
    state = State(args.record)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.upstream, state))
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
