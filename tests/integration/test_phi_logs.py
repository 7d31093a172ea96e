"""No PHI in any log line: a real worker (PTBILL_LOG_FORMAT=json, DEBUG) and the ``ptbill`` CLI process
a clinic whose source data is full of distinctive patient names, birth dates, identifiers, addresses and
note phrases; none of those values may appear in any line they print, and every worker line must be a
JSON object with allow-listed fields only.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from integration import logs
from integration.fhir.client import FhirClient
from tests.integration.support import env_for, ptbill, seed

pytestmark = pytest.mark.integration


FAMILY = "Qqqprivate"
GIVEN = "Zyxwvut"
BIRTH = "1937-04-19"
MRN = "MRN-Q7781234"
SSN = "999-31-4159"
STREET = "42 Xylophonic Lane"
CITY = "Vvvbrookton"
PHONE = "555-0199-7731"
PHRASE = "purplemonkeydishwasher"
ENC_REASON = "fell off the quokka ladder"
PHI_VALUES = [
    FAMILY,
    GIVEN,
    BIRTH,
    "1937",
    MRN,
    "Q7781234",
    SSN,
    STREET,
    "Xylophonic",
    CITY,
    PHONE,
    PHRASE,
    "quokka",
]

BASE_KEYS = {"ts", "level", "logger", "msg", "args_dropped", "exc_type", "exc", "exc_where"}


def put_all(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
    )


def plant_phi(base_url: str) -> int:
    """Overwrite the seeded source data with PHI-looking values; returns the number of Procedures touched."""
    with FhirClient(base_url) as client:
        patients = [e["resource"] for e in client.search_entries("Patient", [("_count", "100")])]
        for i, p in enumerate(patients):
            p["name"] = [{"family": f"{FAMILY}{i or ''}", "given": [GIVEN], "text": f"{GIVEN} {FAMILY}"}]
            p["birthDate"] = BIRTH
            p["identifier"] = [
                *p.get("identifier", []),
                {
                    "system": "urn:oid:1.2.36.146.595.217.0.1",
                    "value": f"{MRN}{i or ''}",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                    },
                },
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": SSN},
            ]
            p["address"] = [{"line": [STREET], "city": CITY, "postalCode": "99999"}]
            p["telecom"] = [{"system": "phone", "value": PHONE}]
        put_all(client, patients)
        procs = [e["resource"] for e in client.search_entries("Procedure", [("_count", "500")])]
        for p in procs:
            code = p.get("code") or {}
            code["text"] = f"{code.get('text') or 'ther ex'} ({PHRASE})"
            p["code"] = code
            p["note"] = [*p.get("note", []), {"text": f"{GIVEN} {FAMILY} said {PHRASE}; MRN {MRN}"}]
        put_all(client, procs)
        encs = [e["resource"] for e in client.search_entries("Encounter", [("_count", "100")])]
        for enc in encs:
            enc["reasonCode"] = [{"text": f"{ENC_REASON} ({PHRASE})"}]
            enc["identifier"] = [*enc.get("identifier", []), {"system": "urn:visit", "value": f"{MRN}-V"}]
        put_all(client, encs)
        return len(procs)


BANNER_START = re.compile(r"^ -------------- \S+@\S+ v\d")
WARNING_START = re.compile(r"^\S+\.py:\d+: \w*Warning: ")


def log_records(lines: list[str]) -> list[str]:
    """The worker's log lines: everything but Celery's console banner and shutdown notice, which Celery
    prints straight to stdout (not through logging; ``celery -q`` suppresses the banner), and a Python
    warning printed before logging is configured (Celery's "running as root" SecurityWarning)."""
    out: list[str] = []
    in_banner = in_warning = False
    for ln in lines:
        if not out and WARNING_START.match(ln):  # a Python warning printed before logging is set up
            in_warning = True
            continue
        if in_warning and not ln.startswith("{") and not BANNER_START.match(ln):
            continue
        in_warning = False
        if BANNER_START.match(ln):
            in_banner = True
            continue
        if ln.startswith("{"):
            in_banner = False
        elif in_banner or ln == "worker: Warm shutdown (MainProcess)":
            continue
        out.append(ln)
    return out


def assert_no_phi(text: str, where: str) -> None:
    low = text.lower()
    for value in PHI_VALUES:
        assert value.lower() not in low, f"{value!r} found in {where}"


def test_no_phi_in_worker_or_cli_logs(fhir_server, redis_url, workers, tmp_path):
    seed(fhir_server.base_url, patients=3, seed_value=21)
    n_procs = plant_phi(fhir_server.base_url)
    assert n_procs > 0
    env = env_for(fhir_server.base_url, redis_url, PTBILL_LOG_FORMAT="json", PTBILL_LOG_LEVEL="DEBUG")
    w = workers.start(env, concurrency=2)

    # the CLI drives a sync through the worker (progress bar on, logs on stderr)
    sync = ptbill(env, "sync", "--timeout", "180", timeout=240)
    assert sync.returncode == 0, sync.stderr
    info = json.loads(sync.stdout)
    assert int(info["processed"]) >= 3

    # and re-decides everything in-process (backfill --inline), which logs from the CLI process itself
    backfill = ptbill(
        env, "backfill", "--inline", "--since", "1970-01-01T00:00:00Z", "--until", info["until"], timeout=240
    )
    assert backfill.returncode == 0, backfill.stderr
    bf = json.loads(backfill.stdout)
    # every encounter re-decided (whether its suggestions change is not this test's concern)
    assert int(bf.get("unchanged", 0)) + int(bf.get("processed", 0)) == int(info["processed"])

    w.stop()  # flush and close the worker's log
    worker_log = w.log_path.read_text(errors="replace")
    lines = [ln for ln in worker_log.splitlines() if ln.strip()]
    assert len(lines) > 10  # DEBUG worker: task received/processed lines and more

    assert_no_phi(worker_log, "the worker log")
    assert_no_phi(sync.stdout + sync.stderr, "ptbill sync output")
    assert_no_phi(backfill.stdout + backfill.stderr, "ptbill backfill --inline output")

    allowed = BASE_KEYS | logs.ALLOWED
    processed = 0
    for ln in log_records(lines):
        rec = json.loads(ln)  # every worker log line is one JSON object
        assert isinstance(rec, dict), ln
        assert set(rec) <= allowed, (set(rec) - allowed, ln)
        assert {"ts", "level", "logger", "msg"} <= set(rec)
        if rec["msg"] == "encounter processed":
            processed += 1
            assert rec["encounter_id"] and rec["run_id"] and isinstance(rec["counts"], dict)
    assert processed == int(info["processed"])

    # the CLI's own log lines (stderr) are JSON too; the progress bar is the only other thing there
    cli_json = [ln for ln in backfill.stderr.splitlines() if ln.startswith("{")]
    assert cli_json, backfill.stderr
    for ln in cli_json:
        assert set(json.loads(ln)) <= allowed
