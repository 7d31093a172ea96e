"""A worker must never bill from broken rules: it refuses to start on an invalid mapping table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ptbill_demo.embedded import WorkerProcess
from tests.integration.support import env_for

pytestmark = pytest.mark.integration

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def test_worker_refuses_to_start_on_a_bad_table(tmp_path, redis_url):
    bad = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, bad, ignore=shutil.ignore_patterns("*.py", "__pycache__", "schemas"))
    kx = bad / "billing" / "kx_thresholds.yaml"
    kx.write_text(kx.read_text().replace('effective: "2026-01-01"', 'effective: "2026-13-01"', 1))
    env = env_for("http://127.0.0.1:9/fhir", redis_url, PTBILL_MAPPINGS_DIR=str(bad))
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=1).start()
    try:
        assert worker.process is not None
        rc = worker.process.wait(timeout=60)
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert rc != 0
    assert "mapping tables invalid; worker refuses to start" in log
    assert "billing/kx_thresholds.yaml" in log and "effective" in log and "month" in log


def test_worker_starts_on_the_shipped_tables(tmp_path, redis_url, workers):
    env = env_for("http://127.0.0.1:9/fhir", redis_url)
    w = workers.start(env, concurrency=1)
    assert w.alive()
    assert "mapping tables loaded" in w.log_path.read_text()
