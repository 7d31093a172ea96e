"""Decision -> the FHIR resources ptbill writes, with deterministic business identifiers.

Pure: plain dicts in and out. ``build_outputs`` turns one encounter's Decision into the set of resources
that should exist for it (ChargeItem per billing line, DetectedIssue per finding, Task per action item,
Flag per patient-level alert). ``build_transaction`` turns "what should exist" plus "what exists now"
into one transaction Bundle that creates/updates only what changed and retires what is no longer
suggested, followed by one Provenance for the encounter.

Identifiers (system ``IDENTIFIER_SYSTEM``):
  ChargeItem     ``ci|{encounter}|{code}|{date}``
  DetectedIssue  ``di|{encounter}|{finding code}|{procedures or line code}``
  Task           ``task|{encounter}|{action code}|{procedures or line code}``
  Flag           ``flag|{patient}|{flag code}|{key}``
Every encounter-owned resource carries ``meta.tag`` ENCOUNTER_TAG|{encounter id} so a re-run can find it
with one search, and a content hash extension so unchanged resources are never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from integration import __version__
from integration.model import (
    CPT,
    HCPCS,
    ActionItem,
    BillingLine,
    Decision,
    EncounterFacts,
    Finding,
    FlagItem,
)

BASE = "https://ptbill.dev/fhir"
IDENTIFIER_SYSTEM = f"{BASE}/identifier"
ENCOUNTER_TAG = f"{BASE}/CodeSystem/encounter"
PTBILL_TAG = f"{BASE}/CodeSystem/tag"
FINDING_SYSTEM = f"{BASE}/CodeSystem/finding"
ACTION_SYSTEM = f"{BASE}/CodeSystem/action"
FLAG_SYSTEM = f"{BASE}/CodeSystem/flag"
EXT_MODIFIER = f"{BASE}/StructureDefinition/chargeitem-modifier"
ASSISTANT_MODIFIERS = ("CQ", "CO")
EXT_RULE = f"{BASE}/StructureDefinition/rule"
EXT_SOURCE = f"{BASE}/StructureDefinition/rule-source"
EXT_TABLES = f"{BASE}/StructureDefinition/table-versions"
EXT_EVIDENCE = f"{BASE}/StructureDefinition/evidence"
EXT_UNIT_RULE = f"{BASE}/StructureDefinition/unit-rule"
EXT_MINUTES = f"{BASE}/StructureDefinition/timed-minutes"
EXT_HASH = f"{BASE}/StructureDefinition/content-hash"
DEVICE_IDENTIFIER = f"{BASE}/device"
MODIFIER_SYSTEM_HCPCS = HCPCS  # GP, GO, GN, CQ, CO, KX, XE, XS, XP, XU are HCPCS Level II modifiers
MODIFIER_SYSTEM_CPT = CPT  # 59, 76, 77 are CPT modifiers
POLICY_BASE = f"{BASE}/rules"

# Status a resource has when ptbill wrote it; any other status means a person has acted on it and
# ptbill must not overwrite it.
OWN_STATUS = {"ChargeItem": "planned", "DetectedIssue": "preliminary", "Task": "requested", "Flag": "active"}
RETIRED_STATUS = {"ChargeItem": "entered-in-error", "DetectedIssue": "entered-in-error", "Task": "cancelled"}

_NS = uuid.UUID("6f1c7a8e-2b1d-4f0e-9a57-2f7d3c1b9e42")


@dataclass(frozen=True)
class Output:
    """One resource ptbill wants on the server."""

    resource_type: str
    identifier: str  # value under IDENTIFIER_SYSTEM
    resource: dict[str, Any]
    content_hash: str
    encounter_owned: bool = True  # False for patient-level Flags: never retired by an encounter re-run

    @property
    def full_url(self) -> str:
        return f"urn:uuid:{uuid.uuid5(_NS, self.resource_type + '|' + self.identifier)}"

    @property
    def conditional_url(self) -> str:
        return conditional_url(self.resource_type, self.identifier)

    @property
    def resource_id(self) -> str:
        return resource_id(self.resource_type, self.identifier)

    def request_url(self, mode: WriteMode) -> str:
        return f"{self.resource_type}/{self.resource_id}" if mode == "id" else self.conditional_url


WriteMode = Literal["id", "conditional"]


def resource_id(resource_type: str, identifier: str) -> str:
    """Deterministic logical id: the same suggestion always lands on the same resource."""
    return "ptb-" + hashlib.sha256(f"{resource_type}|{identifier}".encode()).hexdigest()[:40]


def conditional_url(resource_type: str, identifier: str) -> str:
    return f"{resource_type}?identifier={quote(IDENTIFIER_SYSTEM + '|' + identifier, safe='')}"


def _ref(kind: str, rid: str | None) -> dict[str, str] | None:
    if not rid:
        return None
    if "/" in rid:
        return {"reference": rid}
    return {"reference": f"{kind}/{rid}"}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(resource: Mapping[str, Any]) -> str:
    """Hash of a resource's content, ignoring server-managed fields and the hash extension itself."""
    body = {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}
    if "extension" in body:
        body["extension"] = [e for e in body["extension"] if e.get("url") != EXT_HASH]
    return hashlib.sha256(_canonical(body).encode()).hexdigest()[:20]


