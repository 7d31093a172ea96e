"""Real processes for the real-time feedback tests: `ptbill serve`, a sekmet-fhir server that notifies
through rest-hook Subscriptions, and an EHR stand-in for CDS Hooks (its own key pair, signed JWTs, a JWKS
served over HTTP, prefetch made by running the discovery templates against a FHIR server)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from integration.fhir.auth import public_jwk
from ptbill_demo.embedded import SekmetServer, free_port, stop_group
from tests.integration.support import REPO, wait_for


def notifying_sekmet(tmp_dir: Path, notify_method: str = "put-resource") -> SekmetServer:
    """sekmet-fhir whose R4 rest-hook Subscriptions deliver with ``subscriptions.notify_method``
    (``put-resource``: PUT {endpoint}/{type}/{id}; ``post-endpoint``: POST the resource)."""
    return SekmetServer(
        tmp_dir, extra_settings={"subscriptions": {"notify_method": notify_method, "retries": 2}}
    )


class ServeProcess:
    """``ptbill serve`` as a subprocess (its own session), ready once /healthz answers."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tasks.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"ptbill serve exited:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "ptbill serve to answer /healthz")
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc, grace=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _JwksHandler(BaseHTTPRequestHandler):
    jwks: bytes = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.jwks)))
        self.end_headers()
        self.wfile.write(self.jwks)

    def log_message(self, *args: Any) -> None:
        return None


class FakeEhr:
    """Plays the EHR: RS384 and ES384 keys, its JWKS on a local HTTP server, signed CDS Hooks JWTs."""

    def __init__(self, iss: str = "https://ehr.test.example"):
        self.iss = iss
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP384R1())
        jwks = {
            "keys": [
                public_jwk(self.rsa.public_key(), "RS384", "ehr-rsa"),
                public_jwk(self.ec.public_key(), "ES384", "ehr-ec"),
            ]
        }
        handler = type("Handler", (_JwksHandler,), {"jwks": json.dumps(jwks).encode()})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def clients_env(self) -> str:
        return json.dumps({self.iss: self.jwks_url})

    def token(
        self, aud: str, *, key: Any = None, alg: str = "RS384", kid: str = "ehr-rsa", **claims: Any
    ) -> str:
        now = int(time.time())
        body = {"iss": self.iss, "aud": aud, "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex, **claims}
        if alg.startswith("ES") and key is None:
            key, kid = self.ec, "ehr-ec"
        return jwt.encode(body, key or self.rsa, algorithm=alg, headers={"kid": kid, "typ": "JWT"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeEhr:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_prefetch(fhir_base: str, templates: dict[str, str], context: dict[str, str]) -> dict[str, Any]:
    """What a thorough EHR sends: each template with its tokens replaced, run against the FHIR server, all
    pages merged into one searchset Bundle (or the resource, for a read); null when a search finds nothing."""
    out: dict[str, Any] = {}
    with httpx.Client(
        base_url=fhir_base + "/", timeout=30, headers={"Accept": "application/fhir+json"}
    ) as client:
        for key, template in templates.items():
            url: str | None = template
            for name, value in context.items():
                token = "{{context." + name + "}}"
                url = template = template.replace(token, urllib.parse.quote(value, safe=""))
            body: dict[str, Any] | None = None
            entries: list[dict[str, Any]] = []
            while url:
                r = client.get(url)
                r.raise_for_status()
                page = r.json()
                if page.get("resourceType") != "Bundle":
                    body = page
                    break
                body = body or {k: v for k, v in page.items() if k not in ("link", "entry")}
                entries += [
                    e for e in page.get("entry") or [] if (e.get("search") or {}).get("mode") != "outcome"
                ]
                url = next((ln["url"] for ln in page.get("link") or [] if ln.get("relation") == "next"), None)
            if body is not None and body.get("resourceType") == "Bundle":
                body["entry"] = entries
                out[key] = body if entries else None
            else:
                out[key] = body
    return out


def hook_request(hook: str, context: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/u1", **context},
        **extra,
    }
