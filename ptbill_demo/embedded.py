"""Embedded services for the demo and the integration tests: a sekmet-fhir server process, an
in-process Redis-protocol server (fakeredis, for the demo only) and Celery worker processes.

A real sekmet-fhir server process:

    with SekmetServer(tmp_path) as srv:             # free port, no auth, simulator off
        FhirClient(srv.base_url).capabilities()

    with SekmetServer(tmp_path, auth_config={"types": ["smart"], "smart_clients": [...]}) as srv:
        ...

The server runs ``sekmet serve -c <tmp>/settings.yaml`` (the ``sekmet`` executable next to
``sys.executable``) in its own process group with ``cwd=tmp_dir`` (its keys/ and data/ stay in the tmp
dir), logging to ``<tmp>/sekmet.log``. Start-up waits until ``/fhir/metadata`` answers (polling with a
deadline, no fixed sleeps); on exit the whole process group is terminated (SIGTERM, then SIGKILL).
When start-up fails, or the ``with`` block raises, the tail of the server log is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

__all__ = [
    "EmbeddedRedis",
    "SekmetServer",
    "SekmetStartError",
    "WorkerProcess",
    "free_port",
    "sekmet_executable",
]


def stop_group(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Stop a process started in its own session, and its children: SIGTERM, then SIGKILL after ``grace``."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class SekmetStartError(RuntimeError):
    """The sekmet server did not come up (message includes the log tail)."""


def sekmet_executable() -> str | None:
    """The venv's ``sekmet`` script (next to the running interpreter), else one on PATH."""
    candidate = Path(sys.executable).with_name("sekmet")
    if candidate.exists():
        return str(candidate)
    return shutil.which("sekmet")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SekmetServer:
    """A sekmet-fhir server subprocess; a context manager (or call ``start()`` / ``stop()``)."""

    def __init__(
        self,
        tmp_dir: str | os.PathLike[str],
        port: int | None = None,
        auth_config: dict[str, Any] | None = None,
        *,
        extra_settings: dict[str, Any] | None = None,
        startup_timeout: float = 90.0,
    ):
        self.tmp_dir = Path(tmp_dir)
        self.requested_port = port
        self.port = port or 0
        self.auth_config = auth_config
        self.extra_settings = dict(extra_settings or {})
        self.startup_timeout = startup_timeout
        self.settings_path = self.tmp_dir / "settings.yaml"
        self.log_path = self.tmp_dir / "sekmet.log"
        self.process: subprocess.Popen[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    @property
    def token_url(self) -> str:
        """Where sekmet's SMART token endpoint is (the ``aud`` of client assertions)."""
        return f"{self.root_url}/auth/token"

    # -- lifecycle ------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "base_url": self.base_url,
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(self.tmp_dir / "data"),
            "own_private_key_path": str(self.tmp_dir / "keys" / "sekmet_private.pem"),
            "simulator": {"enabled": False},
            "log_inbound": False,
        }
        if self.auth_config is not None:
            s["server_auth"] = self.auth_config
        s.update(self.extra_settings)
        return s

    def start(self) -> SekmetServer:
        if self.process is not None:
            raise RuntimeError("already started")
        exe = sekmet_executable()
        if exe is None:
            raise SekmetStartError("the 'sekmet' executable (sekmet-fhir) is not installed")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.requested_port else 3  # a picked free port can be taken before sekmet binds
        last: SekmetStartError | None = None
        for _ in range(attempts):
            self.port = self.requested_port or free_port()
            try:
                self._launch(exe)
                return self
            except SekmetStartError as e:
                last = e
                self.stop()
                if "address already in use" not in str(e).lower():
                    break
        if last is None:  # unreachable: the loop ran at least once
            raise SekmetStartError("sekmet did not start")
        print(f"--- sekmet log tail ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)
        raise last

    def _launch(self, exe: str) -> None:
        self.settings_path.write_text(yaml.safe_dump(self.settings(), sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [exe, "serve", "-c", str(self.settings_path)],
                cwd=self.tmp_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills uvicorn and any children
            )
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SekmetStartError(
                    f"sekmet exited with code {self.process.returncode} during start-up:\n{self.log_tail()}"
                )
            if self._metadata_answers():
                return
            time.sleep(delay)  # polling a readiness condition, bounded by the deadline
            delay = min(delay * 1.5, 0.5)
        raise SekmetStartError(
            f"sekmet did not answer {self.base_url}/metadata within {self.startup_timeout:.0f} s:\n"
            f"{self.log_tail()}"
        )

    def _metadata_answers(self) -> bool:
        # a loopback http:// URL this class built itself
        url = f"{self.base_url}/metadata"
        req = urllib.request.Request(url, headers={"Accept": "application/fhir+json"})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except urllib.error.HTTPError as e:
            return e.code < 500
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc, grace=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> SekmetServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                print(f"--- sekmet log tail ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)
        finally:
            self.stop()


class EmbeddedRedis:
    """A Redis-protocol server inside this process (fakeredis with Lua), for ``ptbill demo`` only.

    It lets a newcomer run the demo, with a real Celery worker process talking to it over TCP, on a
    machine without Redis. Tests use a real redis-server instead.
    """

    def __init__(self) -> None:
        self._server: Any = None
        self._thread: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        import threading

        from fakeredis import TcpFakeServer

        self._server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-redis", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """A real ``celery -A tasks.app worker`` subprocess with its own environment (PTBILL_* settings)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: str | os.PathLike[str],
        *,
        concurrency: int = 2,
        queues: str = "fhir_read,process,maintenance",
        name: str = "ptbill",
        pool: str = "prefork",
        extra_args: list[str] | None = None,
    ):
        self.env = env
        self.log_path = Path(log_path)
        self.concurrency = concurrency
        self.queues = queues
        self.name = name
        self.pool = pool
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks.app",
            "worker",
            "-E",
            "-Q",
            self.queues,
            "-c",
            str(self.concurrency),
            "-P",
            self.pool,
            "-n",
            f"{self.name}-{os.getpid()}-{id(self) % 10000}@%h",
            "--without-gossip",
            "--without-mingle",
            *self.extra_args,
        ]

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc, grace=20)

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
