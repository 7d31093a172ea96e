"""Flower monitoring with real processes: ``ptbill flower`` (basic auth from PTBILL_FLOWER_BASIC_AUTH) + a
Celery worker with events + a sync.

Through Flower's HTTP API: the worker is listed, ``ptbill.*`` tasks succeeded, requests without (or with
wrong) credentials get 401 — the Prometheus ``/metrics`` endpoint included — and it answers with them.
Without credentials ``ptbill flower`` does not start at all.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptbill_demo.embedded import free_port
from tests.integration.support import env_for, ptbill, seed, send_sync, state_for, wait_for, wait_run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "ops", "flower-test-pass"


def http(url: str, auth: tuple[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback URL built here
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class Flower:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.env = {**env, "PTBILL_FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Flower:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tasks.cli", "flower", f"--port={self.port}"],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(
                lambda: (
                    self.proc is not None
                    and self.proc.poll() is None
                    and http(f"{self.url}/healthcheck")[0] == 200
                ),
                60,
                "Flower to answer /healthcheck",
            )
        except AssertionError:
            print(self.log_path.read_text(errors="replace")[-4000:])
            raise
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def api(self, path: str) -> Any:
        import json

        status, body = http(f"{self.url}{path}", (USER, PASSWORD))
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture
def flower_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Flower] = []

    def start(env: dict[str, str]) -> Flower:
        f = Flower(env, tmp_path / "flower.log")
        started.append(f.start())
        return f

    yield start
    for f in started:
        f.stop()


def test_flower_sees_worker_and_ptbill_tasks(fhir_server, redis_url, workers, flower_factory):
    env = env_for(fhir_server.base_url, redis_url)
    seed(fhir_server.base_url, patients=2, seed_value=7)
    flower = flower_factory(env)  # first, so it sees every event of the run
    w = workers.start(env, concurrency=1)
    worker_name = w.command()[w.command().index("-n") + 1].split("@")[0]

    run_id = uuid.uuid4().hex[:16]
    send_sync(env, run_id)
    info = wait_run(state_for(env), run_id)
    n_enc = int(info["processed"]) + int(info.get("unchanged", 0))
    assert n_enc >= 2

    # the worker is listed (Flower learns it from heartbeats/events, refresh asks it directly)
    workers_seen = wait_for(
        lambda: {k: v for k, v in flower.api("/api/workers?refresh=1").items() if k.startswith(worker_name)},
        30,
        "Flower to list the worker",
    )
    ((name, detail),) = workers_seen.items()
    queues = {q["name"] for q in detail.get("active_queues", [])}
    assert {"fhir_read", "process", "maintenance"} <= queues, detail.get("active_queues")

    # every ptbill task of the run shows up as SUCCESS (events arrive asynchronously: poll)
    def tasks_done() -> dict[str, Any] | None:
        tasks = flower.api("/api/tasks?limit=1000")
        sync_ok = [
            t for t in tasks.values() if t.get("name") == "ptbill.sync.run" and t.get("state") == "SUCCESS"
        ]
        enc_ok = [
            t
            for t in tasks.values()
            if t.get("name") == "ptbill.encounter.process" and t.get("state") == "SUCCESS"
        ]
        return tasks if sync_ok and len(enc_ok) >= n_enc else None

    tasks = wait_for(tasks_done, 30, "Flower to report the ptbill tasks as succeeded")
    ptbill_tasks = [t for t in tasks.values() if str(t.get("name", "")).startswith("ptbill.")]
    assert all(t["state"] == "SUCCESS" for t in ptbill_tasks), [(t["name"], t["state"]) for t in ptbill_tasks]
    assert all(t.get("worker", "").startswith(worker_name) for t in ptbill_tasks)
    # task arguments are ids only (a run id, an encounter id): nothing clinical passes through the broker
    for t in ptbill_tasks:
        if t["name"] == "ptbill.encounter.process":
            assert run_id in str(t.get("args"))

    # credentials are required
    for path in ("/api/workers", "/api/tasks", "/"):
        assert http(f"{flower.url}{path}")[0] == 401, path
        assert http(f"{flower.url}{path}", (USER, "wrong"))[0] == 401, path

    # Prometheus metrics with credentials, naming our tasks and worker
    status, body = http(f"{flower.url}/metrics", (USER, PASSWORD))
    assert status == 200
    text = body.decode()
    assert "flower_events_total" in text
    assert 'task="ptbill.encounter.process"' in text and 'type="task-succeeded"' in text
    assert name.split("@")[0] in text
    # Flower 2.2 itself serves /metrics without checking basic auth; `ptbill flower` protects it too
    for creds in (None, (USER, "wrong")):
        status, open_body = http(f"{flower.url}/metrics", creds)
        assert status == 401
        assert run_id not in open_body.decode(errors="replace")
    # the credentials never appear on Flower's command line (ps shows that to every local user)
    assert flower.proc is not None
    cmdline = Path(f"/proc/{flower.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    assert PASSWORD not in cmdline


def test_ptbill_flower_refuses_to_start_without_credentials(redis_url):
    env = env_for("http://127.0.0.1:9/fhir", redis_url)
    env.pop("FLOWER_BASIC_AUTH", None)
    p = ptbill(env, "flower", "--port", str(free_port()), timeout=60)
    assert p.returncode == 2
    assert "ptbill flower needs PTBILL_FLOWER_BASIC_AUTH=user:password" in p.stderr
    assert "Traceback" not in p.stderr
