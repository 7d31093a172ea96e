"""Step: NCCI Medically Unlikely Edits -- units per code over the MUE are reported, never cut.

Data: the official CMS practitioner MUE file when loaded (``integration/billing/ncci.py``), else
mappings/billing/mue_seed.yaml. MAI 1 is a line edit (units on one line); MAI 2 (policy) and 3 (clinical)
are date-of-service edits across every line of the code.
"""

from __future__ import annotations

from collections import defaultdict

from integration.billing.context import BillingContext, Line, Rule
from integration.billing.ncci import MueEdit
from integration.model import Severity

RULE_MUE = Rule(
    "NCCI-MUE",
    "NCCI practitioner MUEs (official quarterly file when loaded, else mue_seed.yaml) (billing-rules.md "
    "§3.3)",
)

F_MUE_LINE = "NCCI-MUE-LINE"
F_MUE_DOS = "NCCI-MUE-DOS"


def edits(ctx: BillingContext) -> dict[str, MueEdit]:
    on = ctx.on
    if ctx.edits is not None and ctx.edits.mue:
        return {m.code: m for m in ctx.edits.mue if m.effective is None or on is None or m.effective <= on}
    return {
        r.code: MueEdit(
            r.code, r.mue_value, r.mai, r.rationale, r.source, r.effective, r.confidence, r.note or ""
        )
        for r in ctx.rules.mue_seed.values()
    }


def apply(ctx: BillingContext) -> None:
    mue = edits(ctx)
    by_code: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.lines:
        by_code[ln.code].append(ln)
    for code, lines in by_code.items():
        m = mue.get(code)
        if m is None:
            continue
        tag = f"{m.source}{' [' + m.confidence + ']' if m.confidence != 'PRIMARY' else ''}"
        if m.mai == 1:
            for ln in lines:
                if ln.units > m.value:
                    ctx.finding(
                        F_MUE_LINE,
                        "moderate",
                        f"{code}: {ln.units} units on one line exceed the MUE of {m.value} (MAI 1, line "
                        "edit; "
                        f"{tag}). Units above the MUE on a line are denied.",
                        RULE_MUE,
                        tuple(ln.procedure_ids),
                        code,
                    )
            continue
        total = sum(ln.units for ln in lines)
        if total > m.value:
            severity: Severity = "high" if m.mai == 2 else "moderate"
            kind = "policy, absolute" if m.mai == 2 else "clinical"
            ctx.finding(
                F_MUE_DOS,
                severity,
                f"{code}: {total} units on this date exceed the MUE of {m.value} (MAI {m.mai}, "
                "date-of-service "
                f"edit, {kind}; {tag}).",
                RULE_MUE,
                tuple(dict.fromkeys(p for ln in lines for p in ln.procedure_ids)),
                code,
            )
