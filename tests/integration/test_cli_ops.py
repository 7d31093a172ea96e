"""The operator's commands as real processes: one clear line instead of a traceback, doctor, staleness,
workers whose settings differ, and the tables a check actually reads.

Redis "down" is a port nothing listens on; a stopped FHIR server is a sekmet process that was stopped.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ptbill_demo.embedded import free_port
from tests.integration.support import env_for, ptbill, seed, state_for

pytestmark = pytest.mark.integration

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def one_line_error(p) -> str:
    """The command failed with exactly one ptbill line on stderr and no traceback."""
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("ptbill: ") and "warning" not in ln]
    assert len(lines) == 1, p.stderr
    return lines[0]


def redis_down_env(tmp_path: Path) -> dict[str, str]:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    return env_for("http://127.0.0.1:9/fhir", dead)


@pytest.mark.parametrize("args", [("sync", "--inline"), ("status",), ("retry-failed", "--inline")])
def test_redis_down_is_one_line_without_traceback(tmp_path, args):
    p = ptbill(redis_down_env(tmp_path), *args, timeout=60)
    assert p.returncode == 2
    line = one_line_error(p)
    assert "cannot reach Redis at redis://127.0.0.1:" in line and "start Redis" in line


def test_broker_down_through_the_workers_is_one_line(tmp_path, redis_url):
    env = env_for(
        "http://127.0.0.1:9/fhir", redis_url, PTBILL_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    p = ptbill(env, "sync", timeout=60)
    assert p.returncode == 2
    assert "cannot reach the Celery broker" in one_line_error(p)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"PTBILL_BROKER_URL": "reddis://127.0.0.1:6379/0"}, "PTBILL_BROKER_URL: unknown scheme 'reddis'"),
        ({"PTBILL_FHIR_BASE_URL": ""}, "PTBILL_FHIR_BASE_URL is set but empty"),
        ({"PTBILL_PAGE_SIZE": "lots"}, "PTBILL_PAGE_SIZE must be an integer"),
    ],
)
def test_bad_settings_are_rejected_in_one_line_not_defaulted(redis_url, extra, expected):
    env = {**env_for("http://127.0.0.1:9/fhir", redis_url), **extra}
    p = ptbill(env, "status")
    assert p.returncode == 2
    assert expected in one_line_error(p)
    assert p.stdout == ""  # no "healthy" status from silently defaulted settings


def test_unknown_variable_is_warned_on_every_command(redis_url):
    env = env_for("http://127.0.0.1:9/fhir", redis_url, PTBILL_FHIR_BASEURL="https://emr.example/fhir")
    p = ptbill(env, "mappings", "check")
    assert p.returncode == 0
    assert (
        "ptbill: warning: unknown variable PTBILL_FHIR_BASEURL is ignored; did you mean PTBILL_FHIR_BASE_URL?"
        in p.stderr
    )


def test_fhir_server_down_inline_sync_is_one_line(fhir_server, redis_url):
    env = env_for(fhir_server.base_url, redis_url, PTBILL_HTTP_TIMEOUT="2")
    fhir_server.stop()
    p = ptbill(env, "sync", "--inline", timeout=60)
    assert p.returncode == 1
    assert json.loads(p.stdout)["status"] == "failed"
    assert "cannot reach the FHIR server" in one_line_error(p)


def test_doctor_against_a_stopped_server_fails_with_fixes(fhir_server, redis_url):
    env = env_for(
        fhir_server.base_url, redis_url, PTBILL_HTTP_TIMEOUT="2", PTBILL_FHIR_BASEURL="http://typo/fhir"
    )
    fhir_server.stop()
    p = ptbill(env, "doctor", "--no-workers", timeout=60)
    assert p.returncode == 1, p.stdout
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    out = p.stdout.splitlines()
    fhir = [ln for ln in out if ln.startswith("FAIL  fhir ")]
    assert len(fhir) == 1 and "cannot reach the FHIR server" in fhir[0] and "/metadata" in fhir[0]
    assert any("fix: check PTBILL_FHIR_BASE_URL" in ln for ln in out)
    assert any(ln.startswith("FAIL  variables") and "PTBILL_FHIR_BASEURL" in ln for ln in out)
    assert any("fix: rename it to PTBILL_FHIR_BASE_URL" in ln for ln in out)
    assert any(ln.startswith("OK    redis") for ln in out)
    assert any(ln.startswith("OK    mappings") for ln in out)
    # the effective configuration with where each value came from
    assert any(
        ln.split()[:1] == ["PTBILL_FHIR_BASE_URL"] and ln.rstrip().endswith("env PTBILL_FHIR_BASE_URL")
        for ln in out
    )
    assert any(ln.split()[:1] == ["PTBILL_PAGE_SIZE"] and ln.rstrip().endswith("default") for ln in out)
    assert out[-1] == "doctor: 2 FAIL"


def test_doctor_all_ok_and_json(fhir_server, redis_url, workers, tmp_path):
    secret = "redis-pass-not-shown"
    env = env_for(fhir_server.base_url, redis_url, PTBILL_FLOWER_BASIC_AUTH=f"ops:{secret}")
    workers.start(env, concurrency=1)
    p = ptbill(env, "doctor", timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1] == "doctor: all OK"
    assert "OK    fhir       " in p.stdout and "FHIR 4.0" in p.stdout
    assert "OK    workers    1 worker(s) with the same settings" in p.stdout
    assert secret not in p.stdout and secret not in p.stderr
    doc = json.loads(ptbill(env, "doctor", "--json", timeout=90).stdout)
    assert doc["ok"] is True
    assert {c["name"] for c in doc["checks"]} >= {
        "settings",
        "variables",
        "fhir",
        "redis",
        "broker",
        "workers",
        "mappings",
    }
    flower = next(x for x in doc["settings"] if x["variable"] == "PTBILL_FLOWER_BASIC_AUTH")
    assert flower == {
        "variable": "PTBILL_FLOWER_BASIC_AUTH",
        "value": "***",
        "source": "env PTBILL_FLOWER_BASIC_AUTH",
    }


def test_sync_detects_a_worker_with_other_settings_at_once(fhir_server, redis_url, workers):
    worker_env = env_for(fhir_server.base_url, redis_url)
    workers.start(worker_env, concurrency=1)
    cli_env = {**worker_env, "PTBILL_FHIR_BASE_URL": "http://127.0.0.1:9/other-fhir"}
    p = ptbill(cli_env, "sync", "--quiet", timeout=60)
    assert p.returncode == 2
    line = one_line_error(p)
    assert "no worker has this ptbill's settings" in line and "uses another FHIR server" in line
    assert fhir_server.base_url in line and "127.0.0.1:9/other-fhir" in line


def test_sync_detects_no_worker_on_the_sync_queue(fhir_server, redis_url, workers):
    env = env_for(fhir_server.base_url, redis_url)
    workers.start(env, concurrency=1, queues="process")
    p = ptbill(env, "sync", "--quiet", timeout=60)
    assert p.returncode == 2
    assert "consumes queue(s) fhir_read" in one_line_error(p)


def test_sync_with_dead_letters_exits_non_zero(fhir_server, redis_url):
    """A partial run (dead letters) is not a success for cron or a CI job."""
    from tests.integration.faultproxy import Fault, FaultPlan, FaultProxy, Rule, is_transaction

    seed(fhir_server.base_url, patients=1, seed_value=4)
    plan = FaultPlan([Rule(Fault("status", status=422, outcome="rejected"), is_transaction, nth=[1])])
    with FaultProxy(fhir_server.root_url, plan, lifetime=120) as proxy:
        env = env_for(proxy.url("/fhir"), redis_url)
        p = ptbill(env, "sync", "--inline", timeout=90)
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "partial" and int(out["dead_lettered"]) == 1
    assert "1 encounter(s) dead-lettered; see ptbill status" in one_line_error(p)


def test_status_is_unhealthy_when_no_sync_succeeded_for_n_intervals(redis_url):
    env = env_for(f"http://127.0.0.1:9/stale-{uuid.uuid4().hex[:6]}", redis_url, PTBILL_SYNC_INTERVAL="60")
    st = state_for(env)
    old = (datetime.now(UTC) - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    record = {
        "status": "ok",
        "run_id": "r-old",
        "finished": old,
        "since": old,
        "until": old,
        "processed": "3",
    }
    st.r.hset(f"{st.p}:last", mapping=record)
    st.r.hset(f"{st.p}:last_ok", mapping=record)
    p = ptbill(env, "status", "--json")
    assert p.returncode == 1
    rep = json.loads(p.stdout)
    assert rep["stale"] is True and rep["healthy"] is False
    assert any(
        x.startswith("no successful sync for 5 h") and "3 x PTBILL_SYNC_INTERVAL=60 s" in x
        for x in rep["problems"]
    )
    assert rep["settings"]["PTBILL_SYNC_INTERVAL"] == 60
    assert rep["settings"]["PTBILL_REDIS_URL"] == redis_url
    human = ptbill(env, "status")
    assert human.returncode == 1 and "ATTENTION: no successful sync for 5 h" in human.stdout
    assert "PTBILL_FHIR_BASE_URL" in human.stdout  # the settings in use
    # a recent success is healthy again
    fresh = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    st.r.hset(f"{st.p}:last_ok", mapping={**record, "finished": fresh})
    st.r.hset(f"{st.p}:last", mapping={**record, "finished": fresh})
    assert ptbill(env, "status").returncode == 0


def test_mappings_check_honours_PTBILL_MAPPINGS_DIR(tmp_path, redis_url):
    bad = tmp_path / "clinic-mappings"
    shutil.copytree(MAPPINGS, bad, ignore=shutil.ignore_patterns("*.py", "__pycache__", "schemas"))
    kx = bad / "billing" / "kx_thresholds.yaml"
    kx.write_text(kx.read_text().replace('effective: "2026-01-01"', 'effective: "2026-13-01"', 1))
    env = env_for("http://127.0.0.1:9/fhir", redis_url, PTBILL_MAPPINGS_DIR=str(bad))
    p = ptbill(env, "mappings", "check")
    assert p.returncode == 1, p.stdout
    assert f"checking {bad} (PTBILL_MAPPINGS_DIR)" in p.stdout
    assert "billing/kx_thresholds.yaml" in p.stdout and "FAILED: 1 problem(s)" in p.stdout
    shipped = ptbill(env, "mappings", "check", "--dir", str(MAPPINGS))  # --dir wins
    assert shipped.returncode == 0 and shipped.stdout.rstrip().splitlines()[-1].startswith("OK: ")
    # and doctor reports the same directory as the one in use
    d = ptbill(env, "doctor", "--no-workers", timeout=60)
    assert any(ln.startswith("FAIL  mappings") and str(bad) in ln for ln in d.stdout.splitlines())


def test_doctor_wait_is_a_start_up_wait(tmp_path, redis_url):
    """compose's fhir-ready: doctor --wait keeps checking until the FHIR server is up, then exits 0."""
    import subprocess
    import sys

    from ptbill_demo.embedded import SekmetServer
    from tests.integration.support import REPO

    port = free_port()
    env = env_for(f"http://127.0.0.1:{port}/fhir", redis_url, PTBILL_HTTP_TIMEOUT="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "doctor", "--no-workers", "--wait", "120"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with SekmetServer(tmp_path / "late-fhir", port=port):
            out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert out.splitlines()[-1] == "doctor: all OK"
