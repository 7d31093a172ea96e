"""Step: classified interventions -> entries, one per documented code.

* UNSUPPORTED classifications get no entry (skipped, counted; the classifier's finding says why).
* A mixed entry -- one Procedure documenting several codes, each with its own minutes
  (``Classification.shares``, decided by the classifier) -- becomes one entry per share: that code, those
  minutes, the same Procedure, performers and period. From here on a share is billed like any other entry
  (payer code rules, discipline, time accounting, units, modifiers, edits).
* Otherwise: the classification's code with the Procedure's performed minutes.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Entry, Rule
from integration.model import UNSUPPORTED

RULE_SHARES = Rule(
    "MIXED-ENTRY-SHARES",
    "One billing line per code documented with its own minutes in a mixed entry (classification issue; "
    "MBPM ch. 15 §220.3: each intervention identified and billed as documented)",
)

SKIP_UNSUPPORTED = "unsupported-classification"


def apply(ctx: BillingContext) -> None:
    for ci in ctx.classified:
        c = ci.classification
        if c.shares:
            for i, share in enumerate(c.shares):
                if (
                    share.code == UNSUPPORTED
                ):  # a share the classifier could not code: its minutes are unbilled
                    ctx.skip(ci.intervention.id, SKIP_UNSUPPORTED)
                else:
                    ctx.entries.append(Entry(ci, share.code, share.minutes, i))
        elif c.code == UNSUPPORTED:
            ctx.skip(ci.intervention.id, SKIP_UNSUPPORTED)
        else:
            ctx.entries.append(Entry(ci, c.code, ci.intervention.minutes))
