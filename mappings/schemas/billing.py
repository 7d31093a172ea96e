"""Schemas of the billing rule tables (mappings/billing/*.yaml).

Every value a billing rule depends on lives in one of these tables, dated and sourced. Values
marked [UNVERIFIED] or [SECONDARY] in billing-rules.md stay data with a ``note``; the engine
(integration.billing) never hard-codes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from mappings.loader import RowBase, Schema

if TYPE_CHECKING:
    from mappings.loader import Tables

UnitRule = Literal["CMS", "AMA"]
Discipline = Literal["PT", "OT", "SLP"]


class PayerProfile(RowBase):
    """One payer's billing settings. ``kind`` drives Medicare-only rules (KX)."""

    profile: str
    label: str
    kind: Literal["medicare", "medicaid", "commercial", "default"]
    unit_rule: UnitRule = "CMS"
    kx_applies: bool = False
    kx_near_fraction: float | None = Field(default=None, gt=0, le=1)
    assistant_modifiers_required: bool = True
    # None: every billable code is covered; a list: only these codes are covered.
    covered_codes: list[str] | None = None
    not_covered_codes: list[str] = Field(default_factory=list)
    # Timed + untimed units per date of service (e.g. Nevada PT34: 4); None = no cap.
    units_per_day_cap: int | None = Field(default=None, ge=1)
    timed_units_per_day_cap: int | None = Field(default=None, ge=1)
    visits_per_year_cap: int | None = Field(default=None, ge=1)
    prior_auth_codes: list[str] = Field(default_factory=list)
    # Every covered code needs prior authorisation except these (None: use prior_auth_codes only).
    prior_auth_all_except: list[str] | None = None
    # Pairs the payer never pays on one date of service, whatever the modifier.
    same_day_exclusions: list[list[str]] = Field(default_factory=list)
    # NCCI pairs this payer denies even with 59/X (appeal likely).
    denies_pair_even_with_59: list[list[str]] = Field(default_factory=list)

    @field_validator("same_day_exclusions", "denies_pair_even_with_59")
    @classmethod
    def _pairs(cls, v: list[list[str]]) -> list[list[str]]:
        for pair in v:
            if len(pair) != 2:
                raise ValueError(f"each pair must have exactly two codes, got {pair!r}")
        return v


class PayerMatch(RowBase):
    """How a Coverage is mapped to a payer profile.

    ``kind``: ``sopt`` (Coverage.type code in the Source of Payment Typology, matched as a prefix,
    longest prefix wins), ``payor_name`` (case-insensitive substring of a payor display/name),
    ``payor_identifier`` (exact "system|value"). Precedence: identifier, then name, then SOPT.
    """

    kind: Literal["sopt", "payor_name", "payor_identifier"]
    value: str
    profile: str


class PayerCodeRule(RowBase):
    """A payer's rule for one code: substitute it, treat it as bundled, or not covered."""

    profile: str
    code: str
    action: Literal["substitute", "bundled", "not_covered"]
    replacement: str | None = None
    message: str

    @field_validator("replacement")
    @classmethod
    def _rep(cls, v: str | None) -> str | None:
        return v or None


class KxThreshold(RowBase):
    year: int
    bucket: Literal["PT_SLP", "OT"]
    amount: float = Field(gt=0)
    confidence: Literal["PRIMARY", "SECONDARY", "UNVERIFIED"]


class FeeScheduleRow(RowBase):
    """The clinic's configurable allowed amount per code (used only for the KX spend estimate)."""

    code: str
    allowed_amount: float = Field(ge=0)


class PtpSeedRow(RowBase):
    column1: str
    column2: str
    modifier_indicator: Literal[0, 1, 9]
    confidence: Literal["PRIMARY", "SECONDARY", "UNVERIFIED"]


class MueSeedRow(RowBase):
    code: str
    mue_value: int = Field(ge=0)
    mai: Literal[1, 2, 3]
    rationale: str = ""
    confidence: Literal["PRIMARY", "SECONDARY", "UNVERIFIED"]


class DisciplineRole(RowBase):
    """A role/qualification/function coding that tells the discipline and assistant status."""

    system: str
    code: str
    discipline: Discipline | None = None  # None: the coding says "assistant" but not the discipline
    assistant: bool = False
    display: str = ""


class DisciplineModifier(RowBase):
    discipline: Discipline
    therapy_modifier: Literal["GP", "GO", "GN"]
    assistant_modifier: Literal["CQ", "CO"] | None = None
    de_minimis_fraction: float = Field(default=0.10, ge=0, le=1)
    # How the last, mixed unit of a timed code is decided when therapist and assistant both
    # contributed minutes to it: "de_minimis" (CQ when assistant > fraction of the unit) or
    # "majority" (CY2022 refinement: the unit follows whoever furnished more of its minutes,
    # and the assistant must still pass the de minimis test).
    final_unit_rule: Literal["de_minimis", "majority"] = "majority"


class DocumentationRule(RowBase):
    rule: Literal[
        "progress_report_interval_visits",
        "progress_report_warn_before_visits",
        "poc_recert_interval_days",
        "poc_recert_warn_before_days",
        "max_units_97150",
    ]
    value: int = Field(ge=0)


def _profiles_exist(tables: Tables) -> Iterable[tuple[str, str]]:
    names = {r.profile for r in tables["payer_profiles"].rows}
    if "default" not in names:
        yield ("-", "payer_profiles needs a 'default' profile (used for unknown payers)")
    for tname in ("payer_match", "payer_code_rules"):
        if tname not in tables:
            continue
        for i, r in enumerate(tables[tname].rows):
            if r.profile not in names:
                yield (f"{tname} row {i + 1}", f"unknown payer profile {r.profile!r}")


def _codes_known(table: str, fields: tuple[str, ...]) -> Any:
    def check(tables: Tables) -> Iterable[tuple[str, str]]:
        known = {r.code for r in tables["billable_codes"].rows} if "billable_codes" in tables else set()
        if not known:
            return
        for i, r in enumerate(tables[table].rows):
            for f in fields:
                v = getattr(r, f)
                if v is not None and v not in known and not getattr(r, "note", None):
                    yield (f"row {i + 1}", f"{f} {v!r} is not in billable_codes (add a note if intended)")

    return check


SCHEMAS: dict[str, Schema[Any]] = {
    "payer_profiles": Schema(row_model=PayerProfile, key=("profile",), crossref=_profiles_exist),
    "payer_match": Schema(row_model=PayerMatch, key=("kind", "value")),
    "payer_code_rules": Schema(row_model=PayerCodeRule, key=("profile", "code")),
    "kx_thresholds": Schema(row_model=KxThreshold, key=("year", "bucket")),
    "fee_schedule": Schema(
        row_model=FeeScheduleRow, key=("code",), crossref=_codes_known("fee_schedule", ("code",))
    ),
    "ncci_ptp_seed": Schema(row_model=PtpSeedRow, key=("column1", "column2")),
    "mue_seed": Schema(row_model=MueSeedRow, key=("code",)),
    "discipline_roles": Schema(row_model=DisciplineRole, key=("system", "code")),
    "discipline_modifiers": Schema(row_model=DisciplineModifier, key=("discipline",)),
    "documentation_rules": Schema(row_model=DocumentationRule, key=("rule",)),
}
