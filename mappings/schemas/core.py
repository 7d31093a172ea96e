"""Schemas of the core tables (mappings/core/*.yaml): the billable code catalogue and its categories.

Every column is required (no schema default stands in for a value a row forgot): what the billing
engine knows about a code -- timed or untimed, its category, the plans of care it is billed under,
whether it is an "always" or "sometimes" therapy code, add-on/primary pairs -- is read from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import field_validator

from mappings.tables import RowBase, Schema, Tables

Discipline = Literal["PT", "OT", "SLP"]
# evaluation: evaluations and re-evaluations (written by the therapist, never an assistant);
# group: group therapy (untimed, one per session, separate from one-on-one time); modality: supervised or
# constant-attendance modalities; manual: manual therapy techniques; procedure: every other therapeutic
# procedure.
CodeCategory = Literal["evaluation", "group", "modality", "manual", "procedure"]
TherapyList = Literal["always", "sometimes"]


class BillableCode(RowBase):
    code: str
    system: Literal["CPT", "HCPCS"]
    descriptor: str
    timed: bool  # 15-minute units pooled under the unit rule; False: one unit per session
    category: CodeCategory
    # Plans of care the code is billed under (GP/GO/GN from the discipline). The first is used when the
    # performer's discipline cannot be read (a finding says so); a performer of another discipline is a
    # finding, and the code's first discipline is kept.
    disciplines: tuple[Discipline, ...]
    # CMS therapy code list: "always" therapy codes always carry GP/GO/GN; "sometimes" therapy codes carry
    # it when a therapist furnishes them under a therapy plan of care (performer's discipline known).
    therapy_list: TherapyList
    add_on_to: str | None  # an add-on code: billed only with this primary code on the same date
    additional_units_code: str | None  # a primary billed once: units beyond the first go to this add-on

    @field_validator("disciplines")
    @classmethod
    def _disciplines(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("disciplines must list one or more distinct disciplines")
        return v


def _code_links(tables: Tables) -> Iterable[tuple[str, str]]:
    rows = tables["billable_codes"].rows
    by_code: dict[str, list[Any]] = {}
    for r in rows:
        by_code.setdefault(r.code, []).append(r)
    for i, r in enumerate(rows):
        label = f"row {i + 1} (code={r.code!r})"
        if r.add_on_to is not None:
            primary = by_code.get(r.add_on_to)
            if not primary:
                yield label, f"add_on_to {r.add_on_to!r} is not a billable code"
            elif any(p.timed != r.timed for p in primary):
                yield label, f"add-on {r.code} and its primary {r.add_on_to} must both be timed or untimed"
        if r.additional_units_code is not None:
            add_on = by_code.get(r.additional_units_code)
            if not add_on or any(a.add_on_to != r.code for a in add_on):
                yield (
                    label,
                    (
                        f"additional_units_code {r.additional_units_code!r} must be a billable add-on code "
                        f"whose add_on_to is {r.code!r}"
                    ),
                )


SCHEMAS: dict[str, Schema[Any]] = {
    "billable_codes": Schema(row_model=BillableCode, key=("code",), crossref=_code_links),
}
