"""The wider outpatient code set (issue 8 §5): what its rules cannot decide from signals alone.

Called once per classified intervention (integration/classify/__init__.py) on the rule engine's answer:

* **Dry needling** (R-DRY-NEEDLING): 20560 for 1-2 muscles, 20561 for 3 or more. The note's own count
  ("4 muscles", "two muscles") wins; else the distinct muscles named (classify_side_muscles, one row per
  muscle: both heads of gastrocnemius are one). Needles and insertions are not muscles. No muscle
  documented -> 20560 (never guessed up) with a finding asking for the muscles.
* **Evaluations** (R-EVAL-*, R-OT-EVAL-*): the level from the documented components
  (integration/classify/evaluation.py). A level the note states is kept unless the documented components
  support a lower one; an unstated level is the one the note supports, with the higher ones as alternatives
  and a DOC-EVAL-COMPLEXITY finding naming what a person must document or attest (the billing documentation
  step writes the Task).

Pure: plain data in, a Classification out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from integration.classify import evaluation, sidelex
from integration.classify.engine import Compiled
from integration.model import Classification, Evidence, Finding, Intervention
from mappings.loader import Tables

MUSCLE_TABLE = "classify_side_muscles"
EVAL_TABLE = "classify_side_eval"

F_NEEDLING_MUSCLES = "DOC-DRY-NEEDLING-MUSCLES"
F_EVAL_COMPLEXITY = "DOC-EVAL-COMPLEXITY"
RULE_NEEDLING = "R-DRY-NEEDLING-MUSCLES"
RULE_EVAL = "R-EVAL-COMPLEXITY"
NEEDLING_SOURCE = (
    "CPT 20560 (1 or 2 muscles) / 20561 (3 or more muscles), AMA CPT 2020 via apta.org dry-needling billing "
    "[SECONDARY]; LABELING.md §8.7 (muscles, not needles)"
)
EVAL_SOURCE = (
    "CPT 97161-97163 (APTA 2017) and 97165-97167 (AOTA 2017) components [SECONDARY]; billing-rules.md §1; "
    "LABELING.md §8.8 (lowest level met by all components)"
)
# CPT's own split of the two needling codes (the code descriptors, not a tunable setting)
MUSCLES_FOR_3_PLUS = 3

_NEEDLING_RULES = ("R-DRY-NEEDLING",)
_EVAL_STATED = {
    "R-EVAL-LOW": evaluation.LOW,
    "R-EVAL-MOD": evaluation.MODERATE,
    "R-EVAL-HIGH": evaluation.HIGH,
    "R-OT-EVAL-LOW": evaluation.LOW,
    "R-OT-EVAL-MOD": evaluation.MODERATE,
    "R-OT-EVAL-HIGH": evaluation.HIGH,
}
_EVAL_UNSTATED = ("R-EVAL-UNSPEC", "R-OT-EVAL-UNSPEC")
_LEVEL_CONCEPTS = {
    "PT": ("eval_low", "eval_moderate", "eval_high"),
    "OT": ("ot_eval_low", "ot_eval_moderate", "ot_eval_high"),
}
_NUMBER_WORDS = {w: n for n, w in enumerate("one two three four five six seven eight nine ten".split(), 1)}


def refine(
    tables: Tables, on: date | None, comp: Compiled, itv: Intervention, c: Classification
) -> Classification:
    rule = c.rule_ids[0] if c.rule_ids else ""
    if rule in _NEEDLING_RULES:
        return _needling(tables, on, comp, itv, c)
    if rule in _EVAL_STATED or rule in _EVAL_UNSTATED:
        return _evaluation(tables, on, comp, itv, c, rule)
    return c


# --- dry needling ------------------------------------------------------------------------------


def muscle_count(
    tables: Tables, on: date | None, comp: Compiled, text: str
) -> tuple[int | None, tuple[str, ...]]:
    """(muscles needled, the muscles named): the note's stated number first, else the distinct muscles."""
    toks = comp.normalizer.tokens(evaluation.strip_unchecked(text))
    stated = _stated_muscles(toks)
    named: dict[str, str] = {}
    for h in sidelex.scan(sidelex.matcher(tables, MUSCLE_TABLE, on), toks):
        named.setdefault(h.row_id, h.text)
    if stated is not None:
        return stated, tuple(named.values())
    return (len(named) or None), tuple(named.values())


def _stated_muscles(toks: tuple[str, ...]) -> int | None:
    for i in range(len(toks) - 1):
        if toks[i + 1] in ("muscle", "muscles"):
            t = toks[i]
            n = int(t) if t.isdigit() and len(t) <= 2 else _NUMBER_WORDS.get(t)
            if n:
                return n
    return None


