"""CDS Hooks 2.0 cards: what ptbill decided for an encounter, and the patient's open ptbill alerts.

Two sources, one card shape:

* ``decision_cards(facts, decision, catalog)`` for ``encounter-discharge``: one card per documentation or
  billing finding, per action a person must take (attestations, missing minutes), per patient-level flag
  and per suggested billing line (code, units, modifiers, minutes, unit rule);
* ``patient_view_cards(resources, catalog, patient_id)`` for ``patient-view``: the patient's *active*
  ptbill Flags (KX threshold near/exceeded, progress report due, plan-of-care recertification) with the
  basis from the related open Task, and the remaining *open* ptbill Tasks grouped by code (attestations,
  missing documentation).

Nothing is decided here: the cards only present a Decision (from ``integration.decide.decide``, the sync's
single source of truth) or what ptbill already wrote. Every card names its rule, the rule's source, the
mapping tables behind it with their versions and the whole table set's fingerprint; ``extension.ptbill``
carries the same in machine-readable form. Card uuids are deterministic (the same advice keeps its uuid
across calls, so an EHR can recognise it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

from integration.billing.context import Rule
from integration.fhir.writeback import (
    ACTION_SYSTEM,
    EXT_RULE,
    EXT_SOURCE,
    EXT_TABLES,
    FINDING_SYSTEM,
    FLAG_SYSTEM,
    IDENTIFIER_SYSTEM,
    PTBILL_TAG,
)
from integration.model import CPT, HCPCS, BillingLine, Decision, EncounterFacts, Finding, Intervention
from mappings.loader import Tables

Indicator = Literal["info", "warning", "critical"]
INDICATORS: tuple[Indicator, ...] = ("info", "warning", "critical")  # increasing urgency (CDS Hooks 2.0)
SUMMARY_MAX = 139  # the spec: "One-sentence, <140-character summary message"
SOURCE_LABEL = "ptbill billing review"
CARD_NS = uuid.UUID("0b7c3f6e-5d2a-4c1e-8f4b-9a6d2e7c1b30")

SEVERITY_INDICATOR: Mapping[str, Indicator] = {"high": "critical", "moderate": "warning", "low": "info"}
# Patient-level flags, by how soon a person has to act (unknown codes: info).
FLAG_INDICATOR: Mapping[str, Indicator] = {
    "KX-THRESHOLD-EXCEEDED": "warning",
    "KX-THRESHOLD-NEAR": "info",
    "DOC-PROGRESS-REPORT-DUE": "warning",
    "DOC-PROGRESS-REPORT-SOON": "info",
    "DOC-POC-RECERT-OVERDUE": "critical",
    "DOC-POC-RECERT-DUE": "warning",
}
# The Task that carries a flag's basis (the engine raises both together): flag code prefix -> task code.
FLAG_TASK = (("KX-", "ATTEST-KX"), ("DOC-PROGRESS-", "DOC-PROGRESS-REPORT"), ("DOC-POC-", "DOC-POC-RECERT"))
# Task statuses that are still open (FHIR R4 task-status before completed/cancelled/failed...).
OPEN_TASK_STATUSES = ("draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold")
URGENT_PRIORITIES = frozenset({"urgent", "asap", "stat"})

Kind = Literal["finding", "action", "flag", "line", "task"]
_KIND_ORDER: Mapping[str, int] = {"finding": 0, "action": 1, "flag": 2, "task": 3, "line": 4}


# --- rules and tables named on a card --------------------------------------------------------------


@dataclass(frozen=True)
class RuleCatalog:
    """Which mapping tables each rule id reads, and every table's version: built once per table set.

    A rule that is a row of a table (classification rules, documentation requirements...) names that table;
    an engine rule names the tables its source cites (``kx_thresholds.yaml``...). Every card also carries
    the fingerprint of the whole table set, which identifies every version exactly (the Provenance of a
    write lists them all under ``policy``).
    """

    versions: tuple[tuple[str, str], ...]
    fingerprint: str
    by_rule: tuple[tuple[str, tuple[str, ...]], ...] = ()
    by_file: tuple[tuple[str, str], ...] = ()  # "kx_thresholds.yaml" -> "kx_thresholds"

    def __post_init__(self) -> None:  # lookups built once (the catalog lives as long as its tables)
        object.__setattr__(self, "_index", dict(self.by_rule))
        object.__setattr__(self, "_versions", dict(self.versions))
        object.__setattr__(self, "_files", dict(self.by_file))
        object.__setattr__(self, "_memo", {})

    @classmethod
    def from_tables(cls, tables: Tables, sources: Mapping[str, str] | None = None) -> RuleCatalog:
        sources = engine_rule_sources() if sources is None else sources
        by_file = {t.file.rsplit("/", 1)[-1]: t.name for t in tables}
        rules: dict[str, list[str]] = {}
        for t in tables:
            for row in t.rows:
                rid = getattr(row, "id", None)
                if isinstance(rid, str) and rid:
                    names = rules.setdefault(rid, [])
                    if t.name not in names:
                        names.append(t.name)
        for rid, text in sources.items():
            for name in _cited_tables(text, by_file):
                names = rules.setdefault(rid, [])
                if name not in names:
                    names.append(name)
        return cls(
            versions=tables.versions(),
            fingerprint=tables.fingerprint(),
            by_rule=tuple(sorted((k, tuple(v)) for k, v in rules.items())),
            by_file=tuple(sorted(by_file.items())),
        )

    def tables_for(self, rule_ids: Iterable[str], source: str | None = None) -> tuple[tuple[str, str], ...]:
        """(table, version) for the rules (and the tables a finding's own source cites), in order."""
        key = (tuple(rule_ids), source)
        memo: dict[tuple[tuple[str, ...], str | None], tuple[tuple[str, str], ...]] = self._memo  # type: ignore[attr-defined]
        if key in memo:
            return memo[key]
        index: dict[str, tuple[str, ...]] = self._index  # type: ignore[attr-defined]
        versions: dict[str, str] = self._versions  # type: ignore[attr-defined]
        names: list[str] = []
        for rid in key[0]:
            names.extend(index.get(rid, ()))
        if source:
            names.extend(_cited_tables(source, self._files))  # type: ignore[attr-defined]
        out = tuple((n, versions[n]) for n in dict.fromkeys(names) if n in versions)
        if len(memo) < 4096:
            memo[key] = out
        return out


_YAML_NAME = re.compile(r"([A-Za-z0-9_]+\.yaml)")


def _cited_tables(text: str, by_file: Mapping[str, str]) -> list[str]:
    return [by_file[m] for m in _YAML_NAME.findall(text or "") if m in by_file]


# --- the card --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    uuid: str
    summary: str
    indicator: Indicator
    detail: str
    kind: Kind
    topic: tuple[str, str, str]  # (system, code, display) of source.topic
    rule_ids: tuple[str, ...]
    tables: tuple[tuple[str, str], ...]  # the tables named on the card, (name, version)
    tables_recorded: bool = True  # False: versions of the tables loaded now (the resource recorded none)
    fingerprint: str = ""
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        system, code, display = self.topic
        ext: dict[str, Any] = {
            "kind": self.kind,
            "rules": list(self.rule_ids),
            "tables": {n: v for n, v in self.tables},
            "tablesFingerprint": self.fingerprint,
        }
        if not self.tables_recorded:
            ext["tablesAsOf"] = "now"
        ext.update(dict(self.extra))
        return {
            "uuid": self.uuid,
            "summary": self.summary,
            "indicator": self.indicator,
            "detail": self.detail,
            "source": {"label": SOURCE_LABEL, "topic": {"system": system, "code": code, "display": display}},
            "extension": {"ptbill": {k: v for k, v in ext.items() if v not in (None, "", [], {})}},
        }


def card_uuid(*parts: str) -> str:
    return str(uuid.uuid5(CARD_NS, "|".join(parts)))


def summarize(text: str, limit: int = SUMMARY_MAX) -> str:
    """One line of at most ``limit`` characters (cut at a word, with an ellipsis)."""
    one = " ".join((text or "").split())
    if len(one) <= limit:
        return one
    cut = one[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.-") + "…"


def first_sentence(text: str) -> str:
    one = " ".join((text or "").split())
    m = re.search(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])", one)
    return one[: m.start() + 1] if m else one


@lru_cache(maxsize=1)
def engine_rule_sources() -> Mapping[str, str]:
    """rule id -> source of every rule the billing engine's steps name (their module-level ``Rule``s)."""
    import sys

    from integration.billing.engine import STEPS

    out: dict[str, str] = {}
    for step in STEPS:
        for value in vars(sys.modules[step.__module__]).values():
            if isinstance(value, Rule):
                out.setdefault(value.id, value.source)
    return out


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


@lru_cache(maxsize=8192)
def md(text: str) -> str:
    """Text from a note or a server, safe inside GitHub-flavoured Markdown."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join((text or "").split()))


def _rank(card: Card) -> tuple[int, int, str]:
    return (-INDICATORS.index(card.indicator), _KIND_ORDER[card.kind], card.summary)


def _footer(
    catalog: RuleCatalog,
    rule_ids: Iterable[str],
    sources: Iterable[str],
    tables: tuple[tuple[str, str], ...],
    *,
    recorded: bool = True,
    engine: str = "",
) -> str:
    return _footer_text(catalog.fingerprint, tuple(rule_ids), tuple(sources), tables, recorded, engine)


@lru_cache(maxsize=4096)
def _footer_text(
    fingerprint: str,
    rule_ids: tuple[str, ...],
    sources: tuple[str, ...],
    tables: tuple[tuple[str, str], ...],
    recorded: bool,
    engine: str,
) -> str:
    lines = []
    known = engine_rule_sources()
    shown: set[str] = set()
    for rid in dict.fromkeys(r for r in rule_ids if r):
        src = known.get(rid)
        if src:
            shown.add(src)
        lines.append(f"- Rule `{rid}`" + (f": {md(src)}" if src else ""))
    for s in dict.fromkeys(s for s in sources if s and s not in shown):
        lines.append(f"- Source: {md(s)}")
    named = "; ".join(f"{n} {v}" for n, v in tables)
    when = "" if recorded else " (versions loaded now; the resource did not record them)"
    lines.append(
        f"- Tables: {named + ' - ' if named else ''}table set {fingerprint}{when}"
        + (f", engine {engine}" if engine else "")
    )
    return "\n".join(lines)


# --- encounter-discharge: a Decision -> cards -------------------------------------------------------


def decision_cards(
    facts: EncounterFacts, decision: Decision, catalog: RuleCatalog, hook: str = "encounter-discharge"
) -> list[Card]:
    """Cards for one decided encounter: findings, actions, flags, then the suggested lines."""
    enc = facts.encounter_id
    by_proc = {i.id: i for i in facts.interventions}
    engine = decision.engine_version
    cards: list[Card] = []

    for f in decision.findings:
        target = f"{f.line_code or ''}|{','.join(sorted(f.procedure_ids))}"
        tables = catalog.tables_for([f.rule_id], f.source)
        body = [md(f.message), "", *_where(f.procedure_ids, f.line_code, by_proc)]
        body.append(_footer(catalog, [f.rule_id], [f.source], tables, engine=engine))
        cards.append(
            Card(
                uuid=card_uuid(hook, enc, "finding", f.code, f.rule_id, target),
                summary=summarize(_finding_summary(f, by_proc)),
                indicator=SEVERITY_INDICATOR.get(f.severity, "warning"),
                detail="\n".join(body),
                kind="finding",
                topic=(FINDING_SYSTEM, f.code, f.code),
                rule_ids=(f.rule_id,),
                tables=tables,
                fingerprint=catalog.fingerprint,
                extra=(("severity", f.severity),),
            )
        )

    for a in decision.actions:
        target = f"{a.line_code or ''}|{','.join(sorted(a.procedure_ids))}"
        tables = catalog.tables_for([a.rule_id], a.source)
        body = [md(a.description), "", *_where(a.procedure_ids, a.line_code, by_proc)]
        body.append(_footer(catalog, [a.rule_id], [a.source], tables, engine=engine))
        cards.append(
            Card(
                uuid=card_uuid(hook, enc, "action", a.code, a.rule_id, target),
                summary=summarize(f"{_action_label(a.code)}: {first_sentence(a.description)}"),
                indicator="warning",
                detail="\n".join(body),
                kind="action",
                topic=(ACTION_SYSTEM, a.code, a.code),
                rule_ids=(a.rule_id,),
                tables=tables,
                fingerprint=catalog.fingerprint,
                extra=(("priority", a.priority),),
            )
        )

    for fl in decision.flags:
        tables = catalog.tables_for([fl.rule_id], fl.source)
        body = [md(fl.message), "", _footer(catalog, [fl.rule_id], [fl.source], tables, engine=engine)]
        cards.append(
            Card(
                uuid=card_uuid(hook, facts.patient_id or enc, "flag", fl.code, fl.key),
                summary=summarize(first_sentence(fl.message)),
                indicator=FLAG_INDICATOR.get(fl.code, "info"),
                detail="\n".join(body),
                kind="flag",
                topic=(FLAG_SYSTEM, fl.code, fl.code),
                rule_ids=(fl.rule_id,),
                tables=tables,
                fingerprint=catalog.fingerprint,
            )
        )

    for line in decision.lines:
        cards.append(_line_card(hook, enc, line, by_proc, catalog, engine))

    cards.sort(key=_rank)
    return _unique_uuids(cards)


def _unique_uuids(cards: list[Card]) -> list[Card]:
    """Two cards of the same kind, code, rule and target (e.g. two documentation requirements of one
    code): the later ones get an ordinal, so every uuid stays unique and stable."""
    seen: dict[str, int] = {}
    out = []
    for c in cards:
        n = seen.get(c.uuid, 0)
        seen[c.uuid] = n + 1
        out.append(c if n == 0 else replace(c, uuid=card_uuid(c.uuid, str(n))))
    return out


def _finding_summary(f: Finding, by_proc: Mapping[str, Intervention]) -> str:
    text = first_sentence(f.message)
    if f.line_code and not text.startswith(f.line_code):
        return f"{f.line_code}: {text}"
    return text


def _action_label(code: str) -> str:
    if code.startswith("ATTEST-"):
        return "Attestation needed"
    if code.startswith("DOC-"):
        return "Documentation needed"
    return "Action needed"


def _where(
    procedure_ids: Iterable[str], line_code: str | None, by_proc: Mapping[str, Intervention]
) -> list[str]:
    out = []
    for pid in sorted(procedure_ids):
        itv = by_proc.get(pid)
        text = summarize(itv.text, 80) if itv is not None and itv.text else ""
        out.append(f"- Procedure/{md(pid)}" + (f": {md(text)}" if text else ""))
    if line_code:
        out.append(f"- Billing line {md(line_code)}")
    return out


def line_label(line: BillingLine) -> str:
    mods = "-".join(m.code for m in line.modifiers)
    return f"{line.code}{'-' + mods if mods else ''}"


def _line_card(
    hook: str,
    enc: str,
    line: BillingLine,
    by_proc: Mapping[str, Intervention],
    catalog: RuleCatalog,
    engine: str,
) -> Card:
    minutes = f", {line.minutes} timed min" if line.timed and line.minutes is not None else ""
    rule = "untimed, 1 per session" if not line.timed else f"{line.unit_rule} rule"
    summary = (
        f"Suggested {line_label(line)} x {line.units} unit{'s' if line.units != 1 else ''}{minutes} ({rule})"
    )
    body = [
        f"ptbill suggests **{md(line_label(line))} x {line.units}** for review "
        f"({md(rule)}{md(minutes)}). Nothing is submitted.",
        "",
    ]
    for m in line.modifiers:
        body.append(f"- Modifier {md(m.code)}: {md(m.reason)} (rule `{m.rule_id}`)")
    for e in line.evidence:
        body.append(f"- Evidence ({e.kind}): {md(summarize(e.value, 120))}")
    body.extend(_where(line.procedure_ids, None, by_proc))
    rules = [*line.rule_ids, *(m.rule_id for m in line.modifiers)]
    tables = catalog.tables_for(rules)
    body.append(_footer(catalog, rules, [], tables, engine=engine))
    system = CPT if line.code[:1].isdigit() else HCPCS
    dos = line.date_of_service.isoformat() if line.date_of_service else ""
    asst = "-".join(m.code for m in line.modifiers if m.code in ("CQ", "CO"))
    return Card(
        uuid=card_uuid(hook, enc, "line", line.code, dos, asst),
        summary=summarize(summary),
        indicator="info",
        detail="\n".join(body),
        kind="line",
        topic=(system, line.code, line_label(line)),
        rule_ids=tuple(dict.fromkeys(rules)),
        tables=tables,
        fingerprint=catalog.fingerprint,
        extra=(
            ("code", line.code),
            ("units", line.units),
            ("modifiers", [m.code for m in line.modifiers]),
            ("minutes", line.minutes),
            ("unitRule", line.unit_rule),
        ),
    )


# --- patient-view: the patient's ptbill Flags and open Tasks -> cards -------------------------------


@dataclass(frozen=True)
class _Item:
    resource_type: str
    id: str
    code: str
    text: str
    rule_ids: tuple[str, ...]
    source: str
    recorded_tables: tuple[tuple[str, str], ...]
    priority: str
    updated: str
    encounter: str | None


def is_ptbill(resource: Mapping[str, Any]) -> bool:
    """Written by ptbill: its identifier system or its tag."""
    if any(
        isinstance(i, dict) and i.get("system") == IDENTIFIER_SYSTEM for i in resource.get("identifier") or []
    ):
        return True
    tags = (resource.get("meta") or {}).get("tag") if isinstance(resource.get("meta"), dict) else None
    return any(isinstance(t, dict) and t.get("system") == PTBILL_TAG for t in tags or [])


def _code(resource: Mapping[str, Any], system: str) -> str | None:
    cc = resource.get("code")
    for c in (cc.get("coding") or []) if isinstance(cc, dict) else []:
        if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


def _ext_strings(resource: Mapping[str, Any], url: str) -> list[str]:
    return [
        str(e["valueString"])
        for e in resource.get("extension") or []
        if isinstance(e, dict) and e.get("url") == url and isinstance(e.get("valueString"), str)
    ]


def _recorded_tables(resource: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for raw in _ext_strings(resource, EXT_TABLES):
        for part in raw.split(";"):
            name, _, version = part.partition("@")
            if name and version:
                out.append((name, version))
    return tuple(out)


def _ref_key(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str):
        return None
    parts = ref.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _item(res: Mapping[str, Any], patient_key: str) -> _Item | None:
    rtype = res.get("resourceType")
    if not is_ptbill(res) or not isinstance(res.get("id"), str):
        return None
    if rtype == "Flag":
        if res.get("status") != "active" or _ref_key(res.get("subject")) != patient_key:
            return None
        code = _code(res, FLAG_SYSTEM)
        text = (res.get("code") or {}).get("text") if isinstance(res.get("code"), dict) else None
    elif rtype == "Task":
        if res.get("status") not in OPEN_TASK_STATUSES or _ref_key(res.get("for")) != patient_key:
            return None
        code = _code(res, ACTION_SYSTEM)
        text = res.get("description")
    else:
        return None
    if code is None:
        return None
    meta = res.get("meta") if isinstance(res.get("meta"), dict) else {}
    return _Item(
        resource_type=str(rtype),
        id=str(res["id"]),
        code=code,
        text=text if isinstance(text, str) else code,
        rule_ids=tuple(_ext_strings(res, EXT_RULE)),
        source=next(iter(_ext_strings(res, EXT_SOURCE)), ""),
        recorded_tables=_recorded_tables(res),
        priority=str(res.get("priority") or "routine"),
        updated=str((meta or {}).get("lastUpdated") or ""),
        encounter=_ref_key(res.get("encounter")),
    )


def _tables(item: _Item, catalog: RuleCatalog) -> tuple[tuple[tuple[str, str], ...], bool]:
    if item.recorded_tables:
        return item.recorded_tables, True
    return catalog.tables_for(item.rule_ids, item.source), False


def patient_view_cards(
    resources: Iterable[Mapping[str, Any]], catalog: RuleCatalog, patient_id: str, hook: str = "patient-view"
) -> list[Card]:
    """Cards for the patient's active ptbill Flags (each with the basis from its related open Task) and
    the other open ptbill Tasks, one card per task code. Resources not written by ptbill, not this
    patient's, inactive Flags and closed Tasks are ignored (a server may ignore search parameters)."""
    pkey = f"Patient/{patient_id}"
    items = [it for r in resources if isinstance(r, Mapping) for it in [_item(r, pkey)] if it is not None]
    items = list({(it.resource_type, it.id): it for it in items}.values())
    flags = sorted((i for i in items if i.resource_type == "Flag"), key=lambda i: (i.code, i.id))
    tasks: dict[str, list[_Item]] = {}
    for t in items:
        if t.resource_type == "Task":
            tasks.setdefault(t.code, []).append(t)
    for group in tasks.values():
        group.sort(key=lambda i: (i.updated, i.id), reverse=True)  # newest first
    used: set[str] = set()
    cards: list[Card] = []

    for fl in flags:
        related = next((tc for prefix, tc in FLAG_TASK if fl.code.startswith(prefix)), None)
        basis = tasks.get(related or "", [])
        tables, recorded = _tables(fl, catalog)
        body = [md(fl.text), ""]
        if basis:
            used.add(related or "")
            n = len(basis)
            body += [
                f"**Basis** (open {md(related or '')} task{'s' if n != 1 else ''}: {n}; newest shown): "
                + md(basis[0].text),
                "",
            ]
        body.append(f"- Flag/{md(fl.id)}")
        body.append(_footer(catalog, fl.rule_ids, [fl.source], tables, recorded=recorded))
        cards.append(
            Card(
                uuid=card_uuid(hook, patient_id, "flag", fl.code, fl.id),
                summary=summarize(first_sentence(fl.text)),
                indicator=FLAG_INDICATOR.get(fl.code, "info"),
                detail="\n".join(body),
                kind="flag",
                topic=(FLAG_SYSTEM, fl.code, fl.code),
                rule_ids=fl.rule_ids,
                tables=tables,
                tables_recorded=recorded,
                fingerprint=catalog.fingerprint,
                extra=(("resource", f"Flag/{fl.id}"), ("openTasks", len(basis))),
            )
        )

    for code, group in sorted(tasks.items()):
        if code in used:
            continue
        newest = group[0]
        n = len(group)
        urgent = any(t.priority in URGENT_PRIORITIES for t in group)
        indicator: Indicator = "warning" if code.startswith("ATTEST-") or urgent else "info"
        lead = f"{_action_label(code)}: " if n == 1 else f"{n} open {code} tasks: "
        tables, recorded = _tables(newest, catalog)
        body = [f"{n} open ptbill task{'s' if n != 1 else ''} ({md(code)}), newest first:", ""]
        for t in group[:5]:
            where = f" ({md(t.encounter)})" if t.encounter else ""
            body.append(f"- Task/{md(t.id)}{where}: {md(summarize(t.text, 400))}")
        if n > 5:
            body.append(f"- ... and {n - 5} more")
        rules = [r for t in group for r in t.rule_ids]
        body.append(_footer(catalog, rules, [newest.source], tables, recorded=recorded))
        cards.append(
            Card(
                uuid=card_uuid(hook, patient_id, "task", code),
                summary=summarize(lead + first_sentence(newest.text)),
                indicator=indicator,
                detail="\n".join(body),
                kind="task",
                topic=(ACTION_SYSTEM, code, code),
                rule_ids=tuple(dict.fromkeys(rules)),
                tables=tables,
                tables_recorded=recorded,
                fingerprint=catalog.fingerprint,
                extra=(("resources", [f"Task/{t.id}" for t in group]),),
            )
        )
    cards.sort(key=_rank)
    return cards


def card_rows(cards: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(indicator, topic code, summary) per card (CDS Hooks JSON), for a table (``ptbill demo``)."""
    out = []
    for c in cards:
        topic = (c.get("source") or {}).get("topic") or {}
        out.append((str(c.get("indicator")), str(topic.get("code", "-")), str(c.get("summary"))))
    return out


def card_lines(cards: Iterable[Mapping[str, Any]]) -> list[str]:
    """One printable line per card (CDS Hooks JSON): ``[warning] Attestation needed: ... (ATTEST-59)``."""
    return [f"[{indicator}] {summary} ({code})" for indicator, code, summary in card_rows(cards)]