def stored_hash(resource: Mapping[str, Any]) -> str | None:
    for e in resource.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == EXT_HASH:
            v = e.get("valueString")
            return v if isinstance(v, str) else None
    return None


def _finish(
    resource_type: str, identifier: str, res: dict[str, Any], encounter_id: str, owned: bool
) -> Output:
    res["resourceType"] = resource_type
    res["identifier"] = [{"system": IDENTIFIER_SYSTEM, "value": identifier}]
    tags = [{"system": PTBILL_TAG, "code": "ptbill"}]
    if owned:
        tags.append({"system": ENCOUNTER_TAG, "code": encounter_id})
    res["meta"] = {"tag": tags}
    h = content_hash(res)
    res.setdefault("extension", []).append({"url": EXT_HASH, "valueString": h})
    res["id"] = resource_id(resource_type, identifier)
    return Output(resource_type, identifier, res, h, owned)


def _rule_exts(rule_ids: Iterable[str], source: str | None = None) -> list[dict[str, Any]]:
    exts = [{"url": EXT_RULE, "valueString": r} for r in dict.fromkeys(rule_ids) if r]
    if source:
        exts.append({"url": EXT_SOURCE, "valueString": source})
    return exts


def _modifier_system(code: str) -> str:
    return MODIFIER_SYSTEM_CPT if code.isdigit() else MODIFIER_SYSTEM_HCPCS


def _target_key(procedure_ids: tuple[str, ...], line_code: str | None) -> str:
    if line_code:
        return f"line:{line_code}"
    if procedure_ids:
        return "proc:" + ",".join(sorted(procedure_ids))
    return "encounter"


def _code_system(code: str) -> str:
    return CPT if code[:1].isdigit() else HCPCS


def build_outputs(facts: EncounterFacts, decision: Decision) -> list[Output]:
    """Every resource that should exist for this encounter after this decision (deterministic order)."""
    enc = facts.encounter_id
    subject = _ref("Patient", facts.patient_id)
    encounter_ref = {"reference": f"Encounter/{enc}"}
    tables_ext = {"url": EXT_TABLES, "valueString": ";".join(f"{n}@{v}" for n, v in decision.table_versions)}
    outputs: list[Output] = []
    line_urls: dict[str, str] = {}

    for line in sorted(decision.lines, key=lambda ln: (ln.code, str(ln.date_of_service))):
        out = _charge_item(facts, line, subject, encounter_ref, tables_ext)
        line_urls[line.code] = out.full_url
        outputs.append(out)

    for f in sorted(decision.findings, key=lambda x: (x.code, x.procedure_ids, x.line_code or "")):
        outputs.append(_detected_issue(facts, f, subject, encounter_ref, line_urls, tables_ext))

    for a in sorted(decision.actions, key=lambda x: (x.code, x.procedure_ids, x.line_code or "")):
        outputs.append(_task(facts, a, subject, encounter_ref, line_urls))

    for fl in sorted(decision.flags, key=lambda x: (x.code, x.key)):
        outputs.append(_flag(facts, fl, subject, encounter_ref))

    # identifiers must be unique; merge accidental duplicates deterministically (first wins)
    seen: dict[tuple[str, str], Output] = {}
    for o in outputs:
        seen.setdefault((o.resource_type, o.identifier), o)
    return list(seen.values())


