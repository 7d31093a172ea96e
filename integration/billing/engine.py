"""The billing rules engine: classified interventions of one encounter -> billing lines + findings.

Order of work (each step only adds data; nothing is dropped silently):

1. payer profile from the active Coverage (context.resolve_payer);
2. payer code rules (substitute 97014 -> G0283, bundled 97010, not covered 97545/6, allow-lists);
3. minutes per intervention (documented, or allocated evenly from the documented total with a
   finding; none at all -> no units, an ActionItem asks for them);
4. units per discipline and date of service (CMS total-time or AMA rule per payer; untimed = 1);
5. modifiers: GP/GO/GN, CQ/CO (per-unit de minimis), 59 for NCCI pairs only with separate
   documented time blocks (else an attestation ActionItem);
6. NCCI PTP/MUE checks, payer caps/prior auth/same-day rules;
7. KX estimate (Medicare-type profiles), documentation alerts (totals, progress report, POC, group).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from integration.billing import ncci
from integration.billing.context import PayerContext, performer_roles, resolve_payer
from integration.billing.rules import src
from integration.billing.units import TIE_BREAK, allocate, cms_total_units
from integration.model import (
    UNSUPPORTED,
    ActionItem,
    BillingLine,
    ClassifiedIntervention,
    EncounterFacts,
    Evidence,
    Finding,
    FlagItem,
    Modifier,
    Severity,
    Skipped,
)
from mappings.loader import Tables

GROUP_CODE = "97150"
EVAL_CODES = frozenset({"97161", "97162", "97163", "97164"})
NOT_COUNTED_CHARGE_STATUSES = frozenset({"not-billable", "aborted", "entered-in-error"})


@dataclass(frozen=True)
class BillingResult:
    lines: tuple[BillingLine, ...] = ()
    findings: tuple[Finding, ...] = ()
    actions: tuple[ActionItem, ...] = ()
    flags: tuple[FlagItem, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    payer_profile: str = ""  # the payer profile used (for Provenance / review screens)


@dataclass
class _Item:
    ci: ClassifiedIntervention
    code: str
    timed: bool
    minutes: int | None
    allocated: bool = False
    discipline: str = "PT"
    role: str = "unknown"  # therapist | assistant | unknown

    @property
    def pid(self) -> str:
        return self.ci.intervention.id


@dataclass
class _Line:
    code: str
    units: int
    discipline: str
    timed: bool
    minutes: int | None
    procedure_ids: list[str]
    performer_refs: list[str]
    unit_rule: str
    modifiers: list[Modifier] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)


@dataclass
class _Out:
    findings: list[Finding] = field(default_factory=list)
    actions: list[ActionItem] = field(default_factory=list)
    flags: list[FlagItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def finding(
        self,
        code: str,
        sev: Severity,
        msg: str,
        rule: str,
        pids: tuple[str, ...] = (),
        line: str | None = None,
    ) -> None:
        self.findings.append(Finding(code, sev, msg, rule, src(rule), tuple(pids), line))

    def action(
        self,
        code: str,
        desc: str,
        rule: str,
        pids: tuple[str, ...] = (),
        line: str | None = None,
        prio: Any = "routine",
    ) -> None:
        self.actions.append(ActionItem(code, desc, rule, src(rule), tuple(pids), line, prio))

    def flag(self, code: str, msg: str, rule: str, key: str = "") -> None:
        self.flags.append(FlagItem(code, msg, rule, src(rule), key))


def bill(
    facts: EncounterFacts,
    classified: tuple[ClassifiedIntervention, ...],
    tables: Tables,
    *,
    edits: ncci.OfficialEdits | None = None,
) -> BillingResult:
    out = _Out()
    on = facts.date_of_service
    if not any(r.profile == "default" for r in tables.active("payer_profiles", on)):
        # The tables hold no rules in force on this date (e.g. a visit years before their effective dates):
        # suggest nothing rather than bill it under rules that did not apply then.
        return BillingResult(
            findings=(
                Finding(
                    "BILL-NO-RULES-FOR-DATE",
                    "high",
                    f"No billing rules in force for the date of service {on}: the payer tables start later. "
                    "No lines suggested; bill this visit by hand or add dated rules for it.",
                    "RULES-DATED",
                    src("RULES-DATED"),
                    tuple(ci.intervention.id for ci in classified),
                ),
            ),
            skipped=tuple(Skipped(ci.intervention.id, "no-rules-for-date") for ci in classified),
        )
    catalogue = {r.code: r for r in tables.active("billable_codes", on)}
    payer, payer_findings = resolve_payer(facts, tables)
    out.findings.extend(payer_findings)
    prof = payer.profile

    items, untimed_minutes_all = _billable_items(facts, classified, tables, prof, catalogue, out)
    _assign_roles(items, facts, tables, out)
    _fill_minutes(items, facts, prof, out)
    lines = _units_and_lines(items, facts, tables, prof, out)
    _modifiers(lines, items, facts, tables, catalogue, prof, out)
    _ncci(lines, items, facts, tables, prof, edits if edits is not None else ncci.official_edits(), out)
    _payer_rules(lines, facts, prof, out)
    _kx(lines, facts, tables, payer, out)
    _documentation(lines, items, facts, tables, untimed_minutes_all, prof, out, classified)

    frozen = tuple(
        BillingLine(
            code=ln.code,
            units=ln.units,
            date_of_service=on,
            modifiers=tuple(ln.modifiers),
            minutes=ln.minutes,
            procedure_ids=tuple(ln.procedure_ids),
            performer_refs=tuple(dict.fromkeys(ln.performer_refs)),
            unit_rule=ln.unit_rule,
            timed=ln.timed,
            evidence=tuple(ln.evidence),
            rule_ids=tuple(dict.fromkeys(ln.rule_ids)),
        )
        for ln in sorted(lines, key=lambda x: (x.code, [m.code for m in x.modifiers]))
        if ln.units > 0
    )
    return BillingResult(
        lines=frozen,
        findings=tuple(out.findings),
        actions=tuple(out.actions),
        flags=tuple(out.flags),
        skipped=tuple(out.skipped),
        payer_profile=prof.profile,
    )


# --- 2. which interventions are billable for this payer -------------------------------------------


def _billable_items(
    facts: EncounterFacts,
    classified: tuple[ClassifiedIntervention, ...],
    tables: Tables,
    prof: Any,
    catalogue: dict[str, Any],
    out: _Out,
) -> tuple[list[_Item], int]:
    on = facts.date_of_service
    code_rules = {r.code: r for r in tables.active("payer_code_rules", on) if r.profile == prof.profile}
    items: list[_Item] = []
    untimed_minutes = 0
    for ci in classified:
        itv = ci.intervention
        code = ci.classification.code
        if code == UNSUPPORTED:
            out.skipped.append(Skipped(itv.id, "unsupported-classification"))
            continue
        rule = code_rules.get(code)
        if rule is not None and rule.action == "substitute" and rule.replacement:
            out.finding(
                "BILL-CODE-SUBSTITUTED",
                "low",
                f"{rule.message} ({prof.label})",
                "PAYER-CODE",
                (itv.id,),
                rule.replacement,
            )
            code = rule.replacement
            rule = code_rules.get(code)
        cat = catalogue.get(code)
        if cat is None:
            out.skipped.append(Skipped(itv.id, "not-a-billable-code"))
            out.finding(
                "BILL-CODE-UNKNOWN",
                "moderate",
                f"Code {code} is not in the billable code catalogue on this date; no line suggested.",
                "PAYER-CODE",
                (itv.id,),
                code,
            )
            continue
        if not cat.timed and itv.minutes:
            untimed_minutes += itv.minutes
        if rule is not None and rule.action in ("bundled", "not_covered"):
            reason = "bundled-by-payer" if rule.action == "bundled" else "not-covered-by-payer"
            out.skipped.append(Skipped(itv.id, reason))
            sev: Severity = "low" if rule.action == "bundled" else "moderate"
            out.finding(
                f"BILL-PAYER-{rule.action.upper().replace('_', '-')}",
                sev,
                rule.message,
                "PAYER-CODE",
                (itv.id,),
                code,
            )
            continue
        if (
            prof.covered_codes is not None and code not in prof.covered_codes
        ) or code in prof.not_covered_codes:
            out.skipped.append(Skipped(itv.id, "not-covered-by-payer"))
            out.finding(
                "BILL-PAYER-NOT-COVERED",
                "moderate",
                f"{code} is not on the covered-code list of payer profile '{prof.label}'; no line suggested. "
                "Check the plan's benefits before billing the patient.",
                "PAYER-COVERAGE",
                (itv.id,),
                code,
            )
            continue
        items.append(_Item(ci, code, bool(cat.timed), itv.minutes))
    return items, untimed_minutes


# --- performers -----------------------------------------------------------------------------------


def _assign_roles(items: list[_Item], facts: EncounterFacts, tables: Tables, out: _Out) -> None:
    assumed: list[str] = []
    unknown_perf: list[str] = []
    for it in items:
        roles = performer_roles(it.ci.intervention, facts, tables)
        discs = sorted({r.discipline for r in roles if r.discipline})
        if discs:
            it.discipline = "PT" if "PT" in discs else discs[0]
            if len(discs) > 1:
                out.finding(
                    "BILL-DISCIPLINE-MIXED",
                    "moderate",
                    f"Performers of one intervention belong to different disciplines ({', '.join(discs)}); "
                    f"billed under {it.discipline}. Check which plan of care it belongs to.",
                    "MOD-GP",
                    (it.pid,),
                    it.code,
                )
        else:
            assumed.append(it.pid)
        if any(r.assistant is False for r in roles):
            it.role = "therapist"  # therapist alone, or therapist and assistant together
        elif roles and all(r.assistant for r in roles):
            it.role = "assistant"
        else:
            it.role = "unknown"
            unknown_perf.append(it.pid)
    if assumed:
        out.finding(
            "BILL-DISCIPLINE-ASSUMED",
            "low",
            f"No performer discipline could be read for {len(assumed)} intervention(s); physical therapy "
            f"(GP) assumed.",
            "MOD-GP",
            tuple(assumed),
        )
    if unknown_perf:
        out.action(
            "DOC-PERFORMER",
            f"Record who performed {len(unknown_perf)} intervention(s) (therapist or assistant, with their "
            f"role) so the "
            "CQ/CO de minimis test can be applied; ptbill assumed therapist-furnished time until then.",
            "DOC-PERFORMER",
            tuple(unknown_perf),
        )


# --- 3. minutes -----------------------------------------------------------------------------------


def _fill_minutes(items: list[_Item], facts: EncounterFacts, prof: Any, out: _Out) -> None:
    timed = [it for it in items if it.timed]
    missing = sorted((it for it in timed if it.minutes is None), key=lambda it: (it.code, it.pid))
    if not missing:
        return
    known = sum(it.minutes or 0 for it in timed if it.minutes is not None)
    total = facts.documented_total_timed_minutes
    pids = tuple(it.pid for it in missing)
    if total is None or total - known < 0:
        why = (
            "no per-intervention minutes and no documented total timed minutes"
            if total is None
            else f"documented total timed minutes ({total}) is less than the minutes recorded per "
            f"intervention ({known})"
        )
        out.action(
            "DOC-MINUTES",
            f"Add the minutes for {len(missing)} timed intervention(s) "
            f"({', '.join(sorted({i.code for i in missing}))}) "
            f"or the total timed minutes for the visit: {why}. No units were suggested for them.",
            "MINUTES-MISSING",
            pids,
            prio="urgent",
        )
        for it in missing:
            out.skipped.append(Skipped(it.pid, "no-minutes"))
        if known and prof.unit_rule == "CMS":  # AMA: each code stands alone, other codes are final
            out.finding(
                "BILL-UNITS-PROVISIONAL",
                "moderate",
                "Units were computed from the interventions that have minutes only; they may rise once the "
                "missing "
                "minutes are documented (CMS pools all timed minutes of the day).",
                "MINUTES-MISSING",
                pids,
            )
        items[:] = [it for it in items if it not in missing]
        return
    remaining = total - known
    base, extra = divmod(remaining, len(missing))
    for i, it in enumerate(missing):
        it.minutes = base + (1 if i < extra else 0)
        it.allocated = True
    out.finding(
        "BILL-MINUTES-ALLOCATED",
        "moderate",
        f"Per-intervention minutes are missing for {len(missing)} timed intervention(s); the documented "
        f"total timed "
        f"minutes ({total}) less the minutes recorded per intervention ({known}) = {remaining} min were "
        f"split evenly "
        f"({base} min each, one extra minute to the first {extra} in code order). Confirm or record actual "
        f"minutes.",
        "MINUTES-ALLOCATED",
        pids,
    )
    if prof.unit_rule == "AMA":
        out.action(
            "DOC-MINUTES-PER-CODE",
            f"Payer profile '{prof.label}' counts units per code (AMA rule): record the minutes of each "
            f"timed "
            "intervention; the even split is only an estimate.",
            "MINUTES-ALLOCATED",
            pids,
        )


# --- 4. units and lines ---------------------------------------------------------------------------


def _units_and_lines(
    items: list[_Item], facts: EncounterFacts, tables: Tables, prof: Any, out: _Out
) -> list[_Line]:
    dmods = {r.discipline: r for r in tables.active("discipline_modifiers", facts.date_of_service)}
    lines: list[_Line] = []
    by_disc: dict[str, list[_Item]] = defaultdict(list)
    for it in items:
        by_disc[it.discipline].append(it)
    for disc, group in sorted(by_disc.items()):
        timed_minutes: dict[str, int] = defaultdict(int)
        for it in group:
            if it.timed and it.minutes is not None:
                timed_minutes[it.code] += it.minutes
        alloc = allocate(timed_minutes, prof.unit_rule)
        rule_id = "UNITS-AMA" if prof.unit_rule == "AMA" else "UNITS-CMS"
        zero: list[str] = []
        codes = sorted({it.code for it in group})
        for code in codes:
            members = [it for it in group if it.code == code]
            pids = [it.pid for it in members]
            perf = [p.actor for it in members for p in it.ci.intervention.performers if p.actor]
            timed = members[0].timed
            if timed:
                units = alloc.units.get(code, 0)
                if units == 0:
                    zero.append(code)
                    continue
                mins = timed_minutes[code]
                ev = [Evidence("rule", alloc.explanation[code], rule_id)]
                if any(it.allocated for it in members):
                    ev.append(
                        Evidence(
                            "rule", "minutes partly allocated from the documented total", "MINUTES-ALLOCATED"
                        )
                    )
                split = _cq_split(members, units, dmods.get(disc), prof)
                for with_asst, n, why in split:
                    ln = _Line(
                        code,
                        n,
                        disc,
                        True,
                        mins,
                        pids,
                        perf,
                        prof.unit_rule,
                        evidence=list(ev),
                        rule_ids=[rule_id, "UNITS-ONE-LINE"],
                    )
                    if with_asst is not None:
                        ln.modifiers.append(with_asst)
                        ln.rule_ids.append("MOD-CQ")
                    if why:
                        ln.evidence.append(Evidence("rule", why, "MOD-CQ"))
                    lines.append(ln)
            else:
                mins_known = [it.minutes for it in members if it.minutes is not None]
                ln = _Line(
                    code,
                    1,
                    disc,
                    False,
                    sum(mins_known) if mins_known else None,
                    pids,
                    perf,
                    "untimed",
                    evidence=[
                        Evidence(
                            "rule",
                            f"{code} is untimed: 1 unit per session; its minutes count "
                            "toward total treatment time only",
                            "UNITS-UNTIMED",
                        )
                    ],
                    rule_ids=["UNITS-UNTIMED"],
                )
                asst = _untimed_assistant(members, dmods.get(disc), prof, out)
                if asst is not None:
                    ln.modifiers.append(asst)
                    ln.rule_ids.append("MOD-CQ")
                lines.append(ln)
                if len(members) > 1:
                    out.finding(
                        "BILL-UNTIMED-REPEATED",
                        "low",
                        f"{code} was documented {len(members)} times; an untimed code is billed once per "
                        f"session "
                        "(1 unit).",
                        "UNITS-UNTIMED",
                        tuple(pids),
                        code,
                    )
        if zero:
            z_pids = tuple(it.pid for it in group if it.code in zero)
            out.finding(
                "BILL-UNITS-ZERO",
                "low",
                f"Timed code(s) {', '.join(zero)} documented but get no unit under the "
                f"{'AMA' if prof.unit_rule == 'AMA' else 'CMS total-time'} rule ({alloc.total_minutes} "
                f"timed min -> "
                f"{alloc.total_units} unit(s)); keep them in the note, they count toward the total.",
                rule_id,
                z_pids,
            )
        if alloc.tie_broken:
            out.finding(
                "BILL-UNITS-TIE", "low", f"Equal remainders: {TIE_BREAK}. CMS allows either code.", rule_id
            )
    return lines


def _cq_split(
    members: list[_Item], units: int, dmod: Any, prof: Any
) -> list[tuple[Modifier | None, int, str]]:
    """Split a timed code's units into (assistant modifier or None, units, explanation) parts.

    Full 15-minute units furnished by one kind of provider go to that provider; the remaining
    (mixed) units are decided by the de minimis fraction and ``final_unit_rule`` (table data).
    """
    if dmod is None or dmod.assistant_modifier is None or not prof.assistant_modifiers_required:
        return [(None, units, "")]
    a = sum(it.minutes or 0 for it in members if it.role == "assistant")
    p = sum(it.minutes or 0 for it in members if it.role != "assistant")
    mod = dmod.assistant_modifier
    frac = dmod.de_minimis_fraction
    if a == 0:
        return [(None, units, "")]
    reason = (
        f"{mod}: assistant furnished {a} min on their own, therapist {p} min (joint time counts as therapist)"
    )
    if p == 0:
        return [(Modifier(mod, "MOD-CQ", reason), units, reason + f" -> all {units} unit(s) with {mod}")]
    fa, ra = divmod(a, 15)
    fp, rp = divmod(p, 15)
    fa, fp = min(fa, units), min(fp, max(0, units - min(fa, units)))
    rest = units - fa - fp
    with_mod, without = fa, fp
    how = f"full 15-min units: {fa} by assistant, {fp} by therapist"
    if rest == 1:
        share = ra / (ra + rp) if (ra + rp) else 0.0
        if share <= frac:
            without += 1
            how += f"; last unit: assistant {ra} of {ra + rp} min <= {frac:.0%} de minimis -> no {mod}"
        elif dmod.final_unit_rule == "majority" and rp > ra:
            without += 1
            how += f"; last unit: therapist furnished more of it ({rp} vs {ra} min) -> no {mod}"
        else:
            with_mod += 1
            how += f"; last unit: assistant {ra} of {ra + rp} min > {frac:.0%} de minimis -> {mod}"
    elif rest >= 2:
        if ra and rp:
            with_mod += 1
            without += rest - 1
            how += f"; two mixed units (assistant {ra}, therapist {rp} min): one with {mod}, one without"
        elif ra:
            with_mod += rest
        else:
            without += rest
    parts: list[tuple[Modifier | None, int, str]] = []
    text = f"{reason}; {how}"
    if without:
        parts.append((None, without, text))
    if with_mod:
        parts.append((Modifier(mod, "MOD-CQ", text), with_mod, text))
    return parts


def _untimed_assistant(members: list[_Item], dmod: Any, prof: Any, out: _Out) -> Modifier | None:
    if dmod is None or dmod.assistant_modifier is None or not prof.assistant_modifiers_required:
        return None
    mod = dmod.assistant_modifier
    code = members[0].code
    asst = [it for it in members if it.role == "assistant"]
    if not asst:
        return None
    if code in EVAL_CODES:
        out.finding(
            "DOC-EVAL-BY-ASSISTANT",
            "high",
            f"{code} (evaluation/re-evaluation) is documented as performed by an assistant only; "
            f"evaluations are "
            "performed by the therapist.",
            "DOC-EVAL-ASSISTANT",
            tuple(it.pid for it in asst),
            code,
        )
    if len(asst) == len(members):
        return Modifier(mod, "MOD-CQ", f"{mod}: the untimed service was furnished wholly by the assistant")
    a = sum(it.minutes or 0 for it in asst)
    total = sum(it.minutes or 0 for it in members)
    if any(it.minutes is None for it in members):
        out.action(
            "ATTEST-CQ",
            f"{code}: therapist and assistant both documented without minutes; record the assistant's "
            f"independent "
            f"minutes so the {dmod.de_minimis_fraction:.0%} de minimis test can decide {mod}.",
            "MOD-CQ",
            tuple(it.pid for it in members),
            code,
        )
        return None
    if total and a / total > dmod.de_minimis_fraction:
        return Modifier(
            mod, "MOD-CQ", f"{mod}: assistant {a} of {total} min > {dmod.de_minimis_fraction:.0%}"
        )
    return None


# --- 5. discipline modifiers ----------------------------------------------------------------------


def _modifiers(
    lines: list[_Line],
    items: list[_Item],
    facts: EncounterFacts,
    tables: Tables,
    catalogue: dict[str, Any],
    prof: Any,
    out: _Out,
) -> None:
    dmods = {r.discipline: r for r in tables.active("discipline_modifiers", facts.date_of_service)}
    for ln in lines:
        cat = catalogue[ln.code]
        dm = dmods.get(ln.discipline)
        if cat.discipline_modifier_required and dm is not None:
            ln.modifiers.insert(
                0,
                Modifier(
                    dm.therapy_modifier,
                    "MOD-GP",
                    f"{dm.therapy_modifier}: always-therapy code under a {ln.discipline} plan of care",
                ),
            )
            ln.rule_ids.append("MOD-GP")


# --- 6. NCCI --------------------------------------------------------------------------------------


def _period(it: _Item) -> tuple[datetime, datetime] | None:
    itv = it.ci.intervention
    s, e = itv.performed_start, itv.performed_end
    if not s or not e or "T" not in s or "T" not in e:
        return None
    try:
        a = datetime.fromisoformat(s.replace("Z", "+00:00"))
        b = datetime.fromisoformat(e.replace("Z", "+00:00"))
    except ValueError:
        return None
    if (a.tzinfo is None) != (b.tzinfo is None) or b <= a:
        return None
    return a, b


def _overlap(x: tuple[datetime, datetime], y: tuple[datetime, datetime]) -> bool | None:
    if (x[0].tzinfo is None) != (y[0].tzinfo is None):
        return None
    return x[0] < y[1] and y[0] < x[1]


def _separate_blocks(a: list[_Item], b: list[_Item]) -> bool:
    """True only when every intervention of both codes has a period and none of a's overlaps b's."""
    pa = [_period(it) for it in a]
    pb = [_period(it) for it in b]
    if not pa or not pb or any(p is None for p in pa + pb):
        return False
    for x in pa:
        for y in pb:
            ov = _overlap(x, y)  # type: ignore[arg-type]
            if ov is None or ov:
                return False
    return True


def _ncci(
    lines: list[_Line],
    items: list[_Item],
    facts: EncounterFacts,
    tables: Tables,
    prof: Any,
    official: ncci.OfficialEdits | None,
    out: _Out,
) -> None:
    on = facts.date_of_service
    billed = {ln.code for ln in lines if ln.units > 0}
    if official is not None and official.ptp:
        ptp = [e for e in official.ptp if e.active_on(on)]
    else:
        ptp = [
            ncci.PtpEdit(
                r.column1,
                r.column2,
                r.effective,
                r.expires,
                r.modifier_indicator,
                "",
                r.source,
                r.confidence,
                r.note or "",
            )
            for r in tables.active("ncci_ptp_seed", on)
        ]
    denies = {tuple(p) for p in prof.denies_pair_even_with_59}
    for e in ptp:
        if e.column1 not in billed or e.column2 not in billed or e.modifier_indicator == 9:
            continue
        basis = (
            f"NCCI PTP {e.column1}/{e.column2} (column 2 = {e.column2}, modifier indicator "
            f"{e.modifier_indicator}; "
            f"{e.source}{' [' + e.confidence + ']' if e.confidence != 'PRIMARY' else ''})"
        )
        col2_lines = [ln for ln in lines if ln.code == e.column2]
        pids = tuple(it.pid for it in items if it.code in (e.column1, e.column2))
        if e.modifier_indicator == 0:
            out.finding(
                "NCCI-PTP-NO-MODIFIER",
                "high",
                f"{basis}: no modifier can unbundle this pair; {e.column2} is not payable with {e.column1} "
                f"on the same "
                "date. Review which service to bill.",
                "NCCI-PTP",
                pids,
                e.column2,
            )
            continue
        a = [it for it in items if it.code == e.column1]
        b = [it for it in items if it.code == e.column2]
        if _separate_blocks(a, b):
            for ln in col2_lines:
                if not any(m.code in ("59", "XE", "XS", "XP", "XU") for m in ln.modifiers):
                    ln.modifiers.append(
                        Modifier(
                            "59",
                            "MOD-59",
                            f"{basis}: documented performed periods of {e.column1} and {e.column2} do not "
                            f"overlap "
                            "(distinct time blocks, as in CMS's 97140/97530 example)",
                        )
                    )
                    ln.rule_ids.append("MOD-59")
                    ln.evidence.append(
                        Evidence("field", "non-overlapping Procedure.performedPeriod", "MOD-59")
                    )
        else:
            out.action(
                "ATTEST-59",
                f"{basis}. Both were billed today but the documentation does not show separate time blocks "
                f"(non-overlapping performed periods). If {e.column2} was done in a distinct time block, "
                f"session "
                f"(XE), structure (XS) or is otherwise non-overlapping (XU), attest it and add 59 or one X "
                f"modifier "
                f"(never both); otherwise {e.column2} should not be billed with {e.column1}.",
                "MOD-59",
                pids,
                e.column2,
            )
        if (e.column1, e.column2) in denies or (e.column2, e.column1) in denies:
            out.finding(
                "PAYER-DENIES-PAIR-WITH-59",
                "moderate",
                f"Payer profile '{prof.label}' denies {e.column2} with {e.column1} even with 59: expect a "
                f"denial and "
                "an appeal with the time-block documentation.",
                "PAYER-DENIES-59",
                pids,
                e.column2,
            )
    # MUE
    if official is not None and official.mue:
        mue = {m.code: m for m in official.mue if m.effective is None or on is None or m.effective <= on}
    else:
        mue = {
            r.code: ncci.MueEdit(
                r.code, r.mue_value, r.mai, r.rationale, r.source, r.effective, r.confidence, r.note or ""
            )
            for r in tables.active("mue_seed", on)
        }
    by_code: dict[str, list[_Line]] = defaultdict(list)
    for ln in lines:
        by_code[ln.code].append(ln)
    for code, lns in by_code.items():
        m = mue.get(code)
        if m is None:
            continue
        tag = f"{m.source}{' [' + m.confidence + ']' if m.confidence != 'PRIMARY' else ''}"
        if m.mai == 1:
            for ln in lns:
                if ln.units > m.value:
                    out.finding(
                        "NCCI-MUE-LINE",
                        "moderate",
                        f"{code}: {ln.units} units on one line exceed the MUE of {m.value} (MAI 1, line "
                        f"edit; {tag}). "
                        "Units above the MUE on a line are denied.",
                        "NCCI-MUE",
                        tuple(ln.procedure_ids),
                        code,
                    )
        else:
            total = sum(ln.units for ln in lns)
            if total > m.value:
                sev: Severity = "high" if m.mai == 2 else "moderate"
                kind = "policy, absolute" if m.mai == 2 else "clinical"
                out.finding(
                    "NCCI-MUE-DOS",
                    sev,
                    f"{code}: {total} units on this date exceed the MUE of {m.value} (MAI {m.mai}, "
                    f"date-of-service "
                    f"edit, {kind}; {tag}).",
                    "NCCI-MUE",
                    tuple(p for ln in lns for p in ln.procedure_ids),
                    code,
                )


# --- payer rules ----------------------------------------------------------------------------------


def _payer_rules(lines: list[_Line], facts: EncounterFacts, prof: Any, out: _Out) -> None:
    billed = [ln for ln in lines if ln.units > 0]
    codes = {ln.code for ln in billed}
    total = sum(ln.units for ln in billed)
    timed_total = sum(ln.units for ln in billed if ln.timed)
    if prof.units_per_day_cap is not None and total > prof.units_per_day_cap:
        out.finding(
            "PAYER-UNIT-CAP",
            "high",
            f"{total} units today exceed payer profile '{prof.label}' cap of {prof.units_per_day_cap} units "
            "per day (timed and untimed combined).",
            "PAYER-CAP",
        )
        out.action(
            "PAYER-UNIT-CAP",
            f"Choose which {prof.units_per_day_cap} units to bill to '{prof.label}' "
            f"(documented services support {total}); ptbill does not choose.",
            "PAYER-CAP",
        )
    if prof.timed_units_per_day_cap is not None and timed_total > prof.timed_units_per_day_cap:
        out.finding(
            "PAYER-TIMED-UNIT-CAP",
            "high",
            f"{timed_total} timed units exceed the payer's cap of {prof.timed_units_per_day_cap} per day.",
            "PAYER-CAP",
        )
    if prof.visits_per_year_cap is not None and facts.date_of_service is not None:
        yr = facts.date_of_service.year
        days = {
            pc.date
            for pc in facts.prior_charges
            if pc.date
            and pc.date.year == yr
            and pc.date < facts.date_of_service
            and pc.status not in NOT_COUNTED_CHARGE_STATUSES
            and not (pc.written_by_ptbill and pc.status == "planned")
        }
        if len(days) + 1 > prof.visits_per_year_cap:
            out.finding(
                "PAYER-VISIT-CAP",
                "high",
                f"This is visit {len(days) + 1} this year by prior charges on file; payer profile "
                f"'{prof.label}' allows {prof.visits_per_year_cap}.",
                "PAYER-CAP",
            )
    pa: set[str] = set(prof.prior_auth_codes) & codes
    if prof.prior_auth_all_except is not None:
        pa |= codes - set(prof.prior_auth_all_except)
    if pa:
        out.action(
            "PRIOR-AUTH",
            f"Payer profile '{prof.label}' requires prior authorisation for {', '.join(sorted(pa))}: "
            f"confirm an "
            "authorisation covers this date of service and these units.",
            "PAYER-PRIOR-AUTH",
        )
    for x, y in prof.same_day_exclusions:
        if x in codes and y in codes:
            out.finding(
                "PAYER-SAME-DAY-EXCLUSION",
                "high",
                f"Payer profile '{prof.label}' does not pay {x} and {y} on the same day.",
                "PAYER-SAME-DAY",
                line=y,
            )


# --- KX -------------------------------------------------------------------------------------------


def _kx(lines: list[_Line], facts: EncounterFacts, tables: Tables, payer: PayerContext, out: _Out) -> None:
    prof = payer.profile
    on = facts.date_of_service
    if not prof.kx_applies or prof.kind != "medicare":
        return
    if on is None:
        out.finding(
            "KX-NO-DATE", "moderate", "No date of service: the KX threshold year cannot be chosen.", "KX"
        )
        return
    fees = {r.code: r.allowed_amount for r in tables.active("fee_schedule", on)}
    eid = facts.encounter_id
    same_enc = {eid, f"Encounter/{eid}"}
    # Spend before this date of service only, and never ptbill's own unreviewed suggestions: the estimate
    # must not depend on the order in which a sync happens to process encounters (determinism, re-runs).
    prior = [
        pc
        for pc in facts.prior_charges
        if pc.date is not None
        and pc.date.year == on.year
        and pc.date < on
        and pc.status not in NOT_COUNTED_CHARGE_STATUSES
        and not (pc.written_by_ptbill and pc.status == "planned")
        and not (pc.encounter and (pc.encounter in same_enc or pc.encounter.endswith(f"/{eid}")))
    ]
    undated = sum(1 for pc in facts.prior_charges if pc.date is None)
    unpriced = sorted(
        {pc.code for pc in prior if pc.code not in fees}
        | {ln.code for ln in lines if ln.units and ln.code not in fees}
    )
    prior_amt = sum(fees.get(pc.code, 0.0) * pc.units for pc in prior)
    buckets: dict[str, float] = defaultdict(float)
    for ln in lines:
        if ln.units:
            buckets["OT" if ln.discipline == "OT" else "PT_SLP"] += fees.get(ln.code, 0.0) * ln.units
    thresholds = {r.bucket: r for r in tables.active("kx_thresholds", on) if r.year == on.year}
    near = prof.kx_near_fraction or 1.0
    for bucket, visit_amt in sorted(buckets.items()):
        th = thresholds.get(bucket)
        label = "PT+SLP" if bucket == "PT_SLP" else "OT"
        if th is None:
            out.finding(
                "KX-NO-THRESHOLD",
                "moderate",
                f"No KX threshold on file for {on.year} ({label}); add it to kx_thresholds.yaml.",
                "KX",
            )
            continue
        est = prior_amt + visit_amt + facts.prior_provider_spend
        basis = (
            f"estimate ${est:,.2f} = prior ChargeItems this year ${prior_amt:,.2f} ({len(prior)} charge(s), "
            f"other "
            f"encounters only, priced with the clinic's configurable fee schedule; not split by discipline) "
            f"+ this "
            f"visit ${visit_amt:,.2f} + prior-provider spend entered ${facts.prior_provider_spend:,.2f}"
        )
        if unpriced:
            basis += f"; codes without a fee counted as $0: {', '.join(unpriced)}"
        if undated:
            basis += f"; {undated} undated charge(s) ignored"
        basis += (
            f". Threshold {on.year} ({label}) ${th.amount:,.2f} [{th.confidence}; {th.source}]"
            + (f" Note: {th.note}" if th.note else "")
            + ". Estimate only: spend at other providers is known only as entered; the MAC's eligibility "
            "data has the true total."
        )
        if est > th.amount:
            # Flags are patient-level and several encounters raise the same one: their text must not
            # depend on which encounter wrote it last (the per-visit basis is in the Task).
            out.flag(
                "KX-THRESHOLD-EXCEEDED",
                f"Medicare KX threshold {on.year} ({label}, ${th.amount:,.2f}) likely exceeded by estimate; "
                "see the ATTEST-KX Task of the visit for the basis. KX is never added by ptbill.",
                "KX",
                f"{on.year}-{bucket}",
            )
            out.action(
                "ATTEST-KX",
                f"Services this visit appear to be above the {on.year} KX threshold ({label}). If they are "
                f"medically necessary and the documentation justifies them, the clinician attests and KX is "
                f"added to the lines; ptbill does not add KX. Basis: {basis}",
                "KX",
                prio="urgent",
            )
        elif est >= near * th.amount:
            out.flag(
                "KX-THRESHOLD-NEAR",
                f"Medicare KX threshold {on.year} ({label}, ${th.amount:,.2f}) approaching "
                f"({near:.0%} or more by estimate); see the ATTEST-KX Task of the visit for the basis.",
                "KX",
                f"{on.year}-{bucket}",
            )
            out.action(
                "ATTEST-KX",
                f"The {on.year} KX threshold ({label}) is near. Prepare the medical-necessity attestation "
                f"for "
                f"KX and verify the running total on the MAC portal. Basis: {basis}",
                "KX",
            )


# --- 7. documentation alerts ----------------------------------------------------------------------


def _doc_rule(tables: Tables, on: date | None, name: str, default: int) -> int:
    for r in tables.active("documentation_rules", on):
        if r.rule == name:
            return int(r.value)
    return default


def _documentation(
    lines: list[_Line],
    items: list[_Item],
    facts: EncounterFacts,
    tables: Tables,
    untimed_minutes: int,
    prof: Any,
    out: _Out,
    classified: tuple[ClassifiedIntervention, ...] = (),
) -> None:
    timed_items = [it for it in items if it.timed]
    documented_per_item = sum(
        it.minutes or 0 for it in timed_items if not it.allocated and it.minutes is not None
    )
    all_known = all(it.minutes is not None and not it.allocated for it in timed_items)
    timed_units = sum(ln.units for ln in lines if ln.timed)
    tt = facts.documented_total_timed_minutes
    tx = facts.documented_total_treatment_minutes
    if tt is not None:
        # One discrepancy, one finding: when the minutes disagree AND the units differ, the unit
        # finding says both; the plain minutes mismatch is reported only when the units agree.
        mismatch = bool(timed_items) and all_known and documented_per_item != tt
        per_item = (
            f" (the per-intervention timed minutes add up to {documented_per_item})" if mismatch else ""
        )
        unit_finding = False
        if prof.unit_rule == "CMS":
            supported = cms_total_units(tt)
            if timed_units > supported:
                unit_finding = True
                out.finding(
                    "DOC-UNITS-EXCEED-TOTAL",
                    "high",
                    f"{timed_units} timed units suggested but the documented {tt} total timed minutes "
                    f"support {supported}{per_item}. Billing and total timed minutes must be consistent.",
                    "DOC-TOTALS",
                )
            elif timed_units < supported and all_known:
                unit_finding = True
                unbilled = _unbilled_timed(facts, classified)
                why = (
                    f"; {unbilled} documented intervention(s) with minutes got no line (unclassifiable "
                    "or not recognised as therapy): document what was done"
                    if unbilled
                    else "; check for timed services missing from the record"
                )
                out.finding(
                    "DOC-UNITS-BELOW-TOTAL",
                    "low",
                    f"Documented {tt} total timed minutes support {supported} units but the billed "
                    f"interventions give {timed_units}{per_item}{why}.",
                    "DOC-TOTALS",
                )
        if mismatch and not unit_finding:
            same = (
                f" Both give {timed_units} timed unit(s); correct whichever is wrong so the note agrees."
                if prof.unit_rule == "CMS"
                else ""
            )
            out.finding(
                "DOC-TIMED-MINUTES-MISMATCH",
                "low" if prof.unit_rule == "CMS" else "moderate",
                f"Per-intervention timed minutes add up to {documented_per_item} but the note documents "
                f"{tt} total timed minutes.{same}",
                "DOC-TOTALS",
            )
    if tx is not None and tt is not None and tx < tt:
        out.finding(
            "DOC-TREATMENT-LT-TIMED",
            "high",
            f"Total treatment time ({tx} min) is less than total timed minutes ({tt} min).",
            "DOC-TOTALS",
        )
    if tx is not None:
        timed_sum = tt if tt is not None else documented_per_item
        if timed_sum + untimed_minutes > tx:
            out.finding(
                "DOC-TREATMENT-MINUTES-MISMATCH",
                "moderate",
                f"Timed ({timed_sum}) plus untimed ({untimed_minutes}) minutes exceed the documented total "
                f"treatment time ({tx} min).",
                "DOC-TOTALS",
            )
    if lines and prof.kind == "medicare" and (tt is None or tx is None):
        out.finding(
            "DOC-TOTALS-MISSING",
            "low",
            "The treatment note should record total timed code minutes and total treatment minutes.",
            "DOC-TOTALS",
        )
    _group(items, facts, tables, out)
    _episode(facts, tables, out)


def _unbilled_timed(facts: EncounterFacts, classified: tuple[ClassifiedIntervention, ...]) -> int:
    """Completed interventions with minutes that got no code: UNSUPPORTED, or not recognised as therapy."""
    coded = {ci.intervention.id for ci in classified if ci.classification.code != UNSUPPORTED}
    return sum(1 for i in facts.interventions if i.status == "completed" and i.minutes and i.id not in coded)


def _group(items: list[_Item], facts: EncounterFacts, tables: Tables, out: _Out) -> None:
    group = [it for it in items if it.code == GROUP_CODE]
    if not group:
        return
    max_units = _doc_rule(tables, facts.date_of_service, "max_units_97150", 1)
    if len(group) > max_units:
        out.finding(
            "DOC-GROUP-REPEATED",
            "moderate",
            f"97150 documented {len(group)} times; it is billed at most {max_units} unit per session.",
            "DOC-GROUP",
            tuple(it.pid for it in group),
            GROUP_CODE,
        )
    sizes = [s for s in [facts.group_size, *(it.ci.intervention.group_size for it in group)] if s is not None]
    if not sizes:
        out.finding(
            "DOC-GROUP-SIZE",
            "low",
            "Record the number of patients in the group session (97150).",
            "DOC-GROUP",
            tuple(it.pid for it in group),
            GROUP_CODE,
        )
    elif min(sizes) < 2:
        out.finding(
            "DOC-GROUP-SIZE",
            "high",
            f"97150 requires two or more patients; the documented group size is {min(sizes)}.",
            "DOC-GROUP",
            tuple(it.pid for it in group),
            GROUP_CODE,
        )
    one_on_one = [it for it in items if it.timed]
    if not one_on_one:
        return
    gp = [_period(it) for it in group]
    op = [_period(it) for it in one_on_one]
    pids = tuple(it.pid for it in group + one_on_one)
    if any(p is None for p in gp + op):
        out.finding(
            "DOC-GROUP-WITH-ONE-ON-ONE",
            "moderate",
            "Group therapy (97150) and one-on-one timed codes on the same day without documented times: "
            "show they were in separate time periods, otherwise only 97150 is reported.",
            "DOC-GROUP",
            pids,
        )
        return
    if any(_overlap(x, y) for x in gp for y in op):  # type: ignore[arg-type]
        out.finding(
            "DOC-GROUP-WITH-ONE-ON-ONE",
            "high",
            "One-on-one timed codes overlap in time with group therapy (97150): procedures done with two or "
            "more patients in the same period are reported only as 97150.",
            "DOC-GROUP",
            pids,
        )


def _episode(facts: EncounterFacts, tables: Tables, out: _Out) -> None:
    ep = facts.episode
    on = facts.date_of_service
    if ep is None:
        return
    key = ep.id or ""
    if ep.visit_number is not None:
        interval = _doc_rule(tables, on, "progress_report_interval_visits", 10)
        warn = _doc_rule(tables, on, "progress_report_warn_before_visits", 2)
        since = ep.visit_number - (ep.last_progress_report_visit or 0)
        since_what = (
            "the last progress report" if ep.last_progress_report_visit else "the start of the episode"
        )
        if since >= interval:
            msg = (
                f"Progress report due: treatment day {ep.visit_number} of the episode, {since} treatment "
                f"days since "
                f"{since_what} "
                f"(required at least every {interval} treatment days)."
            )
            due_at = (ep.last_progress_report_visit or 0) + interval
            out.flag(
                "DOC-PROGRESS-REPORT-DUE",
                f"Progress report due at treatment day {due_at} of the episode (required at least every "
                f"{interval} treatment days).",
                "DOC-PROGRESS",
                f"{key}@{due_at}",
            )
            out.action(
                "DOC-PROGRESS-REPORT",
                msg + " The therapist (not an assistant) writes it.",
                "DOC-PROGRESS",
                prio="urgent" if since > interval else "routine",
            )
        elif since >= interval - warn:
            due_at = (ep.last_progress_report_visit or 0) + interval
            out.flag(
                "DOC-PROGRESS-REPORT-SOON",
                f"Progress report due at treatment day {due_at} of the episode (every {interval} treatment "
                "days).",
                "DOC-PROGRESS",
                f"{key}@{due_at}",
            )
    cert = ep.plan_of_care_certified or ep.start
    if cert is None or on is None:
        return
    days = (on - cert).days
    interval = _doc_rule(tables, on, "poc_recert_interval_days", 90)
    warn = _doc_rule(tables, on, "poc_recert_warn_before_days", 14)
    basis = "certified" if ep.plan_of_care_certified else "started (certification date unknown)"
    if ep.plan_of_care_certified is None:
        out.finding(
            "DOC-POC-CERT-UNKNOWN",
            "low",
            "Plan-of-care certification date not known; recertification timing counted from the episode "
            "start.",
            "DOC-POC",
        )
    if days >= interval:
        msg = (
            f"Plan of care {basis} on {cert.isoformat()}, {days} days before this visit: the {interval}-day "
            "certification interval has ended; recertification is required."
        )
        due = cert + timedelta(days=interval)
        out.flag(
            "DOC-POC-RECERT-OVERDUE",
            f"Plan of care {basis} on {cert.isoformat()}: recertification was due by {due.isoformat()}.",
            "DOC-POC",
            f"{key}@{cert.isoformat()}",
        )
        out.action(
            "DOC-POC-RECERT",
            msg + " Obtain the physician/NPP's signed recertification.",
            "DOC-POC",
            prio="urgent",
        )
    elif days >= interval - warn:
        msg = (
            f"Plan of care {basis} on {cert.isoformat()}: recertification due within {interval - days} "
            f"day(s) "
            f"(at most every {interval} days)."
        )
        due = cert + timedelta(days=interval)
        out.flag(
            "DOC-POC-RECERT-DUE",
            f"Plan of care {basis} on {cert.isoformat()}: recertification due by {due.isoformat()}.",
            "DOC-POC",
            f"{key}@{cert.isoformat()}",
        )
        out.action("DOC-POC-RECERT", msg + " Send the updated plan of care for signature.", "DOC-POC")
