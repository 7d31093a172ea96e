"""Plain, frozen domain data. No FHIR models, Celery, HTTP or settings here.

Flow: FHIR JSON --(integration.fhir.extract)--> EncounterFacts --(integration.decide.decide)--> Decision
--(integration.fhir.writeback)--> transaction Bundle.

Everything is a frozen dataclass with tuples (hashable, safe to share between threads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Severity = Literal["high", "moderate", "low"]

# Code systems we read and write.
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
HCPCS_SYSTEMS = (
    "urn:oid:2.16.840.1.113883.6.285",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
)
HCPCS = HCPCS_SYSTEMS[1]
NUCC = "http://nucc.org/provider-taxonomy"
SOPT_SYSTEMS = ("https://nahdo.org/sopt", "urn:oid:2.16.840.1.113883.3.221.5")

UNSUPPORTED = "UNSUPPORTED"


@dataclass(frozen=True)
class Coding:
    system: str | None
    code: str | None
    display: str | None = None


# --- input facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformerRef:
    """One Procedure.performer entry: the actor reference and its function codings."""

    actor: str | None  # "Practitioner/123", "PractitionerRole/9", or None
    function: tuple[Coding, ...] = ()


@dataclass(frozen=True)
class Intervention:
    """One documented intervention: a Procedure, or one line of `ptbill classify` input."""

    id: str
    text: str = ""  # Procedure.code.text (or the classify input's text)
    codings: tuple[Coding, ...] = ()
    notes: tuple[str, ...] = ()  # Procedure.note[].text
    body_sites: tuple[str, ...] = ()  # bodySite text/display
    minutes: int | None = None  # from performedPeriod (end - start), None when unknown
    performed_start: str | None = None  # ISO datetime as documented
    performed_end: str | None = None
    performed_date: date | None = None
    status: str = "completed"
    version_id: str | None = None
    performers: tuple[PerformerRef, ...] = ()
    reasons: tuple[str, ...] = ()  # reasonCode text/display
    categories: tuple[Coding, ...] = ()
    group_size: int | None = None  # documented number of patients in the session, when known

    def full_text(self) -> str:
        """Everything a person wrote about this intervention, in one string."""
        parts = [self.text, *self.notes]
        return " . ".join(p for p in parts if p)


@dataclass(frozen=True)
class PractitionerFacts:
    """A performer: Practitioner and/or PractitionerRole, with their role/qualification codings."""

    reference: str  # "Practitioner/1" or "PractitionerRole/2"
    practitioner: str | None = None  # "Practitioner/1" (for a PractitionerRole, its practitioner)
    codes: tuple[Coding, ...] = ()  # PractitionerRole.code + specialty, Practitioner.qualification.code


@dataclass(frozen=True)
class CoverageFacts:
    id: str | None
    status: str | None = None
    type_codings: tuple[Coding, ...] = ()  # Coverage.type (SOPT etc.)
    payor_names: tuple[str, ...] = ()  # Coverage.payor display / Organization name
    payor_identifiers: tuple[str, ...] = ()  # "system|value"
    period_start: date | None = None
    period_end: date | None = None
    order: int | None = None  # Coverage.order (1 = primary)


@dataclass(frozen=True)
class PriorCharge:
    """A ChargeItem already on the server for the same patient (used for the KX spend estimate)."""

    code: str
    units: int
    date: date | None
    encounter: str | None = None
    status: str = "billable"
    written_by_ptbill: bool = False


@dataclass(frozen=True)
class PriorVisit:
    """An earlier visit of the same patient, kept PHI-minimal: its date and a hash of each Procedure's
    normalised documentation (integration/classify/cloned.py), never the text."""

    encounter: str | None  # "Encounter/123"
    date: date | None
    text_hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EpisodeFacts:
    """What is known of the episode of care this encounter belongs to (all optional)."""

    id: str | None = None
    start: date | None = None  # episode / plan-of-care start
    plan_of_care_certified: date | None = None  # date the current POC was certified
    visit_number: int | None = None  # this visit's ordinal within the episode
    last_progress_report_visit: int | None = None  # visit number of the last progress report


@dataclass(frozen=True)
class EncounterFacts:
    encounter_id: str
    status: str
    patient_id: str | None
    date_of_service: date | None
    interventions: tuple[Intervention, ...]
    version_id: str | None = None
    period_start: str | None = None
    period_end: str | None = None
    coverages: tuple[CoverageFacts, ...] = ()
    practitioners: tuple[PractitionerFacts, ...] = ()
    prior_charges: tuple[PriorCharge, ...] = ()
    prior_provider_spend: float = 0.0  # entered by a user (therapy spend at other providers this year)
    group_size: int | None = None
    documented_total_timed_minutes: int | None = None
    documented_total_treatment_minutes: int | None = None
    episode: EpisodeFacts | None = None
    input_problems: tuple[str, ...] = ()  # what extraction could not read (counted, never dropped)
    prior_visits: tuple[PriorVisit, ...] = ()  # the patient's earlier visits (copy-forward check, issue 8 §4)


# --- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    kind: Literal["phrase", "coding", "rule", "field"]
    value: str
    rule_id: str | None = None


@dataclass(frozen=True)
class Finding:
    """A documentation or billing gap. Becomes a DetectedIssue (and a Task when ``action`` says so)."""

    code: str  # stable, e.g. "DOC-97110-BODY-PART"
    severity: Severity
    message: str
    rule_id: str
    source: str
    procedure_ids: tuple[str, ...] = ()
    line_code: str | None = None


@dataclass(frozen=True)
class CodeShare:  # one code's part of an entry that documents several codes, each with its own minutes
    code: str
    minutes: int
    item_indexes: tuple[int, ...] = ()  # which documented items (Classification.items) it covers


@dataclass(frozen=True)
class DocumentedItem:
    """One documented item of an entry (integration.classify.segment): its span, its code and its evidence.

    ``start``/``end`` are character offsets in ``Intervention.full_text()`` (the ``text`` of a `ptbill
    classify` line). ``code`` is what the item documents on its own (UNSUPPORTED: nothing billable, e.g. a
    measurement or a deferred item). ``minutes`` are the item's own documented minutes, if any.
    """

    start: int
    end: int
    text: str
    code: str
    evidence: tuple[Evidence, ...] = ()
    alternatives: tuple[str, ...] = ()
    minutes: int | None = None
    heading: str | None = None  # the heading the item stands under ("Ther act"), if any


@dataclass(frozen=True)
class Classification:
    code: str  # CPT/HCPCS code or UNSUPPORTED
    alternatives: tuple[str, ...] = ()
    confidence: float = 0.0
    evidence: tuple[Evidence, ...] = ()
    findings: tuple[Finding, ...] = ()
    rule_ids: tuple[str, ...] = ()
    # A mixed entry with per-code minutes: billing makes one item per share (that code, those minutes, the
    # same Procedure, performers and period). Empty: the whole intervention is ``code``.
    shares: tuple[CodeShare, ...] = ()
    # The documented items the entry was decided from (integration.classify.entry); one item when the text
    # is not a list. Empty only when nothing was written.
    items: tuple[DocumentedItem, ...] = ()


@dataclass(frozen=True)
class ClassifiedIntervention:
    intervention: Intervention
    classification: Classification


@dataclass(frozen=True)
class Modifier:
    code: str  # GP, GO, GN, CQ, CO, KX, 59, XE, XS, XP, XU
    rule_id: str
    reason: str


@dataclass(frozen=True)
class BillingLine:
    code: str
    units: int
    date_of_service: date | None
    modifiers: tuple[Modifier, ...] = ()
    minutes: int | None = None  # timed minutes attributed to this code
    procedure_ids: tuple[str, ...] = ()
    performer_refs: tuple[str, ...] = ()
    unit_rule: str = "CMS"  # CMS | AMA | untimed
    timed: bool = True
    evidence: tuple[Evidence, ...] = ()
    rule_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionItem:
    """Something a person must do or attest. Written as a FHIR Task."""

    code: str  # stable, e.g. "ATTEST-59", "ATTEST-KX", "DOC-MINUTES"
    description: str
    rule_id: str
    source: str
    procedure_ids: tuple[str, ...] = ()
    line_code: str | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"


@dataclass(frozen=True)
class FlagItem:
    """A patient-level standing alert (KX threshold approaching, POC recert due). Written as a Flag."""

    code: str
    message: str
    rule_id: str
    source: str
    key: str = ""  # scope of the flag beyond the patient, e.g. the year "2026" or an episode id


@dataclass(frozen=True)
class Skipped:
    """An input the engine did not bill, with the reason (counted, never silently dropped)."""

    procedure_id: str
    reason: str  # e.g. "not-therapy", "status-not-completed", "unreadable"


@dataclass(frozen=True)
class Decision:
    encounter_id: str
    lines: tuple[BillingLine, ...] = ()
    classified: tuple[ClassifiedIntervention, ...] = ()
    findings: tuple[Finding, ...] = ()
    actions: tuple[ActionItem, ...] = ()
    flags: tuple[FlagItem, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    table_versions: tuple[tuple[str, str], ...] = field(default=())  # (table name, version)
    engine_version: str = ""
