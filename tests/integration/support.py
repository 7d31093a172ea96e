"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery

from integration.fhir.client import FhirClient
from integration.settings import Settings
from integration.state import StateStore
from ptbill_demo.synth import generate_clinic


def env_for(server_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTBILL_")}
    env.update(
        {
            "PTBILL_FHIR_BASE_URL": server_url,
            "PTBILL_BROKER_URL": redis_url,
            "PTBILL_REDIS_URL": redis_url,
            "PTBILL_CLOCK_LAG_SECONDS": "0",
            "PTBILL_LOG_FORMAT": "json",
            "PTBILL_LOG_LEVEL": "INFO",
            "PTBILL_METRICS_PORT": "0",  # test workers serve no metrics unless a test asks (free port)
        }
    )
    env.update(extra)
    return env


def seed(server_url: str, patients: int, seed_value: int = 0) -> list[dict[str, Any]]:
    bundles = generate_clinic(patients=patients, seed=seed_value)
    with FhirClient(server_url, timeout=60) as client:
        for b in bundles:
            client.transaction(b, idempotent=True)
    return bundles


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll a condition with a deadline (a readiness check, not a sleep used as synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def state_for(env: dict[str, str]) -> StateStore:
    s = Settings.from_env(env)
    return StateStore.from_url(s.redis_url, s.server_key)


def send_sync(env: dict[str, str], run_id: str, **kwargs: Any) -> None:
    app = Celery(broker=env["PTBILL_BROKER_URL"])
    try:
        app.send_task("ptbill.sync.run", kwargs={"run_id": run_id, **kwargs}, queue="fhir_read")
    finally:
        app.close()


def wait_run(state: StateStore, run_id: str, timeout: float = 180) -> dict[str, str]:
    def finished() -> dict[str, str] | None:
        if state.r.exists(f"{state.p}:run:{run_id}:final") and state.last().get("run_id") == run_id:
            return state.run(run_id)  # closed, and its summary written
        last = state.last()
        if last.get("status") == "failed" and last.get("run_id") == run_id:
            raise AssertionError(f"sync run failed: {last.get('reason')}")
        return None

    return wait_for(finished, timeout, f"sync run {run_id} to finish")  # type: ignore[no-any-return]


REPO = Path(__file__).resolve().parents[2]


def ptbill(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``ptbill`` CLI as a separate process with ``env``; stdout/stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