def _charge_item(
    facts: EncounterFacts,
    line: BillingLine,
    subject: dict[str, str] | None,
    encounter_ref: dict[str, str],
    tables_ext: dict[str, str],
) -> Output:
    dos = line.date_of_service.isoformat() if line.date_of_service else (facts.period_start or "")[:10]
    ident = f"ci|{facts.encounter_id}|{line.code}|{dos or 'unknown-date'}"
    # a timed code split between therapist and assistant units is two claim lines (one with CQ/CO):
    # the assistant line needs its own identifier or the merge below would drop it
    asst = [m.code for m in line.modifiers if m.code in ASSISTANT_MODIFIERS]
    if asst:
        ident += "|" + "|".join(asst)
    res: dict[str, Any] = {
        "status": OWN_STATUS["ChargeItem"],
        "code": {"coding": [{"system": _code_system(line.code), "code": line.code}]},
        "subject": subject or {"display": "unknown patient"},
        "context": encounter_ref,
        "quantity": {"value": line.units},
    }
    if dos:
        res["occurrenceDateTime"] = dos
    performers = [{"actor": {"reference": p}} for p in line.performer_refs if "/" in p]
    if performers:
        res["performer"] = performers
    if line.procedure_ids:
        res["service"] = [{"reference": f"Procedure/{p}"} for p in line.procedure_ids]
    exts: list[dict[str, Any]] = []
    for m in line.modifiers:
        exts.append(
            {
                "url": EXT_MODIFIER,
                "valueCodeableConcept": {
                    "coding": [{"system": _modifier_system(m.code), "code": m.code}],
                    "text": f"{m.code}: {m.reason} [{m.rule_id}]",
                },
            }
        )
    exts.append({"url": EXT_UNIT_RULE, "valueCode": line.unit_rule})
    if line.minutes is not None:
        exts.append({"url": EXT_MINUTES, "valueInteger": line.minutes})
    exts += _rule_exts(line.rule_ids)
    exts += [
        {"url": EXT_EVIDENCE, "valueString": _evidence_text(e.kind, e.value, e.rule_id)}
        for e in line.evidence
    ]
    exts.append(tables_ext)
    res["extension"] = exts
    mods = "-".join(m.code for m in line.modifiers)
    timed = f", {line.minutes} timed min" if line.minutes is not None else ""
    res["note"] = [
        {
            "text": f"ptbill suggestion: {line.code}{'-' + mods if mods else ''} x {line.units} unit(s) "
            f"({line.unit_rule} rule{timed}). "
            "For review; not submitted."
        }
    ]
    return _finish("ChargeItem", ident, res, facts.encounter_id, True)


def _evidence_text(kind: str, value: str, rule_id: str | None) -> str:
    return f"{kind}: {value}" + (f" [{rule_id}]" if rule_id else "")


def _severity(sev: str) -> str:
    return sev if sev in ("high", "moderate", "low") else "moderate"


def _detected_issue(
    facts: EncounterFacts,
    f: Finding,
    subject: dict[str, str] | None,
    encounter_ref: dict[str, str],
    line_urls: Mapping[str, str],
    tables_ext: dict[str, str],
) -> Output:
    ident = f"di|{facts.encounter_id}|{f.code}|{_target_key(f.procedure_ids, f.line_code)}"
    implicated: list[dict[str, str]] = [{"reference": f"Procedure/{p}"} for p in sorted(f.procedure_ids)]
    if f.line_code and f.line_code in line_urls:
        implicated.append({"reference": line_urls[f.line_code]})
    if not implicated:
        implicated = [encounter_ref]
    res: dict[str, Any] = {
        "status": OWN_STATUS["DetectedIssue"],
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": f.code}], "text": f.code},
        "severity": _severity(f.severity),
        "implicated": implicated,
        "detail": f.message,
        "extension": [*_rule_exts([f.rule_id], f.source), tables_ext],
    }
    if subject:
        res["patient"] = subject
    if f.source.startswith(("http://", "https://")):
        res["reference"] = f.source
    return _finish("DetectedIssue", ident, res, facts.encounter_id, True)


