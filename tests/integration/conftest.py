"""Fixtures for tests with real processes: a real Redis, real sekmet-fhir servers, real Celery workers.

Redis: ``PTBILL_TEST_REDIS_URL`` (set by scripts/test.sh, which starts a redis-server when none
answers); default ``redis://127.0.0.1:6379/15``. The test database is flushed at session start, so
point it at a database nothing else uses. Under pytest-xdist (scripts/test.sh runs the suite with
``-n``), each xdist worker takes its own database counted down from that one (15, 14, 13, ...): the
Celery queues and ptbill's keys of two tests running at once never meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from ptbill_demo.embedded import SekmetServer, WorkerProcess
from tests.integration.medplum_fixtures import medplum_server  # noqa: F401  (the Medplum test server)
from tests.integration.support import wait_for
from tests.redis_db import TEST_REDIS_URL as REDIS_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        r.ping()
    except redis.exceptions.ConnectionError as e:  # pragma: no cover - environment problem
        pytest.fail(f"no Redis at {REDIS_URL} ({e}); run the tests with scripts/test.sh, which starts one")
    r.flushdb()
    return REDIS_URL


@pytest.fixture
def fhir_server(tmp_path: Path) -> Iterator[SekmetServer]:
    with SekmetServer(tmp_path / "fhir") as srv:
        yield srv


class Workers:
    """Start real Celery workers for one test and stop them afterwards."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[WorkerProcess] = []

    def start(self, env: dict[str, str], concurrency: int = 2, **kw: Any) -> WorkerProcess:
        w = WorkerProcess(env, self.tmp_path / f"worker-{len(self.procs)}.log", concurrency=concurrency, **kw)
        self.procs.append(w.start())
        app = Celery(broker=env["PTBILL_BROKER_URL"])
        try:
            wait_for(
                lambda: w.alive() and app.control.ping(timeout=0.5), 120, "the Celery worker to answer ping"
            )
        except AssertionError:
            print(w.log_tail())
            raise
        finally:
            app.close()
        return w

    def stop(self) -> None:
        for w in self.procs:
            w.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    ws = Workers(tmp_path)
    try:
        yield ws
    finally:
        ws.stop()
