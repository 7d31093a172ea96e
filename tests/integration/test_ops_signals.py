"""Honest signals and bounded runs, with real processes (issue 12): one sekmet server, one Redis database,
one Celery worker (with events and ptbill's metrics on a free port) for the whole module.

* a dead-lettered encounter ends its Celery task in FAILURE (what Flower shows, from the worker's own
  task events) with a PHI-free reason, and stays recorded for ``ptbill retry-failed``;
* the worker's main process serves ptbill's Prometheus metrics, read from the sync state;
* a sync run that pages past PTBILL_SYNC_DEADLINE (here: a server whose ``next`` links never end) is
  failed with that reason and its lock released, through the worker and with ``sync --inline``;
* an encounter past PTBILL_TASK_TIME_LIMIT is stopped and dead-lettered with that reason.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from ptbill_demo.embedded import SekmetServer, free_port
from tests import capability_statements
from tests.integration.conftest import Workers
from tests.integration.support import env_for, ptbill, seed, send_sync, state_for, wait_for, wait_run

pytestmark = pytest.mark.integration


class TaskEvents:
    """The worker's task events (what Flower receives), captured in a thread."""

    def __init__(self, broker_url: str):
        self.app = Celery(broker=broker_url)
        self.events: list[dict[str, Any]] = []
        self._recv: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._recv = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            self._ready.set()
            try:
                self._recv.capture(limit=None, timeout=None, wakeup=False)
            except Exception:  # the connection closes at teardown
                return

    def __enter__(self) -> TaskEvents:
        self._thread.start()
        assert self._ready.wait(20)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._recv is not None:
            self._recv.should_stop = True
        self._thread.join(timeout=10)
        self.app.close()

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("uuid") == task_id]