def _task(
    facts: EncounterFacts,
    a: ActionItem,
    subject: dict[str, str] | None,
    encounter_ref: dict[str, str],
    line_urls: Mapping[str, str],
) -> Output:
    ident = f"task|{facts.encounter_id}|{a.code}|{_target_key(a.procedure_ids, a.line_code)}"
    if a.line_code and a.line_code in line_urls:
        focus = {"reference": line_urls[a.line_code]}
    elif len(a.procedure_ids) == 1:
        focus = {"reference": f"Procedure/{a.procedure_ids[0]}"}
    else:
        focus = encounter_ref
    res: dict[str, Any] = {
        "status": OWN_STATUS["Task"],
        "intent": "proposal",
        "priority": a.priority,
        "code": {"coding": [{"system": ACTION_SYSTEM, "code": a.code}], "text": a.code},
        "description": a.description,
        "focus": focus,
        "encounter": encounter_ref,
        "extension": _rule_exts([a.rule_id], a.source),
    }
    if subject:
        res["for"] = subject
    if len(a.procedure_ids) > 1:
        res["input"] = [
            {"type": {"text": "procedure"}, "valueReference": {"reference": f"Procedure/{p}"}}
            for p in sorted(a.procedure_ids)
        ]
    return _finish("Task", ident, res, facts.encounter_id, True)


def _flag(
    facts: EncounterFacts, fl: FlagItem, subject: dict[str, str] | None, encounter_ref: dict[str, str]
) -> Output:
    patient = (subject or {}).get("reference", "unknown")
    ident = f"flag|{patient}|{fl.code}|{fl.key}"
    res: dict[str, Any] = {
        "status": OWN_STATUS["Flag"],
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "admin"}]}
        ],
        "code": {"coding": [{"system": FLAG_SYSTEM, "code": fl.code}], "text": fl.message},
        "subject": subject or {"display": "unknown patient"},
        "extension": _rule_exts([fl.rule_id], fl.source),
    }
    return _finish("Flag", ident, res, facts.encounter_id, False)


def provenance_id(encounter_id: str) -> str:
    return "ptbill-" + hashlib.sha256(encounter_id.encode()).hexdigest()[:40]


def build_provenance(
    facts: EncounterFacts,
    decision: Decision,
    targets: list[dict[str, str]],
    recorded: datetime | None = None,
) -> dict[str, Any]:
    entities: list[dict[str, Any]] = []
    if facts.version_id:
        entities.append(
            {
                "role": "source",
                "what": {"reference": f"Encounter/{facts.encounter_id}/_history/{facts.version_id}"},
            }
        )
    else:
        entities.append({"role": "source", "what": {"reference": f"Encounter/{facts.encounter_id}"}})
    for itv in facts.interventions:
        ref = f"Procedure/{itv.id}" + (f"/_history/{itv.version_id}" if itv.version_id else "")
        entities.append({"role": "source", "what": {"reference": ref}})
    return {
        "resourceType": "Provenance",
        "id": provenance_id(facts.encounter_id),
        "meta": {
            "tag": [
                {"system": PTBILL_TAG, "code": "ptbill"},
                {"system": ENCOUNTER_TAG, "code": facts.encounter_id},
            ]
        },
        "target": targets or [{"reference": f"Encounter/{facts.encounter_id}"}],
        "recorded": (recorded or datetime.now(UTC)).isoformat(timespec="seconds"),
        "policy": [f"{POLICY_BASE}/{n}/{v}" for n, v in decision.table_versions]
        + [f"{POLICY_BASE}/engine/{decision.engine_version or __version__}"],
        "activity": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}
            ],
            "text": "ptbill billing suggestion",
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {
                    "type": "Device",
                    "identifier": {"system": DEVICE_IDENTIFIER, "value": "ptbill"},
                    "display": f"ptbill {__version__}",
                },
            }
        ],
        "entity": entities,
    }


@dataclass(frozen=True)
class Existing:
    """A ptbill resource found on the server (or remembered in the ledger)."""

    resource_type: str
    identifier: str
    content_hash: str | None
    status: str | None
    resource: dict[str, Any] | None = None  # the body when read from the server


