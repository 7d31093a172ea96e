"""The decision seam: one pure function from what was documented to what should be billed.

``decide(facts, tables)`` takes an EncounterFacts (plain data extracted from FHIR) and the loaded
mapping tables, and returns a Decision: billing lines, findings, action items (Tasks), flags and the
table versions used. No I/O, no Celery, no settings. The live pipeline, ``ptbill process --bundle``
and the tests all call this same function, so they make the same decisions.
"""

from __future__ import annotations

from integration import __version__
from integration.billing import BillingResult, bill
from integration.classify import classify, therapy_relevance
from integration.model import ClassifiedIntervention, Decision, EncounterFacts, Skipped
from mappings.loader import Tables


def decide(facts: EncounterFacts, tables: Tables) -> Decision:
    classified: list[ClassifiedIntervention] = []
    skipped: list[Skipped] = []
    for itv in facts.interventions:
        if itv.status != "completed":
            skipped.append(Skipped(itv.id, f"status-{itv.status}"))
            continue
        reason = therapy_relevance(itv, tables)
        if reason is not None:  # not a therapy intervention (e.g. a colonoscopy): skipped with a count
            skipped.append(Skipped(itv.id, reason))
            continue
        c = classify(itv, tables, on=facts.date_of_service)
        classified.append(ClassifiedIntervention(itv, c))
    # an encounter with no therapy intervention (a wellness visit in a shared EMR) gets no billing review
    result = bill(facts, tuple(classified), tables) if classified else BillingResult()
    findings = tuple(f for ci in classified for f in ci.classification.findings) + result.findings
    return Decision(
        encounter_id=facts.encounter_id,
        lines=result.lines,
        classified=tuple(classified),
        findings=_dedupe(findings),
        actions=_dedupe(result.actions),
        flags=_dedupe(result.flags),
        skipped=tuple(skipped) + result.skipped,
        table_versions=tables.versions(),
        engine_version=__version__,
    )


def _dedupe(items: tuple) -> tuple:
    seen: dict[object, None] = {}
    for it in items:
        seen.setdefault(it, None)
    return tuple(seen)
