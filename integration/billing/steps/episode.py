"""Step: episode alerts -- progress report every N treatment days, plan-of-care recertification.

Data: mappings/billing/documentation_rules.yaml (``progress_report_interval_visits``,
``progress_report_warn_before_visits``, ``poc_recert_interval_days``, ``poc_recert_warn_before_days``:
required rows, the loader refuses tables without them) and the episode facts (ptbill extensions
``visit-number``, ``last-progress-report-visit``, ``poc-certified-date`` on the Encounter or its
EpisodeOfCare; the EpisodeOfCare's start). Flags are patient-level standing alerts keyed by the episode
and the due point; Tasks are the visit's to-dos.
"""

from __future__ import annotations

from datetime import timedelta

from integration.billing.context import BillingContext, Rule
from integration.model import EpisodeFacts

RULE_PROGRESS = Rule(
    "DOC-PROGRESS",
    "MBPM ch. 15 §220.3: progress report at least once every 10 treatment days (billing-rules.md §5.1)",
)
RULE_POC = Rule(
    "DOC-POC",
    "MBPM ch. 15 §220.1: plan of care certification interval at most 90 days (billing-rules.md §5.1)",
)

FLAG_PROGRESS_DUE = "DOC-PROGRESS-REPORT-DUE"
FLAG_PROGRESS_SOON = "DOC-PROGRESS-REPORT-SOON"
A_PROGRESS_REPORT = "DOC-PROGRESS-REPORT"
F_POC_CERT_UNKNOWN = "DOC-POC-CERT-UNKNOWN"
FLAG_POC_OVERDUE = "DOC-POC-RECERT-OVERDUE"
FLAG_POC_DUE = "DOC-POC-RECERT-DUE"
A_POC_RECERT = "DOC-POC-RECERT"


def apply(ctx: BillingContext) -> None:
    ep = ctx.facts.episode
    if ep is None:
        return
    _progress_report(ctx, ep)
    _plan_of_care(ctx, ep)


def _progress_report(ctx: BillingContext, ep: EpisodeFacts) -> None:
    if ep.visit_number is None:
        return
    key = ep.id or ""
    interval = ctx.rules.documentation("progress_report_interval_visits")
    warn = ctx.rules.documentation("progress_report_warn_before_visits")
    last = ep.last_progress_report_visit or 0
    since = ep.visit_number - last
    since_what = "the last progress report" if ep.last_progress_report_visit else "the start of the episode"
    due_at = last + interval
    if since >= interval:
        ctx.flag(
            FLAG_PROGRESS_DUE,
            f"Progress report due at treatment day {due_at} of the episode (required at least every "
            f"{interval} "
            "treatment days).",
            RULE_PROGRESS,
            f"{key}@{due_at}",
        )
        ctx.action(
            A_PROGRESS_REPORT,
            f"Progress report due: treatment day {ep.visit_number} of the episode, {since} treatment days "
            "since "
            f"{since_what} (required at least every {interval} treatment days). The therapist (not an "
            "assistant) writes it.",
            RULE_PROGRESS,
            priority="urgent" if since > interval else "routine",
        )
    elif since >= interval - warn:
        ctx.flag(
            FLAG_PROGRESS_SOON,
            f"Progress report due at treatment day {due_at} of the episode (every {interval} treatment "
            "days).",
            RULE_PROGRESS,
            f"{key}@{due_at}",
        )


def _plan_of_care(ctx: BillingContext, ep: EpisodeFacts) -> None:
    on = ctx.on
    cert = ep.plan_of_care_certified or ep.start
    if cert is None or on is None:
        return
    key = ep.id or ""
    days = (on - cert).days
    interval = ctx.rules.documentation("poc_recert_interval_days")
    warn = ctx.rules.documentation("poc_recert_warn_before_days")
    basis = "certified" if ep.plan_of_care_certified else "started (certification date unknown)"
    if ep.plan_of_care_certified is None:
        ctx.finding(
            F_POC_CERT_UNKNOWN,
            "low",
            "Plan-of-care certification date not known; recertification timing counted from the episode "
            "start.",
            RULE_POC,
        )
    due = cert + timedelta(days=interval)
    if days >= interval:
        ctx.flag(
            FLAG_POC_OVERDUE,
            f"Plan of care {basis} on {cert.isoformat()}: recertification was due by {due.isoformat()}.",
            RULE_POC,
            f"{key}@{cert.isoformat()}",
        )
        ctx.action(
            A_POC_RECERT,
            f"Plan of care {basis} on {cert.isoformat()}, {days} days before this visit: the {interval}-day "
            "certification interval has ended; recertification is required. Obtain the physician/NPP's "
            "signed "
            "recertification.",
            RULE_POC,
            priority="urgent",
        )
    elif days >= interval - warn:
        ctx.flag(
            FLAG_POC_DUE,
            f"Plan of care {basis} on {cert.isoformat()}: recertification due by {due.isoformat()}.",
            RULE_POC,
            f"{key}@{cert.isoformat()}",
        )
        ctx.action(
            A_POC_RECERT,
            f"Plan of care {basis} on {cert.isoformat()}: recertification due within {interval - days} "
            "day(s) "
            f"(at most every {interval} days). Send the updated plan of care for signature.",
            RULE_POC,
        )
