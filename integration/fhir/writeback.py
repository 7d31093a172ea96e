"""Decision -> the FHIR resources ptbill writes, and the plan that brings the server there.

Pure: plain dicts in and out. ``build_outputs`` turns one encounter's Decision into the set of resources
that should exist for it (ChargeItem per billing line, DetectedIssue per finding, Task per action item,
Flag per patient-level alert). ``plan_writes`` compares that with what is on the server now and says what
to create, update and retire, what to leave alone because a person changed it, and where to tell that
person that ptbill's suggestion now differs (a DetectedIssue pointing at both).

Identifiers (system ``IDENTIFIER_SYSTEM``, ``integration.fhir.identifiers``): a prefix and a hash of the
natural key, e.g. ``ci-<32 hex>`` of ``ci|{encounter}|{code}|{date}``; ``di-`` ``task-`` ``flag-`` likewise.
Every encounter-owned resource carries ``meta.tag`` ENCOUNTER_TAG|{encounter id} so a re-run finds it with
one search, and a content-hash extension: the hash of the fields ptbill wrote. A resource is ptbill's to
rewrite only while its current content still hashes to that value; any other change (status, quantity,
note, a modifier...) is a person's, and is never overwritten. References from a DetectedIssue/Task to a
ChargeItem are hashed by the ChargeItem's identifier, not by its server id, so the hash is the same on
every server and whatever id the server assigned. ptbill's own retirements carry ``meta.tag``
PTBILL_TAG|retired-by-ptbill (and still hash to what ptbill wrote): those may be revived; a person's
entered-in-error/cancelled is final.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from integration import __version__
from integration.fhir.identifiers import (
    BASE,
    IDENTIFIER_SYSTEM,
    current_value,
    identifier_query,
    identifier_value,
    is_legacy,
    tag_query,
)
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

ENCOUNTER_TAG = f"{BASE}/CodeSystem/encounter"
PTBILL_TAG = f"{BASE}/CodeSystem/tag"
CHANGE_TAG = f"{BASE}/CodeSystem/change"  # on each Provenance: a hash of the change it records
RETIRED_BY_PTBILL = "retired-by-ptbill"  # PTBILL_TAG code on ptbill's own retirements
# finding code: a person changed a resource and ptbill now suggests otherwise
REVIEW_DIFFERS = "PTBILL-REVIEW-DIFFERS"
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

# Status a resource has when ptbill wrote it, and the status ptbill retires it with.
OWN_STATUS = {"ChargeItem": "planned", "DetectedIssue": "preliminary", "Task": "requested", "Flag": "active"}
RETIRED_STATUS = {"ChargeItem": "entered-in-error", "DetectedIssue": "entered-in-error", "Task": "cancelled"}

_NS = uuid.UUID("6f1c7a8e-2b1d-4f0e-9a57-2f7d3c1b9e42")
# A DetectedIssue/Task refers to a ChargeItem of the same encounter through this placeholder until the
# write plan knows how to reach it (urn:uuid in the same transaction, else its real id).
LOCAL_REF = "ptbill-local:ChargeItem/"


@dataclass(frozen=True)
class Output:
    """One resource ptbill wants on the server."""

    resource_type: str
    identifier: str  # value under IDENTIFIER_SYSTEM (``ci-<hex>``)
    resource: dict[str, Any]  # references to ChargeItems as LOCAL_REF placeholders
    content_hash: str
    encounter_owned: bool = True  # False for patient-level Flags: never retired by an encounter re-run
    key: str = ""  # the natural key the identifier hashes (also the source of the ``id`` mode id)

    @property
    def full_url(self) -> str:
        return full_url(self.resource_type, self.identifier)

    @property
    def conditional_url(self) -> str:
        return conditional_url(self.resource_type, self.identifier)

    @property
    def resource_id(self) -> str:
        return resource_id(self.resource_type, self.key or self.identifier)

    @property
    def refers_to(self) -> tuple[str, ...]:
        """Identifiers of the ChargeItems this resource refers to (through LOCAL_REF placeholders)."""
        return tuple(sorted(local_refs(self.resource)))


WriteMode = Literal["id", "conditional"]


def resource_id(resource_type: str, key: str) -> str:
    """Deterministic logical id (``id`` mode) of a natural key: the same suggestion lands on the same
    resource. Ids written before the hashed identifiers came from the same key, so they are unchanged."""
    return "ptb-" + hashlib.sha256(f"{resource_type}|{key}".encode()).hexdigest()[:40]


def full_url(resource_type: str, identifier: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, resource_type + '|' + identifier)}"


def conditional_url(resource_type: str, identifier: str) -> str:
    return f"{resource_type}?{identifier_query(identifier)}"


def local_ref(identifier: str) -> str:
    return LOCAL_REF + identifier


def local_refs(obj: Any) -> set[str]:
    """ChargeItem identifiers behind every LOCAL_REF placeholder in ``obj``."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str) and v.startswith(LOCAL_REF):
                out.add(v[len(LOCAL_REF) :])
            else:
                out |= local_refs(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= local_refs(v)
    return out


def map_refs(obj: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``obj`` with every ``reference`` found in ``mapping`` replaced."""
    if isinstance(obj, dict):
        return {
            k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else map_refs(v, mapping))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [map_refs(v, mapping) for v in obj]
    return obj


def _ref(kind: str, rid: str | None) -> dict[str, str] | None:
    if not rid:
        return None
    if "/" in rid:
        return {"reference": rid}
    return {"reference": f"{kind}/{rid}"}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(resource: Mapping[str, Any], refs: Mapping[str, str] | None = None) -> str:
    """Hash of a resource's content, ignoring server-managed fields and the hash extension itself.

    ``refs`` maps references as stored (``ChargeItem/<server id>``) back to the LOCAL_REF placeholders
    ptbill hashed them as."""
    body = {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}
    if refs:
        body = map_refs(body, refs)
    if "extension" in body:
        body["extension"] = [e for e in body["extension"] if e.get("url") != EXT_HASH]
    return hashlib.sha256(_canonical(body).encode()).hexdigest()[:20]


def stored_hash(resource: Mapping[str, Any]) -> str | None:
    for e in resource.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == EXT_HASH:
            v = e.get("valueString")
            return v if isinstance(v, str) else None
    return None


def _finish(resource_type: str, key: str, res: dict[str, Any], encounter_id: str, owned: bool) -> Output:
    identifier = identifier_value(key)
    res["resourceType"] = resource_type
    res["identifier"] = [{"system": IDENTIFIER_SYSTEM, "value": identifier}]
    tags = [{"system": PTBILL_TAG, "code": "ptbill"}]
    if owned:
        tags.append({"system": ENCOUNTER_TAG, "code": encounter_id})
    res["meta"] = {"tag": tags}
    h = content_hash(res)
    res.setdefault("extension", []).append({"url": EXT_HASH, "valueString": h})
    res["id"] = resource_id(resource_type, key)
    return Output(resource_type, identifier, res, h, owned, key)


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
        line_urls.setdefault(line.code, local_ref(out.identifier))
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
    """The fixed Provenance id of earlier versions (one Provenance per encounter, overwritten): kept so
    tools can still find those; new Provenances are created by POST, one per change."""
    return "ptbill-" + hashlib.sha256(encounter_id.encode()).hexdigest()[:40]


def build_provenance(
    facts: EncounterFacts,
    decision: Decision,
    targets: list[dict[str, str]],
    recorded: datetime | None = None,
    change: str | None = None,
) -> dict[str, Any]:
    """One Provenance for one change; ``change`` (a hash of what changed) tags it so a retried create
    (``If-None-Exist: _tag=...``) never makes a second one."""
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
    tags = [{"system": PTBILL_TAG, "code": "ptbill"}, {"system": ENCOUNTER_TAG, "code": facts.encounter_id}]
    if change:
        tags.append({"system": CHANGE_TAG, "code": change})
    return {
        "resourceType": "Provenance",
        "meta": {"tag": tags},
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


# --- what is on the server, and whose it is ------------------------------------------------------


@dataclass(frozen=True)
class Existing:
    """A ptbill resource found on the server (by encounter tag, or by identifier for patient Flags)."""

    resource_type: str
    identifier: str  # under today's scheme (legacy values already mapped by ``current_value``)
    content_hash: str | None  # the hash ptbill stored on it: what ptbill last wrote
    status: str | None
    resource: dict[str, Any] | None = None  # the body as read from the server
    owned: bool = True  # its content is still exactly what ptbill wrote: ptbill may rewrite it
    id: str | None = None  # server id
    version: str | None = None  # meta.versionId as read (for If-Match)

    @property
    def ref(self) -> str | None:
        return f"{self.resource_type}/{self.id}" if self.id else None

    @property
    def retired_by_ptbill(self) -> bool:
        return self.owned and self.status == RETIRED_STATUS.get(self.resource_type)


def human_touched(e: Existing) -> bool:
    """A person changed it since ptbill wrote it (any field ptbill owns, status included)."""
    return not e.owned


def _has_tag(resource: Mapping[str, Any], system: str, code: str) -> bool:
    return any(
        isinstance(t, dict) and t.get("system") == system and t.get("code") == code
        for t in (resource.get("meta") or {}).get("tag") or []
    )


def _identifier_of(resource: Mapping[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == IDENTIFIER_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def existing_from_bundle(resources: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Existing]:
    """Index ptbill resources read from the server by (type, identifier), each with whose it is now.

    Ownership: the content hash ptbill stored on the resource equals the hash of its content now, with its
    references to ChargeItems of the same set mapped back to the placeholders ptbill hashed. Resources of
    the old identifier scheme hashed references by ``urn:uuid`` (or as stored, for retirements): both
    are tried, so ptbill's old writes are recognised and migrated, never duplicated."""
    rows = [
        r for r in resources if isinstance(r.get("resourceType"), str) and r["resourceType"] != "Provenance"
    ]
    refs: dict[str, str] = {}  # "ChargeItem/<id>" -> LOCAL_REF placeholder
    legacy_refs: dict[str, str] = {}  # "ChargeItem/<id>" -> the urn:uuid the old scheme hashed
    for r in rows:
        value = _identifier_of(r)
        if r["resourceType"] == "ChargeItem" and value and r.get("id"):
            refs[f"ChargeItem/{r['id']}"] = local_ref(current_value(value))
            if is_legacy(value):
                legacy_refs[f"ChargeItem/{r['id']}"] = full_url("ChargeItem", value)
    out: dict[tuple[str, str], Existing] = {}
    for r in rows:
        value = _identifier_of(r)
        if value is None:
            continue
        rtype = str(r["resourceType"])
        stored = stored_hash(r)
        if is_legacy(value):
            owned = stored is not None and stored in (content_hash(r, legacy_refs), content_hash(r))
        else:
            owned = stored is not None and stored == content_hash(r, refs)
        status = r.get("status")
        meta = r.get("meta") or {}
        version = meta.get("versionId") if isinstance(meta, dict) else None
        rid = r.get("id")
        out[(rtype, current_value(value))] = Existing(
            rtype,
            current_value(value),
            stored,
            status if isinstance(status, str) else None,
            dict(r),
            owned,
            str(rid) if rid else None,
            str(version) if version else None,
        )
    return out


# --- the plan --------------------------------------------------------------------------------------

WriteKind = Literal["create", "update", "retire"]


@dataclass(frozen=True)
class Write:
    """One resource write. ``body`` may hold LOCAL_REF placeholders; ``id``/``version`` come from the
    server (update, retire) or, in ``id`` mode, from the natural key (create)."""

    kind: WriteKind
    resource_type: str
    identifier: str
    body: dict[str, Any]
    id: str | None = None
    version: str | None = None

    @property
    def full_url(self) -> str:
        return full_url(self.resource_type, self.identifier)

    @property
    def refers_to(self) -> frozenset[str]:
        return frozenset(local_refs(self.body))


@dataclass(frozen=True)
class Plan:
    writes: tuple[Write, ...]
    unchanged: int
    kept_reviewed: tuple[str, ...]  # identifiers a person has changed: left alone
    differs: tuple[str, ...] = ()  # of those, the ones where ptbill's suggestion now differs (explained)
    charge_refs: Mapping[str, str] | None = None  # ChargeItem identifier -> "ChargeItem/<id>" known now

    @property
    def written(self) -> tuple[Write, ...]:
        return tuple(w for w in self.writes if w.kind != "retire")

    @property
    def retired(self) -> tuple[str, ...]:
        return tuple(w.identifier for w in self.writes if w.kind == "retire")

    @property
    def empty(self) -> bool:
        return not self.writes


def retire_body(e: Existing, refs: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """ptbill's retirement of its own resource: retired status, ptbill's retirement tag, a fresh hash."""
    if e.resource is None or e.resource_type not in RETIRED_STATUS:
        return None
    body = {k: v for k, v in e.resource.items() if k not in ("meta", "text", "id")}
    body["status"] = RETIRED_STATUS[e.resource_type]
    body["extension"] = [x for x in (e.resource.get("extension") or []) if x.get("url") != EXT_HASH]
    body["extension"].append({"url": EXT_HASH, "valueString": content_hash(body, refs)})
    tags = [
        t
        for t in (e.resource.get("meta") or {}).get("tag") or []
        if isinstance(t, dict) and t.get("system") in (PTBILL_TAG, ENCOUNTER_TAG)
    ]
    if not _has_tag({"meta": {"tag": tags}}, PTBILL_TAG, RETIRED_BY_PTBILL):
        tags.append({"system": PTBILL_TAG, "code": RETIRED_BY_PTBILL})
    body["meta"] = {"tag": tags}
    return body


def _summary(resource: Mapping[str, Any]) -> str:
    """What a suggestion says, in a few PHI-free words (code, units, modifiers, status)."""
    code = ((resource.get("code") or {}).get("coding") or [{}])[0].get("code", "?")
    if resource.get("resourceType") == "ChargeItem":
        mods = [
            ((x.get("valueCodeableConcept") or {}).get("coding") or [{}])[0].get("code", "")
            for x in resource.get("extension") or []
            if x.get("url") == EXT_MODIFIER
        ]
        units = (resource.get("quantity") or {}).get("value", "?")
        return f"{code}{'-' + '-'.join(mods) if mods else ''} x {units}"
    return str(code)


def _review_differs(facts: EncounterFacts, cur: Existing, suggestion: Output | None) -> Output:
    """A DetectedIssue telling the reviewer that ptbill now suggests something else for a resource a person
    changed; it points at that resource and at the evidence (the Procedures, else the Encounter)."""
    target = local_ref(cur.identifier) if cur.resource_type == "ChargeItem" else cur.ref
    implicated: list[dict[str, str]] = [{"reference": target}] if target else []
    source = suggestion.resource if suggestion is not None else None
    procs = sorted(
        {
            str(x.get("reference"))
            for x in ((source or cur.resource or {}).get("service") or [])
            if isinstance(x, dict) and str(x.get("reference", "")).startswith("Procedure/")
        }
    )
    implicated += [{"reference": p} for p in procs] or [{"reference": f"Encounter/{facts.encounter_id}"}]
    now = f"{cur.resource_type} now {cur.status or 'changed'} ({_summary(cur.resource or {})})"
    if suggestion is None:
        detail = f"A person changed this {now}; ptbill no longer suggests it. ptbill left it as it is."
    else:
        detail = (
            f"A person changed this {now}; ptbill's current suggestion is {_summary(source or {})}. "
            "ptbill left it as it is: compare and decide."
        )
    res: dict[str, Any] = {
        "status": OWN_STATUS["DetectedIssue"],
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": REVIEW_DIFFERS}], "text": REVIEW_DIFFERS},
        "severity": "moderate",
        "implicated": implicated,
        "detail": detail,
    }
    if facts.patient_id:
        res["patient"] = {"reference": f"Patient/{facts.patient_id}"}
    key = f"di|{facts.encounter_id}|{REVIEW_DIFFERS}|{cur.resource_type}:{cur.identifier}"
    return _finish("DetectedIssue", key, res, facts.encounter_id, True)


def plan_writes(
    facts: EncounterFacts,
    decision: Decision,
    desired: list[Output],
    existing: Mapping[tuple[str, str], Existing],
    *,
    mode: WriteMode = "id",
    recorded: datetime | None = None,  # unused here; kept for callers of the older signature
) -> Plan:
    """Compare what should exist with what exists: creates, in-place updates, retirements, and an
    explanation wherever a person's change and ptbill's suggestion now disagree."""
    del recorded
    by_key = {(o.resource_type, o.identifier): o for o in desired}
    kept: list[str] = []
    differs: list[str] = []
    review: list[Output] = []
    for key, cur in sorted(existing.items()):
        if cur.owned:
            continue
        want = by_key.get(key)
        if want is None and cur.resource_type not in RETIRED_STATUS:
            continue  # a patient Flag no longer raised: never retired by an encounter
        kept.append(cur.identifier)
        person_rejected = cur.status == RETIRED_STATUS.get(cur.resource_type)
        if want is None and person_rejected:
            continue  # a person withdrew it and ptbill no longer suggests it: they agree
        if want is not None and want.content_hash == cur.content_hash:
            continue  # ptbill still suggests exactly what the person started from: their change stands
        if REVIEW_DIFFERS in cur.identifier or _is_review(cur):
            continue  # never explain an explanation
        differs.append(cur.identifier)
        review.append(_review_differs(facts, cur, want))
    wanted = [*desired, *review]
    wanted_keys = {(o.resource_type, o.identifier) for o in wanted}
    charge_refs: dict[str, str] = {
        ident: f"ChargeItem/{e.id}" for (t, ident), e in existing.items() if t == "ChargeItem" and e.id
    }
    writes: list[Write] = []
    unchanged = 0
    for o in wanted:
        now = existing.get((o.resource_type, o.identifier))
        if now is not None and not now.owned:
            continue
        if now is not None and now.content_hash == o.content_hash:
            unchanged += 1
            continue
        body = {k: v for k, v in o.resource.items() if k != "id"}
        if now is not None:
            writes.append(Write("update", o.resource_type, o.identifier, body, now.id, now.version))
        else:
            writes.append(
                Write("create", o.resource_type, o.identifier, body, o.resource_id if mode == "id" else None)
            )
            if mode == "id" and o.resource_type == "ChargeItem":
                charge_refs[o.identifier] = f"ChargeItem/{o.resource_id}"
    refs = {v: local_ref(k) for k, v in charge_refs.items()}
    for key, cur in sorted(existing.items()):
        if key in wanted_keys or not cur.owned or cur.resource_type not in RETIRED_STATUS:
            continue
        if cur.status == RETIRED_STATUS[cur.resource_type]:
            continue
        retired = retire_body(cur, refs)
        if retired is not None:
            writes.append(Write("retire", cur.resource_type, cur.identifier, retired, cur.id, cur.version))
    return Plan(tuple(writes), unchanged, tuple(kept), tuple(differs), charge_refs)


def _is_review(e: Existing) -> bool:
    coding = ((e.resource or {}).get("code") or {}).get("coding") or [{}]
    return e.resource_type == "DetectedIssue" and coding[0].get("code") == REVIEW_DIFFERS


def change_hash(encounter_id: str, writes: Iterable[Write]) -> str:
    """A hash of one change (what was written, and how): the Provenance's CHANGE_TAG code."""
    h = hashlib.sha256(encounter_id.encode())
    for w in sorted(writes, key=lambda w: (w.resource_type, w.identifier)):
        h.update(f"|{w.kind}:{w.resource_type}:{w.identifier}:{stored_hash(w.body)}:{w.version}".encode())
    return h.hexdigest()[:32]


def build_transaction(
    facts: EncounterFacts,
    decision: Decision,
    plan: Plan,
    *,
    mode: WriteMode = "id",
    versioned: bool = True,
    conditional_create: bool = True,
    recorded: datetime | None = None,
) -> dict[str, Any] | None:
    """The whole plan as one atomic transaction (with its Provenance), or None when nothing changes.

    ``integration.fhir.write_strategy`` splits a plan into several Bundles where a server needs it;
    this is the one-Bundle case (``ptbill process --bundle`` and servers without limits)."""
    if plan.empty:
        return None
    creating = {w.identifier for w in plan.writes if w.kind == "create" and w.resource_type == "ChargeItem"}
    known = dict(plan.charge_refs or {})
    entries = [
        write_entry(
            w,
            resolve_refs(w, known, creating),
            mode=mode,
            versioned=versioned,
            conditional_create=conditional_create,
        )
        for w in plan.writes
    ]
    same = [w.identifier for w in plan.writes if w.kind == "create"]
    entries.append(
        provenance_entry(
            facts, decision, plan.writes, same, recorded=recorded, conditional_create=conditional_create
        )
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def resolve_refs(w: Write, known: Mapping[str, str], same_bundle: Iterable[str]) -> dict[str, Any]:
    """The body with its placeholders replaced: ``urn:uuid`` of a ChargeItem created in the same Bundle,
    else its real ``ChargeItem/<id>``. Raises KeyError for a ChargeItem that is in neither."""
    same = set(same_bundle)
    mapping: dict[str, str] = {}
    for ident in w.refers_to:
        if ident in known:
            mapping[local_ref(ident)] = known[ident]
        elif ident in same:
            mapping[local_ref(ident)] = full_url("ChargeItem", ident)
        else:
            raise KeyError(ident)
    return map_refs(w.body, mapping) if mapping else w.body


def write_entry(
    w: Write,
    body: dict[str, Any],
    *,
    mode: WriteMode,
    versioned: bool,
    conditional_create: bool,
) -> dict[str, Any]:
    """The Bundle entry of one write: updates and retirements by id with If-Match (when the server
    honours it); creates by PUT to the natural-key id (``id`` mode) or by POST with If-None-Exist on the
    business identifier (``conditional`` mode, server-assigned id)."""
    entry: dict[str, Any] = {"fullUrl": w.full_url}
    if w.kind == "create" and mode == "id" and w.id:
        entry["resource"] = {**body, "id": w.id}
        entry["request"] = {"method": "PUT", "url": f"{w.resource_type}/{w.id}"}
    elif w.kind == "create":
        entry["resource"] = body
        entry["request"] = {"method": "POST", "url": w.resource_type}
        if conditional_create:
            entry["request"]["ifNoneExist"] = identifier_query(w.identifier)
    else:
        entry["resource"] = {**body, "id": w.id}
        entry["request"] = {"method": "PUT", "url": f"{w.resource_type}/{w.id}"}
        if versioned and w.version:
            entry["request"]["ifMatch"] = f'W/"{w.version}"'
    return entry


def provenance_entry(
    facts: EncounterFacts,
    decision: Decision,
    writes: Iterable[Write],
    same_bundle: Iterable[str] = (),
    *,
    recorded: datetime | None = None,
    conditional_create: bool = True,
    results: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST of one Provenance for ``writes``: its targets are every written and retired resource, by its
    real id (``results``: identifier -> ``Type/id`` from the server's answer, or the id ptbill wrote to),
    else by ``urn:uuid`` when it is created in the same Bundle (``same_bundle``)."""
    ws = list(writes)
    same = set(same_bundle)
    targets: list[dict[str, str]] = []
    for w in ws:
        ref = (results or {}).get(w.identifier) or (f"{w.resource_type}/{w.id}" if w.id else None)
        if ref is None and w.identifier in same:
            ref = w.full_url
        if ref:
            targets.append({"reference": ref})
    change = change_hash(facts.encounter_id, ws)
    prov = build_provenance(facts, decision, targets, recorded, change)
    request: dict[str, Any] = {"method": "POST", "url": "Provenance"}
    if conditional_create:
        request["ifNoneExist"] = tag_query(CHANGE_TAG, change)
    return {"resource": prov, "request": request}


def own_suggestion(resource: dict[str, Any]) -> bool:
    """A ChargeItem ptbill suggested that nobody has reviewed yet (still in ptbill's own status).

    It is not a charge on file, so it is left out of the context (prior charges for KX and visit caps):
    otherwise an encounter's decision would depend on whether the run had already written the other
    encounters' suggestions - on processing order and timing, retries and faults - and re-runs would keep
    rewriting it. Charges a person has acted on (billable, billed...) and the EMR's own charges count.
    """
    return (
        resource.get("resourceType") == "ChargeItem"
        and resource.get("status") == OWN_STATUS["ChargeItem"]
        and any(
            isinstance(i, dict) and i.get("system") == IDENTIFIER_SYSTEM
            for i in resource.get("identifier") or []
        )
    )
