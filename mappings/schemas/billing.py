"""Schemas of the billing rule tables (mappings/billing/*.yaml).

Every value a billing rule depends on lives in one of these tables, dated and sourced. Values
marked [UNVERIFIED] or [SECONDARY] in billing-rules.md stay data with a ``note``; the engine
(integration.billing) never hard-codes them.

No field has a default: a row states every setting (``null`` / ``[]`` where there is none), so a
forgotten key is a load error, never a value chosen by code. Rules the engine needs on every date it
bills (the documentation intervals, the modifiers of each discipline) must be in force, without a gap,
from the first day of the ``default`` payer profile onwards -- checked at load time, so deleting one
fails ``ptbill mappings check`` instead of falling back to a number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from mappings.schemas.core import Discipline
from mappings.tables import RowBase, Schema, Tables, first_uncovered

UnitRule = Literal["CMS", "AMA"]
Confidence = Literal["PRIMARY", "SECONDARY", "UNVERIFIED"]


class PayerProfile(RowBase):
    """One payer's billing settings. ``kind`` drives Medicare-only rules (KX)."""

    profile: str
    label: str
    kind: Literal["medicare", "medicaid", "commercial", "default"]
    unit_rule: UnitRule
    kx_applies: bool
    kx_near_fraction: float | None = Field(gt=0, le=1)  # required (non-null) when kx_applies
    assistant_modifiers_required: bool
    # None: every billable code is covered; a list: only these codes are covered.
    covered_codes: list[str] | None
    not_covered_codes: list[str]
    # Timed + untimed units per date of service (e.g. Nevada PT34: 4); None = no cap.
    units_per_day_cap: int | None = Field(ge=1)
    timed_units_per_day_cap: int | None = Field(ge=1)
    visits_per_year_cap: int | None = Field(ge=1)
    prior_auth_codes: list[str]
    # Every covered code needs prior authorisation except these (None: use prior_auth_codes only).
    prior_auth_all_except: list[str] | None
    # Pairs the payer never pays on one date of service, whatever the modifier.
    same_day_exclusions: list[list[str]]
    # NCCI pairs this payer denies even with 59/X (appeal likely).
    denies_pair_even_with_59: list[list[str]]

    @field_validator("same_day_exclusions", "denies_pair_even_with_59")
    @classmethod
    def _pairs(cls, v: list[list[str]]) -> list[list[str]]:
        for pair in v:
            if len(pair) != 2:
                raise ValueError(f"each pair must have exactly two codes, got {pair!r}")
        return v

    @model_validator(mode="after")
    def _kx(self) -> PayerProfile:
        if self.kx_applies and self.kx_near_fraction is None:
            raise ValueError("kx_near_fraction is required when kx_applies is true")
        return self


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
    """A payer's rule for one code: report another code instead, treat it as bundled, or not covered.

    ``substitute`` rows are read in both directions of a pair: for 97014/G0283, Medicare's row says
    97014 -> G0283 and each other payer's row says which of the two it wants (G0283 -> 97014, or
    97014 -> G0283). The loader requires every payer profile to state its choice for every pair.
    """

    profile: str
    code: str
    action: Literal["substitute", "bundled", "not_covered"]
    replacement: str | None
    message: str

    @field_validator("replacement")
    @classmethod
    def _rep(cls, v: str | None) -> str | None:
        return v or None

    @model_validator(mode="after")
    def _replacement_for_substitute(self) -> PayerCodeRule:
        if (self.action == "substitute") != (self.replacement is not None):
            raise ValueError("replacement is required for 'substitute' rows and only for them")
        return self


class KxThreshold(RowBase):
    year: int
    bucket: Literal["PT_SLP", "OT"]
    amount: float = Field(gt=0)
    confidence: Confidence


class FeeScheduleRow(RowBase):
    """The clinic's configurable allowed amount per code (used only for the KX spend estimate)."""

    code: str
    allowed_amount: float = Field(ge=0)


class PtpSeedRow(RowBase):
    column1: str
    column2: str
    modifier_indicator: Literal[0, 1, 9]
    confidence: Confidence


class MueSeedRow(RowBase):
    code: str
    mue_value: int = Field(ge=0)
    mai: Literal[1, 2, 3]
    rationale: str
    confidence: Confidence


class DisciplineRole(RowBase):
    """A role/qualification/function coding that tells the discipline and assistant status."""

    system: str
    code: str
    discipline: Discipline | None  # None: the coding says "assistant" but not the discipline
    assistant: bool
    display: str


class DisciplineModifier(RowBase):
    discipline: Discipline
    therapy_modifier: Literal["GP", "GO", "GN"]
    assistant_modifier: Literal["CQ", "CO"] | None
    # Both required when assistant_modifier is set (null otherwise):
    de_minimis_fraction: float | None = Field(ge=0, le=1)
    # How the last, mixed unit of a timed code is decided when therapist and assistant both
    # contributed minutes to it: "de_minimis" (CQ when assistant > fraction of the unit) or
    # "majority" (CY2022 refinement: the unit follows whoever furnished more of its minutes,
    # and the assistant must still pass the de minimis test).
    final_unit_rule: Literal["de_minimis", "majority"] | None

    @model_validator(mode="after")
    def _assistant_settings(self) -> DisciplineModifier:
        has = self.assistant_modifier is not None
        if has != (self.de_minimis_fraction is not None) or has != (self.final_unit_rule is not None):
            raise ValueError(
                "de_minimis_fraction and final_unit_rule are required with an assistant_modifier "
                "and must be null without one"
            )
        return self