class EndlessServer:
    """A FHIR server whose searches answer an empty page with a new ``next`` link, forever."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                if "/Encounter/" in self.path:  # a read of one encounter: far slower than any limit
                    time.sleep(10)
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.split("?")[0].endswith("/metadata"):  # a server declaring all ptbill needs
                    self._send(capability_statements.complete())
                    return
                time.sleep(0.05)
                port = self.server.server_address[1]
                page = {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "meta": {"lastUpdated": "2026-01-01T00:00:00Z"},
                    "total": 1,
                    "link": [
                        {
                            "relation": "next",
                            "url": f"http://127.0.0.1:{port}/fhir/Encounter?p={uuid.uuid4().hex}",
                        }
                    ],
                    "entry": [],
                }
                self._send(page)

            def _send(self, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def module_redis() -> str:
    from tests.integration.conftest import REDIS_URL

    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    r.close()
    return REDIS_URL


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SekmetServer]:
    with SekmetServer(tmp_path_factory.mktemp("fhir")) as srv:
        seed(srv.base_url, patients=2, seed_value=12)
        yield srv


@pytest.fixture(scope="module")
def worker_env(
    sekmet: SekmetServer, module_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    env = env_for(sekmet.base_url, module_redis, PTBILL_METRICS_PORT=str(free_port()))
    ws = Workers(tmp_path_factory.mktemp("workers"))
    try:
        ws.start(env, concurrency=1)
        yield env
    finally:
        ws.stop()


@pytest.fixture(scope="module")
def endless() -> Iterator[EndlessServer]:
    srv = EndlessServer()
    try:
        yield srv
    finally:
        srv.stop()


# The two deadline tests come first: their worker must be the only one on the broker (the module's
# worker, for the sekmet server, starts with the first test that needs it, after these).


def test_sync_inline_past_its_deadline_fails_with_that_reason(
    endless: EndlessServer, module_redis: str, tmp_path: Path
) -> None:
    env = env_for(endless.base_url, module_redis, PTBILL_SYNC_DEADLINE="3", PTBILL_METRICS_PORT="0")
    t0 = time.monotonic()
    proc = ptbill(env, "sync", "--inline", timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 1, (proc.stdout, proc.stderr[-2000:])
    assert took < 30, took
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "failed"
    assert out["reason"] == "RunDeadlineExceeded: the sync run ran past PTBILL_SYNC_DEADLINE (3 s)"
    state = state_for(env)
    assert state.sync_lock_holder() is None  # released: the next run may start
    assert state.last()["reason"] == out["reason"]
    status = ptbill(env, "status", "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["last_run"]["reason"] == out["reason"]


def test_worker_sync_deadline_and_task_time_limit(
    endless: EndlessServer, module_redis: str, tmp_path: Path
) -> None:
    env = env_for(
        endless.base_url,
        module_redis,
        PTBILL_SYNC_DEADLINE="3",
        PTBILL_TASK_TIME_LIMIT="1",
        PTBILL_METRICS_PORT="0",
    )
    state = state_for(env)
    ws = Workers(tmp_path)
    try:
        ws.start(env, concurrency=1)
        proc = ptbill(env, "sync", "--quiet", "--timeout", "90", timeout=120)
        assert proc.returncode == 1, (proc.stdout, proc.stderr[-2000:])
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["status"] == "failed"
        assert out["reason"] == "RunDeadlineExceeded: the sync run ran past PTBILL_SYNC_DEADLINE (3 s)"
        assert state.sync_lock_holder() is None

        # one encounter past PTBILL_TASK_TIME_LIMIT (its read takes 10 s): dead-lettered at 1 s
        app = Celery(broker=env["PTBILL_BROKER_URL"])
        t0 = time.monotonic()
        app.send_task("ptbill.encounter.process", args=("slow-1", None), queue="process")
        app.close()
        dead = wait_for(lambda: state.dead_letters().get("slow-1"), 30, "the slow encounter's dead letter")
        assert time.monotonic() - t0 < 9  # stopped by the limit, not by the server's answer
        assert dead["reason"] == "TaskTimeLimit: the task ran past its time limit (1.0 s)"
    finally:
        ws.stop()


def test_a_dead_lettered_encounter_ends_its_task_in_failure(worker_env: dict[str, str]) -> None:
    state = state_for(worker_env)
    app = Celery(broker=worker_env["PTBILL_BROKER_URL"])
    with TaskEvents(worker_env["PTBILL_BROKER_URL"]) as events:
        task_id = uuid.uuid4().hex
        app.send_task(
            "ptbill.encounter.process", args=("no-such-encounter", None), queue="process", task_id=task_id
        )
        failed = wait_for(
            lambda: [e for e in events.of(task_id) if e["type"] == "task-failed"],
            60,
            "the task-failed event of the dead-lettered encounter",
        )
    app.close()
    kinds = [e["type"] for e in events.of(task_id)]
    assert "task-succeeded" not in kinds, kinds
    expected = "InputError Encounter/no-such-encounter: encounter not found on the server"
    assert failed[0]["exception"] == f"TaskFailed('{expected}')"
    dead = state.dead_letters()
    assert dead["no-such-encounter"]["reason"] == expected  # still recorded for retry-failed
    # re-driving it through the workers fails the same honest way and keeps the record
    with TaskEvents(worker_env["PTBILL_BROKER_URL"]) as events:
        proc = ptbill(worker_env, "retry-failed")
        assert proc.returncode == 0, proc.stderr
        wait_for(
            lambda: [e for e in events.events if e["type"] == "task-failed"], 60, "the re-driven task to fail"
        )
    assert int(state.dead_letters()["no-such-encounter"]["attempts"]) >= 1
    state.clear_dead_letter("no-such-encounter")


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in metrics:\n{text[:3000]}")


def test_the_worker_serves_ptbills_metrics(worker_env: dict[str, str]) -> None:
    state = state_for(worker_env)
    port = int(worker_env["PTBILL_METRICS_PORT"])
    before = wait_for(lambda: _safe_scrape(port), 60, "the worker's metrics endpoint")
    run_id = uuid.uuid4().hex[:16]
    send_sync(worker_env, run_id)
    info = wait_run(state, run_id)
    done = int(info.get("processed", 0)) + int(info.get("unchanged", 0))
    assert done >= 2

    # the run's summary is booked just after its final mark: poll the scrape, not the mark
    def finished() -> str | None:
        t = _scrape(port)
        return t if _value(t, 'ptbill_last_run_status{status="ok"}') == 1.0 else None

    text = wait_for(finished, 30, "the metrics to show the finished run")
    assert _value(text, 'ptbill_sync_runs_total{status="ok"}') == state.runs_by_status()["ok"] >= 1
    assert (
        _value(text, 'ptbill_encounters_total{outcome="processed"}')
        + _value(text, 'ptbill_encounters_total{outcome="unchanged"}')
        >= done
    )
    assert _value(text, 'ptbill_last_run_status{status="ok"}') == 1.0
    assert _value(text, "ptbill_watermark_lag_seconds") >= 0
    assert _value(text, 'ptbill_fhir_requests_total{kind="search",status="2xx"}') > _value_or_zero(
        before, 'ptbill_fhir_requests_total{kind="search",status="2xx"}'
    )
    assert _value(text, 'ptbill_fhir_request_seconds_count{kind="write"}') >= 1
    assert "Encounter/" not in text and "no-such" not in text


def _safe_scrape(port: int) -> str | None:
    try:
        return _scrape(port)
    except OSError:
        return None


def _value_or_zero(text: str, series: str) -> float:
    try:
        return _value(text, series)
    except AssertionError:
        return 0.0
