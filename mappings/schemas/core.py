"""Schemas of the core tables (mappings/core/*.yaml): the billable code catalogue."""

from typing import Any, Literal

from mappings.loader import RowBase, Schema


class BillableCode(RowBase):
    code: str
    system: Literal["CPT", "HCPCS"]
    descriptor: str
    timed: bool
    discipline_modifier_required: bool = True  # "always therapy" codes need GP/GO/GN


SCHEMAS: dict[str, Schema[Any]] = {
    "billable_codes": Schema(row_model=BillableCode, key=("code",)),
}
