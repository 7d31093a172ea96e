"""Step: classified interventions -> entries, one per documented code.

* UNSUPPORTED classifications get no entry (skipped, counted; the classifier's finding says why).
* A mixed entry -- one Procedure documenting several codes, each with its own minutes
  (``Classification.shares``, decided by the classifier from the documented items) -- becomes one entry per
  share: that code, those minutes, the same Procedure, performers and period. From here on a share is billed
  like any other entry (payer code rules, discipline, time accounting, units, modifiers, edits).
* A mixed entry WITHOUT per-item minutes (the classifier's ``DOC-MIXED-INTERVENTIONS``, no shares): minutes
  are never moved between codes by weight; the entry is billed under the code the classifier kept (the
  Procedure's code when an item supports it, else the best supported one) and a Task asks the clinician to
  record the minutes of each intervention (``DOC-SPLIT-MINUTES``).
* Otherwise: the classification's code with the Procedure's performed minutes.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Entry, Rule
from integration.model import UNSUPPORTED, Classification

RULE_SHARES = Rule(
    "MIXED-ENTRY-SHARES",
    "One billing line per code documented with its own minutes in a mixed entry (classification issue; "
    "MBPM ch. 15 §220.3: each intervention identified and billed as documented)",
)
RULE_SPLIT = Rule(
    "MIXED-ENTRY-SPLIT-MINUTES",
    "MBPM ch. 15 §220.3 (the minutes of each timed code must be identifiable when several are billed); "
    "classification issue 8: several codes without per-item minutes are never split by weight",
)

SKIP_UNSUPPORTED = "unsupported-classification"
MIXED_FINDING = "DOC-MIXED-INTERVENTIONS"  # raised by the classifier (integration/classify/entry.py)
A_SPLIT_MINUTES = "DOC-SPLIT-MINUTES"
_QUOTE_MAX = 40


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
            if any(f.code == MIXED_FINDING for f in c.findings):
                minutes = ci.intervention.minutes
                ctx.action(
                    A_SPLIT_MINUTES,
                    f"This entry documents several interventions ({_per_code(c)}) without the minutes of "
                    f"each; record the minutes per intervention (or one Procedure each). Until then "
                    f"{'all ' + str(minutes) + ' minutes are' if minutes else 'the entry is'} suggested "
                    f"under {c.code}.",
                    RULE_SPLIT,
                    (ci.intervention.id,),
                    c.code,
                )


def _per_code(c: Classification) -> str:
    by_code: dict[str, list[str]] = {}
    for it in c.items:
        if it.code != UNSUPPORTED:
            t = " ".join(it.text.split())
            by_code.setdefault(it.code, []).append(t if len(t) <= _QUOTE_MAX else t[: _QUOTE_MAX - 1] + "…")
    return "; ".join(f"{code}: " + ", ".join(f"'{t}'" for t in texts) for code, texts in by_code.items())