def _needling(
    tables: Tables, on: date | None, comp: Compiled, itv: Intervention, c: Classification
) -> Classification:
    small, large = comp.concept_code["dry_needling_1_2"], comp.concept_code["dry_needling_3"]
    n, named = muscle_count(tables, on, comp, " . ".join((itv.full_text(), *itv.body_sites)))
    findings = list(c.findings)
    if n is None:
        code = small
        findings.append(
            Finding(
                F_NEEDLING_MUSCLES,
                "moderate",
                f"Dry needling without the muscles needled: {small} is 1-2 muscles, {large} 3 or more. Name "
                f"each muscle (needles and insertions do not count); {small} is suggested until then.",
                RULE_NEEDLING,
                NEEDLING_SOURCE,
                (itv.id,),
                small,
            )
        )
        basis = "no muscle named"
    else:
        code = large if n >= MUSCLES_FOR_3_PLUS else small
        basis = f"{n} muscle(s)" + (f": {', '.join(named)}" if named else "")
        if code != c.code and c.code in (small, large):
            findings.append(
                Finding(
                    F_NEEDLING_MUSCLES,
                    "moderate",
                    f"Procedure coded {c.code} but the note documents {basis}: {code} "
                    f"({'3 or more' if code == large else '1-2'} muscles). Review the code or the note.",
                    RULE_NEEDLING,
                    NEEDLING_SOURCE,
                    (itv.id,),
                    code,
                )
            )
    other = large if code == small else small
    evidence = (*c.evidence, Evidence("field", f"dry needling, {basis}", RULE_NEEDLING))
    return replace(
        c,
        code=code,
        alternatives=tuple(dict.fromkeys((other, *(a for a in c.alternatives if a != code)))),
        evidence=evidence,
        findings=tuple(replace(f, line_code=code) if f.line_code in (small, large) else f for f in findings),
        rule_ids=(*c.rule_ids, RULE_NEEDLING),
    )


# --- evaluations -------------------------------------------------------------------------------


def _evaluation(
    tables: Tables, on: date | None, comp: Compiled, itv: Intervention, c: Classification, rule: str
) -> Classification:
    discipline: evaluation.Discipline = "OT" if rule.startswith("R-OT-") else "PT"
    codes = tuple(comp.concept_code[k] for k in _LEVEL_CONCEPTS[discipline])
    m = sidelex.matcher(tables, EVAL_TABLE, on)

    def scan(s: str) -> list[sidelex.SideHit]:
        return sidelex.scan(m, comp.normalizer.tokens(s))

    a = evaluation.assess(discipline, itv.full_text(), scan)
    stated = _EVAL_STATED.get(rule)
    documented = a.documented
    parts = "; ".join(f"{x.name}: {x.basis}" for x in a.components)
    evidence = (*c.evidence, *(Evidence("field", f"{x.name}: {x.basis}", RULE_EVAL) for x in a.components))
    findings = [f for f in c.findings if f.code != F_EVAL_COMPLEXITY]
    if stated is not None:
        if documented is None or documented >= stated:
            return replace(c, evidence=evidence, rule_ids=(*c.rule_ids, RULE_EVAL))
        level = documented
        why = (
            f"The note states {_name(stated)} complexity but its documented components support "
            f"{_name(level)} ({codes[level - 1]}): {parts}. Document the components that support the stated "
            f"level, or bill {codes[level - 1]}."
        )
    else:
        level = a.supported
        if a.missing:
            would = (
                f"; the documented components alone would support {codes[documented - 1]}"
                if documented
                else ""
            )
            why = (
                f"Evaluation complexity not established: {', '.join(a.missing)} not documented ({parts}). "
                f"{codes[level - 1]} is suggested (never a higher level than the note supports){would}. "
                "Document or attest the missing components to bill a higher level."
            )
        else:
            why = ""
    code = codes[level - 1]
    if why:
        findings.append(Finding(F_EVAL_COMPLEXITY, "moderate", why, RULE_EVAL, EVAL_SOURCE, (itv.id,), code))
    findings = [replace(f, line_code=code) if f.line_code in codes else f for f in findings]
    alternatives = tuple(x for x in codes if x != code)
    confidence = 0.8 if not a.missing and stated is None else min(c.confidence, 0.6)
    return replace(
        c,
        code=code,
        alternatives=alternatives,
        confidence=confidence,
        evidence=evidence,
        findings=tuple(findings),
        rule_ids=(*c.rule_ids, RULE_EVAL),
    )


def _name(level: int) -> str:
    return evaluation.LEVEL_NAMES[level]
