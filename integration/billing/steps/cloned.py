"""Step: copy-forward -- documentation identical to the patient's previous visit is not billed as is.

Auditors treat a note copied from the last visit ("cloned documentation") as a red flag: it does not show
what was furnished on the date billed. An entry whose Procedure text (normalised: case, spacing and
punctuation ignored) equals a Procedure text of the patient's most recent earlier visit gets no line; a
DOC-CLONED finding and a Task ask the clinician to document today's session. Texts shorter than
``cloned_min_words`` (documentation_rules.yaml) are not compared: a repeated one-line title is thin
documentation, not a copied note.

Data: ``EncounterFacts.prior_visits`` (dates and text hashes only, integration/classify/cloned.py), the
documentation rule ``cloned_min_words``.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Rule
from integration.classify.cloned import hashed_words, previous_visit

RULE_CLONED = Rule(
    "DOC-CLONED",
    "CMS Program Integrity Manual ch. 3 §3.3.2.1.1 and CMS MLN 'Medical record maintenance and access "
    "requirements': cloned documentation does not support medical necessity for the date billed "
    "[UNVERIFIED: not in billing-rules.md]; issue 8 §4 (copy-forward guardrail)",
)
F_CLONED = "DOC-CLONED"
A_CLONED = "DOC-CLONED"
SKIP_CLONED = "cloned-documentation"


def apply(ctx: BillingContext) -> None:
    previous = previous_visit(ctx.facts.prior_visits, ctx.on)
    if not previous:
        return
    earlier = {h for v in previous for h in v.text_hashes}
    when = next((v.date for v in previous if v.date is not None), None)
    min_words = ctx.rules.documentation("cloned_min_words")
    kept = []
    flagged: set[str] = set()
    for entry in ctx.entries:
        itv = entry.ci.intervention
        h = hashed_words(itv.full_text(), min_words)
        if h is None or h not in earlier:
            kept.append(entry)
            continue
        pid = entry.pid
        if pid not in flagged:
            flagged.add(pid)
            ctx.skip(pid, SKIP_CLONED)
            ctx.finding(
                F_CLONED,
                "high",
                f"The documentation of this {entry.code} is identical to the patient's previous visit "
                f"({when.isoformat() if when else 'earlier'}); copied documentation does not show what was "
                "furnished today. No line is suggested until the note documents today's session.",
                RULE_CLONED,
                (pid,),
                entry.code,
            )
            ctx.action(
                A_CLONED,
                f"Documentation of {entry.code} repeats the previous visit word for word: document today's "
                "session (what was done, the patient's response, the progression), then re-run.",
                RULE_CLONED,
                (pid,),
                entry.code,
            )
    ctx.entries[:] = kept
