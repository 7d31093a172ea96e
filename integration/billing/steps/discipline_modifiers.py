"""Step: GP/GO/GN -- the plan of care a line is billed under, first among its modifiers.

Data: mappings/billing/discipline_modifiers.yaml (``therapy_modifier`` per discipline) and the
``therapy_list`` column of mappings/core/billable_codes.yaml. "Always" therapy codes always carry it (CR
10176: claims without it are returned); "sometimes" therapy codes (e.g. 95992, 20560/20561) carry it when
a therapist furnishes them under a therapy plan of care -- here, when the performer's discipline was read
from their role, not assumed.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Rule
from integration.model import Modifier

RULE_GP = Rule(
    "MOD-GP",
    "MCPM ch. 5 §20.1; CR 10176: GP/GO/GN on every always-therapy code; sometimes-therapy codes under a "
    "therapy plan of care (billing-rules.md §4.1); mappings/billing/discipline_roles.yaml, "
    "discipline_modifiers.yaml, mappings/core/billable_codes.yaml (disciplines, therapy_list)",
)


def apply(ctx: BillingContext) -> None:
    for ln in ctx.lines:
        cat = ln.items[0].cat
        if cat.therapy_list == "sometimes" and not any(it.discipline_known for it in ln.items):
            continue
        mod = ctx.rules.discipline_modifier(ln.discipline).therapy_modifier
        ln.modifiers.insert(
            0,
            Modifier(
                mod,
                RULE_GP.id,
                f"{mod}: {cat.therapy_list}-therapy code under a {ln.discipline} plan of care",
            ),
        )
        ln.rule_ids.append(RULE_GP.id)
