"""Bad input through the whole pure pipeline: group -> extract+decide -> outputs -> plan -> R4B validation.

Malformed and odd Encounter+Procedure groups (hypothesis mutates a realistic PT visit bundle) must never
raise an unhandled exception; every Procedure that is not billed is accounted for (classified, skipped
with a reason, or named in an input problem), never silently dropped; and every resource ptbill would
write is valid R4B. ``ptbill process --bundle`` on such bundles exits 0 with valid JSON on stdout.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.fhir.extract import group_bundle
from integration.fhir.writeback import build_outputs, build_transaction, plan_writes
from integration.sync import Group, decide_group, r4b_validator
from mappings.loader import default_tables
from tasks.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
BASE = json.loads((REPO / "tests" / "data" / "fhir" / "pt_visit_transaction.json").read_text())
TABLES = default_tables()
VALIDATE = r4b_validator()
ENC_URL = "urn:uuid:00000000-0000-4000-8000-000000000007"

Bundle = dict[str, Any]
Mutation = Callable[[Bundle], None]


def _procs(b: Bundle) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in b["entry"]
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Procedure"
    ]


def _encounter(b: Bundle) -> dict[str, Any]:
    return next(
        e["resource"]
        for e in b["entry"]
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Encounter"
    )


def _add_proc(b: Bundle, proc: dict[str, Any], full_url: str | None = None) -> None:
    entry: dict[str, Any] = {"resource": proc, "request": {"method": "POST", "url": "Procedure"}}
    if full_url:
        entry["fullUrl"] = full_url
    b["entry"].append(entry)


def _proc(pid: str, text: str, **kw: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"text": text},
        "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
        "encounter": {"reference": ENC_URL},
        "performedPeriod": {"start": "2026-02-03T09:30:00-05:00", "end": "2026-02-03T09:45:00-05:00"},
    }
    p.update(kw)
    return p


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just([]),
    st.just({}),
    st.just([{"text": 5}]),
    st.just({"coding": "97110"}),
    st.sampled_from(["2026", "2026-02", "2026-02-03", "2026-13-45T99:99:99Z", "Encounter/nope", "#x"]),
)

FIELDS = [
    "id",
    "status",
    "code",
    "note",
    "encounter",
    "subject",
    "performedPeriod",
    "performedDateTime",
    "performer",
    "bodySite",
    "category",
    "extension",
    "meta",
    "resourceType",
]
ENCOUNTER_FIELDS = ["status", "subject", "period", "length", "extension", "episodeOfCare", "meta"]


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    kind = draw(
        st.sampled_from(
            [
                "drop_field",
                "wrong_type",
                "enc_drop_field",
                "enc_wrong_type",
                "both_performed",
                "year_only",
                "period_no_end",
                "end_before_start",
                "conditional_encounter",
                "contained_performer",
                "unknown_system",
                "huge_note",
                "non_utf8",
                "entry_without_resource",
                "entry_not_object",
                "not_therapy",
                "status",
                "duplicate",
                "other_encounter",
                "no_id_urn",
            ]
        )
    )
    i = draw(st.integers(min_value=0, max_value=5))
    fld = draw(st.sampled_from(FIELDS))
    efld = draw(st.sampled_from(ENCOUNTER_FIELDS))
    val = draw(odd_values)
    raw = draw(st.binary(min_size=1, max_size=40))
    status = draw(st.sampled_from(["in-progress", "not-done", "entered-in-error", "unknown", "", "done"]))

    def pick(b: Bundle) -> dict[str, Any] | None:
        ps = _procs(b)
        return ps[i % len(ps)] if ps else None

    def apply(b: Bundle) -> None:
        p = pick(b)
        if kind == "drop_field" and p is not None:
            p.pop(fld, None)
        elif kind == "wrong_type" and p is not None:
            p[fld] = copy.deepcopy(val)
        elif kind == "enc_drop_field":
            _encounter(b).pop(efld, None)
        elif kind == "enc_wrong_type":
            _encounter(b)[efld] = copy.deepcopy(val)
        elif kind == "both_performed" and p is not None:
            p["performedDateTime"] = "2026-02-03T09:05:00-05:00"
            p["performedPeriod"] = {"start": "2026-02-03T09:05:00-05:00", "end": "2026-02-03T09:20:00-05:00"}
        elif kind == "year_only" and p is not None:
            p.pop("performedPeriod", None)
            p["performedDateTime"] = "2026"
        elif kind == "period_no_end" and p is not None:
            p["performedPeriod"] = {"start": "2026-02-03T09:05:00-05:00"}
        elif kind == "end_before_start" and p is not None:
            p["performedPeriod"] = {"start": "2026-02-03T10:05:00-05:00", "end": "2026-02-03T09:05:00-05:00"}
        elif kind == "conditional_encounter" and p is not None:
            p["encounter"] = {"reference": "Encounter?identifier=https://emr.example/enc|V-1"}
        elif kind == "contained_performer" and p is not None:
            p["contained"] = [
                {"resourceType": "Practitioner", "id": "c1", "name": [{"family": "Contained"}]},
                {"resourceType": "Location", "id": "l1"},
            ]
            p["performer"] = [{"actor": {"reference": "#c1"}}]
        elif kind == "unknown_system" and p is not None:
            p["code"] = {"coding": [{"system": "urn:oid:9.9.9.9", "code": "ZZZ-1", "display": "local thing"}]}
        elif kind == "huge_note" and p is not None:
            p["note"] = [{"text": "therapeutic exercise " + "x" * 100_000}]
        elif kind == "non_utf8" and p is not None:
            junk = raw.decode("utf-8", errors="replace")
            p["code"] = {"text": "ther ex " + junk}
            p["note"] = [{"text": junk}]
        elif kind == "entry_without_resource":
            b["entry"].append({"fullUrl": "urn:uuid:dead", "request": {"method": "POST", "url": "Procedure"}})
        elif kind == "entry_not_object":
            b["entry"].append(copy.deepcopy(val))
        elif kind == "not_therapy":
            _add_proc(b, _proc(f"colo-{i}", "Colonoscopy", code={"text": "Colonoscopy"}))
        elif kind == "status" and p is not None:
            p["status"] = status
        elif kind == "duplicate" and p is not None:
            _add_proc(b, copy.deepcopy(p))
        elif kind == "other_encounter":
            _add_proc(b, _proc(f"stray-{i}", "ther ex", encounter={"reference": f"Encounter/missing-{i}"}))
        elif kind == "no_id_urn":
            q = _proc("x", "manual therapy STM lumbar 10 min")
            del q["id"]
            _add_proc(b, q, full_url=f"urn:uuid:00000000-0000-4000-8000-0000000001{i:02d}")

    return apply


def run_pipeline(bundle: Any) -> dict[str, Any]:
    """The pure pipeline on one bundle, with everything it counted."""
    groups, bundle_problems = group_bundle(bundle)
    report: dict[str, Any] = {"bundle_problems": bundle_problems, "groups": []}
    for enc, related in groups:
        g = Group(enc, dict(related))
        facts, decision = decide_group(g, TABLES)
        desired = build_outputs(facts, decision)
        plan = plan_writes(facts, decision, desired, {})
        bundle = build_transaction(facts, decision, plan)
        if bundle is not None:
            for e in bundle["entry"]:
                VALIDATE(e["resource"])  # raises OutputValidationError on invalid R4B
        for o in desired:
            VALIDATE(o.resource)
        report["groups"].append((g, facts, decision, plan))
    return report


def check_accounting(bundle: Any, report: dict[str, Any]) -> None:
    # 1. decide: every extracted intervention is classified or skipped with a reason
    for _, facts, decision, _plan in report["groups"]:
        extracted = {i.id for i in facts.interventions}
        classified = {c.intervention.id for c in decision.classified}
        skipped = {s.procedure_id for s in decision.skipped}
        assert extracted <= classified | skipped, extracted - classified - skipped
        assert all(s.reason for s in decision.skipped)
        # billed lines only come from classified interventions
        for ln in decision.lines:
            assert set(ln.procedure_ids) <= classified
    # 2. extraction/grouping: a Procedure of the input that reached no decision is named in a problem
    decided = {i.id for _, facts, _d, _p in report["groups"] for i in facts.interventions}
    problems = list(report["bundle_problems"]) + [
        p for _, facts, _d, _p in report["groups"] for p in facts.input_problems
    ]
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for e in entries if isinstance(entries, list) else []:
        res = e.get("resource") if isinstance(e, dict) else None
        if not (isinstance(res, dict) and res.get("resourceType") == "Procedure"):
            continue
        pid = res.get("id") if isinstance(res.get("id"), str) and res["id"].strip() else None
        if pid is None and isinstance(e.get("fullUrl"), str) and e["fullUrl"].startswith("urn:uuid:"):
            pid = e["fullUrl"][len("urn:uuid:") :]
        if pid is not None and pid.strip() in decided:
            continue
        assert any("Procedure" in p for p in problems), (pid, problems)
    # 3. no problem string carries note text (100 kB notes, non-UTF-8 junk) -- short, code-written reasons
    assert all(len(p) < 300 for p in problems)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(mutations(), min_size=1, max_size=4))
def test_mutated_visit_never_crashes_and_accounts_for_every_procedure(muts):
    b = copy.deepcopy(BASE)
    for m in muts:
        m(b)
    report = run_pipeline(b)
    check_accounting(b, report)


def _hand_made() -> dict[str, Bundle]:
    """Named bad bundles: each exercises one documented edge case (also used for the CLI)."""
    out: dict[str, Bundle] = {}

    b = copy.deepcopy(BASE)
    _add_proc(b, _proc("both", "ther ex", performedDateTime="2026-02-03T09:05:00-05:00"))
    _add_proc(b, _proc("year", "gait training", performedPeriod=None, performedDateTime="2026"))
    _add_proc(b, _proc("open", "neuromuscular re-ed", performedPeriod={"start": "2026-02-03T09:00:00Z"}))
    _add_proc(
        b,
        _proc(
            "backwards",
            "manual therapy",
            performedPeriod={"start": "2026-02-03T10:00:00Z", "end": "2026-02-03T09:00:00Z"},
        ),
    )
    out["performed_shapes"] = b

    b = copy.deepcopy(BASE)
    _add_proc(b, _proc("colo", "Colonoscopy"))
    _add_proc(
        b,
        _proc(
            "appy",
            "Appendectomy",
            code={"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}]},
        ),
    )
    out["not_therapy"] = b

    b = copy.deepcopy(BASE)
    b["entry"] += [{"fullUrl": "urn:uuid:x"}, {"resource": None}, {"resource": "Procedure"}, 7, None]
    _add_proc(b, {"resourceType": "Procedure", "status": "completed"})  # no id, no fullUrl
    _add_proc(b, _proc("nolink", "ther ex", encounter=None))
    _add_proc(b, _proc("wrongtype", "ther ex", encounter="Encounter/1", code=["x"], note="text"))
    out["broken_entries"] = b

    b = copy.deepcopy(BASE)
    _add_proc(b, _proc("huge", "ther ex", note=[{"text": "squats " * 20_000}]))
    junk = bytes(range(128, 256)).decode("utf-8", errors="replace")
    _add_proc(b, _proc("junk", "ther ex " + junk, note=[{"text": junk}]))
    out["huge_and_junk"] = b

    b = copy.deepcopy(BASE)
    _encounter(b).update({"period": {"start": "2026-02-03T10:00:00Z", "end": "2026-02-03T09:00:00Z"}})
    _encounter(b)["subject"] = {
        "reference": "Patient?identifier=https://ptbill.dev/synthetic/patient|TEST-P1"
    }
    _add_proc(b, _proc("cond", "ther ex", encounter={"reference": "Encounter?identifier=x|y"}))
    out["conditional_refs"] = b

    b = copy.deepcopy(BASE)
    _encounter(b)["contained"] = [{"resourceType": "Patient", "id": "p"}]
    _encounter(b)["subject"] = {"reference": "#p"}
    out["contained_patient"] = b

    out["no_entries"] = {"resourceType": "Bundle", "type": "collection"}
    out["entry_not_list"] = {"resourceType": "Bundle", "type": "collection", "entry": {"resource": {}}}
    return out


HAND_MADE = _hand_made()


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_bad_bundles(name):
    b = HAND_MADE[name]
    report = run_pipeline(b)
    check_accounting(b, report)


def test_not_therapy_procedures_are_skipped_with_a_count():
    report = run_pipeline(HAND_MADE["not_therapy"])
    ((_, _facts, decision, _plan),) = report["groups"]
    reasons = {s.procedure_id: s.reason for s in decision.skipped}
    assert reasons.get("colo") == "not-therapy"
    assert reasons.get("appy") == "not-therapy"
    assert not any("colo" in pid for ln in decision.lines for pid in ln.procedure_ids)


def test_broken_entries_are_counted_with_reasons():
    report = run_pipeline(HAND_MADE["broken_entries"])
    text = " | ".join(report["bundle_problems"])
    assert "entry without resource" in text
    assert "entry is not an object" in text
    assert "entry resource is not an object" in text
    assert "Procedure without id" in text
    assert "Procedure without readable encounter reference" in text


def test_performed_shapes_are_named_problems():
    report = run_pipeline(HAND_MADE["performed_shapes"])
    ((_, facts, _decision, _plan),) = report["groups"]
    probs = " | ".join(facts.input_problems)
    assert "Procedure/both: both performedDateTime and performedPeriod" in probs
    assert "Procedure/year: performedDateTime is not a full date" in probs
    assert "Procedure/open: performedPeriod has no end" in probs
    assert "Procedure/backwards: performedPeriod end before start" in probs


def _cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli_main(["process", "--bundle", str(path)])
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_process_bundle_cli_exits_0_with_json(tmp_path, name):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(HAND_MADE[name]))
    rc, out, err = _cli(p)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["resourceType"] == "Bundle" and doc["type"] == "transaction"
    for e in doc["entry"]:
        VALIDATE(e["resource"])
    assert "ptbill process:" in err  # the summary goes to stderr, stdout stays pure JSON


def test_process_bundle_cli_subprocess_with_non_utf8_bytes(tmp_path):
    """A real ``ptbill process`` process on a file with invalid UTF-8 inside a note."""
    raw = json.dumps(HAND_MADE["performed_shapes"]).replace("ther ex", "ther ex \udcff", 1)
    p = tmp_path / "latin.json"
    p.write_bytes(raw.encode("utf-8", errors="surrogateescape").replace(b"\\udcff", b"\xff\xfe"))
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "process", "--bundle", str(p)],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    doc = json.loads(proc.stdout)
    assert doc["resourceType"] == "Bundle"
    assert any(e["resource"]["resourceType"] == "ChargeItem" for e in doc["entry"])


@pytest.mark.parametrize(
    ("content", "rc"),
    [(b"not json", 2), (b'{"resourceType": "Patient"}', 2), (b"[]", 2)],
)
def test_process_bundle_cli_refuses_unreadable_input_with_a_reason(tmp_path, content, rc):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    code, out, err = _cli(p)
    assert code == rc
    assert out == ""
    assert "cannot read" in err