@dataclass(frozen=True)
class Plan:
    bundle: dict[str, Any] | None  # None: nothing to write
    written: tuple[Output, ...]
    retired: tuple[str, ...]  # identifiers
    unchanged: int
    kept_reviewed: tuple[str, ...]  # identifiers a person has acted on: left alone


def human_touched(e: Existing) -> bool:
    own = OWN_STATUS.get(e.resource_type)
    retired = RETIRED_STATUS.get(e.resource_type)
    return e.status is not None and e.status not in (own, retired)


def retire_body(e: Existing) -> dict[str, Any] | None:
    if e.resource is None or e.resource_type not in RETIRED_STATUS:
        return None
    body = {k: v for k, v in e.resource.items() if k not in ("meta", "text")}
    body["status"] = RETIRED_STATUS[e.resource_type]
    body.pop("extension", None)
    body["extension"] = [x for x in (e.resource.get("extension") or []) if x.get("url") != EXT_HASH]
    h = content_hash(body)
    body["extension"].append({"url": EXT_HASH, "valueString": h})
    body["meta"] = {"tag": (e.resource.get("meta") or {}).get("tag", [])}
    return body


def plan_writes(
    facts: EncounterFacts,
    decision: Decision,
    desired: list[Output],
    existing: Mapping[tuple[str, str], Existing],
    *,
    recorded: datetime | None = None,
    mode: WriteMode = "id",
) -> Plan:
    """Compare what should exist with what exists; build one transaction for the difference."""
    entries: list[dict[str, Any]] = []
    written: list[Output] = []
    kept: list[str] = []
    unchanged = 0
    desired_keys = {(o.resource_type, o.identifier) for o in desired}
    for o in desired:
        cur = existing.get((o.resource_type, o.identifier))
        if cur is not None and human_touched(cur):
            kept.append(o.identifier)
            continue
        if cur is not None and cur.content_hash == o.content_hash:
            unchanged += 1
            continue
        resource = o.resource if mode == "id" else {k: v for k, v in o.resource.items() if k != "id"}
        if mode == "id" and cur is not None and cur.resource is not None and cur.resource.get("id"):
            # found under another id (e.g. written earlier in conditional mode): update that one
            resource = {**o.resource, "id": cur.resource["id"]}
        url = f"{o.resource_type}/{resource['id']}" if mode == "id" else o.conditional_url
        entries.append(
            {"fullUrl": o.full_url, "resource": resource, "request": {"method": "PUT", "url": url}}
        )
        written.append(o)
    retired: list[str] = []
    for key, cur in sorted(existing.items()):
        if key in desired_keys or cur.resource_type not in RETIRED_STATUS:
            continue
        if cur.status == RETIRED_STATUS[cur.resource_type]:
            continue
        if human_touched(cur):
            kept.append(cur.identifier)
            continue
        body = retire_body(cur)
        if body is None:
            continue
        if mode == "id" and body.get("id"):
            url = f"{cur.resource_type}/{body['id']}"
        else:
            body.pop("id", None)
            url = conditional_url(cur.resource_type, cur.identifier)
        entries.append({"resource": body, "request": {"method": "PUT", "url": url}})
        retired.append(cur.identifier)
    if not entries:
        return Plan(None, (), (), unchanged, tuple(kept))
    targets = [{"reference": e["fullUrl"]} for e in entries if "fullUrl" in e]
    prov = build_provenance(facts, decision, targets, recorded)
    entries = [
        *entries,
        {"resource": prov, "request": {"method": "PUT", "url": f"Provenance/{prov['id']}"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return Plan(bundle, tuple(written), tuple(retired), unchanged, tuple(kept))


def existing_from_bundle(resources: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Existing]:
    """Index ptbill resources read from the server by (type, identifier)."""
    out: dict[tuple[str, str], Existing] = {}
    for r in resources:
        rtype = r.get("resourceType")
        if not isinstance(rtype, str) or rtype == "Provenance":
            continue
        for ident in r.get("identifier") or []:
            if isinstance(ident, dict) and ident.get("system") == IDENTIFIER_SYSTEM and ident.get("value"):
                status = r.get("status")
                out[(rtype, ident["value"])] = Existing(
                    rtype,
                    ident["value"],
                    stored_hash(r),
                    status if isinstance(status, str) else None,
                    dict(r),
                )
    return out