DocumentationRuleName = Literal[
    "progress_report_interval_visits",
    "progress_report_warn_before_visits",
    "poc_recert_interval_days",
    "poc_recert_warn_before_days",
    "max_units_97150",
    "cloned_min_words",
]


class DocumentationRule(RowBase):
    rule: DocumentationRuleName
    value: int = Field(ge=0)


# --- cross-table checks ---------------------------------------------------------------------------


def billing_window_start(tables: Tables) -> date | None:
    """First day billing rules cover: the earliest row of the ``default`` payer profile."""
    rows = [r for r in tables["payer_profiles"].rows if r.profile == "default"]
    return min((r.effective for r in rows), default=None)


def _profiles_exist(tables: Tables) -> Iterable[tuple[str, str]]:
    rows = tables["payer_profiles"].rows
    names = {r.profile for r in rows}
    start = billing_window_start(tables)
    if start is None:
        yield ("-", "payer_profiles needs a 'default' profile (used for unknown payers)")
    else:
        gap = first_uncovered([r for r in rows if r.profile == "default"], start)
        if gap is not None:
            yield ("profile='default'", f"the default profile has a gap from {gap} (every date needs one)")
    for tname in ("payer_match", "payer_code_rules"):
        if tname not in tables:
            continue
        for i, r in enumerate(tables[tname].rows):
            if r.profile not in names:
                yield (f"{tname} row {i + 1}", f"unknown payer profile {r.profile!r}")


def _substitution_choices(tables: Tables) -> Iterable[tuple[str, str]]:
    """Every payer profile states which code of each substitution pair it bills (no code-side default)."""
    rows = tables["payer_code_rules"].rows
    pairs = sorted({tuple(sorted((r.code, r.replacement))) for r in rows if r.action == "substitute"})
    by_profile: dict[str, set[str]] = {}
    for r in rows:
        by_profile.setdefault(r.profile, set()).add(r.code)
    for profile in sorted({p.profile for p in tables["payer_profiles"].rows}):
        for a, b in pairs:
            if not {a, b} & by_profile.get(profile, set()):
                yield (
                    f"profile={profile!r}",
                    f"no rule for the {a}/{b} pair: add '{a} -> {b}' or '{b} -> {a}' (which code this payer "
                    "wants is data, never a default)",
                )


def _covered_from_window(table: str, field: str, names: Iterable[str]) -> Callable[[Tables], Any]:
    def check(tables: Tables) -> Iterable[tuple[str, str]]:
        start = billing_window_start(tables) if "payer_profiles" in tables else None
        if start is None:
            return
        rows = tables[table].rows
        for name in names:
            gap = first_uncovered([r for r in rows if getattr(r, field) == name], start)
            if gap is not None:
                yield (
                    f"{field}={name!r}",
                    f"required rule not in force from {gap} (billing rules start {start}); the engine "
                    "never falls back to a default value",
                )

    return check


def _codes_known(table: str, fields: tuple[str, ...]) -> Callable[[Tables], Any]:
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


def _fee_for_every_code(tables: Tables) -> Iterable[tuple[str, str]]:
    yield from _codes_known("fee_schedule", ("code",))(tables)
    if "billable_codes" not in tables:
        return
    priced = {r.code for r in tables["fee_schedule"].rows}
    for code in sorted({r.code for r in tables["billable_codes"].rows} - priced):
        yield (f"code={code!r}", "billable code without a fee_schedule row (the KX estimate prices each)")


def _code_rules(tables: Tables) -> Iterable[tuple[str, str]]:
    yield from _codes_known("payer_code_rules", ("replacement",))(tables)
    yield from _substitution_choices(tables)


SCHEMAS: dict[str, Schema[Any]] = {
    "payer_profiles": Schema(row_model=PayerProfile, key=("profile",), crossref=_profiles_exist),
    "payer_match": Schema(row_model=PayerMatch, key=("kind", "value")),
    "payer_code_rules": Schema(row_model=PayerCodeRule, key=("profile", "code"), crossref=_code_rules),
    "kx_thresholds": Schema(row_model=KxThreshold, key=("year", "bucket")),
    "fee_schedule": Schema(row_model=FeeScheduleRow, key=("code",), crossref=_fee_for_every_code),
    "ncci_ptp_seed": Schema(row_model=PtpSeedRow, key=("column1", "column2")),
    "mue_seed": Schema(row_model=MueSeedRow, key=("code",)),
    "discipline_roles": Schema(row_model=DisciplineRole, key=("system", "code")),
    "discipline_modifiers": Schema(
        row_model=DisciplineModifier,
        key=("discipline",),
        crossref=_covered_from_window("discipline_modifiers", "discipline", get_args(Discipline)),
    ),
    "documentation_rules": Schema(
        row_model=DocumentationRule,
        key=("rule",),
        crossref=_covered_from_window("documentation_rules", "rule", get_args(DocumentationRuleName)),
    ),
}
