"""The billing rules in force on one date of service, as typed rows (``BillingRules.as_of(tables, on)``).

Every lookup returns a schema row (``mappings.schemas.*``), so mypy checks the fields a step reads and
jump-to-definition lands on the schema. Two kinds of lookup:

* optional rows, where absence means something (no payer rule for a code, no KX threshold for a year,
  a code not in the catalogue): ``None`` / a missing key, and the step says what it did about it;
* required rules (a discipline's modifiers, the documentation intervals): ``discipline_modifier()`` and
  ``documentation()`` raise ``MissingRuleError`` naming the table, the key and the date. The loader
  already refuses tables with such a gap (mappings/schemas/billing.py), so this is a backstop, never a
  fallback value.

``on=None`` (date of service unknown) uses the latest row per key (``mappings.tables.AsOf``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from mappings.schemas.billing import (
    DisciplineModifier,
    DisciplineRole,
    DocumentationRule,
    DocumentationRuleName,
    FeeScheduleRow,
    KxThreshold,
    MueSeedRow,
    PayerCodeRule,
    PayerMatch,
    PayerProfile,
    PtpSeedRow,
)
from mappings.schemas.core import BillableCode, Discipline
from mappings.tables import AsOf, Tables


@dataclass(frozen=True)
class BillingRules:
    on: date | None
    view: AsOf
    profiles: Mapping[str, PayerProfile]
    matches: tuple[PayerMatch, ...]
    codes: Mapping[str, BillableCode]
    code_rules: Mapping[tuple[str, str], PayerCodeRule]  # (profile, code) -> rule
    roles: Mapping[tuple[str | None, str | None], DisciplineRole]  # (system, code) -> role
    fees: Mapping[str, float]  # code -> allowed amount per unit
    kx_thresholds: Mapping[tuple[int, str], KxThreshold]  # (year, bucket) -> threshold
    ptp_seed: tuple[PtpSeedRow, ...]
    mue_seed: Mapping[str, MueSeedRow]

    @classmethod
    def as_of(cls, tables: Tables, on: date | None) -> BillingRules:
        key = (id(tables), on)
        with _LOCK:
            hit = _CACHE.get(key)
        if hit is not None and hit[0] is tables:
            return hit[1]
        view = tables.as_of(on)
        rules = cls(
            on=on,
            view=view,
            profiles={r.profile: r for r in view.rows(PayerProfile)},
            matches=view.rows(PayerMatch),
            codes={r.code: r for r in view.rows(BillableCode)},
            code_rules={(r.profile, r.code): r for r in view.rows(PayerCodeRule)},
            roles={(r.system, r.code): r for r in view.rows(DisciplineRole)},
            fees={r.code: r.allowed_amount for r in view.rows(FeeScheduleRow)},
            kx_thresholds={(r.year, r.bucket): r for r in view.rows(KxThreshold)},
            ptp_seed=view.rows(PtpSeedRow),
            mue_seed={r.code: r for r in view.rows(MueSeedRow)},
        )
        with _LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = (tables, rules)
        return rules

    def discipline_modifier(self, discipline: Discipline) -> DisciplineModifier:
        """GP/GO/GN and CQ/CO settings of a discipline (required: raises MissingRuleError when absent)."""
        return self.view.one(DisciplineModifier, discipline=discipline)

    def documentation(self, rule: DocumentationRuleName) -> int:
        """A documentation interval or limit (required: raises MissingRuleError when absent)."""
        return self.view.one(DocumentationRule, rule=rule).value


# One BillingRules per (tables, date): building the indexes is cheap, but a sync bills thousands of
# encounters on a handful of dates.
_CACHE: dict[tuple[int, date | None], tuple[Tables, BillingRules]] = {}
_CACHE_MAX = 64
_LOCK = threading.Lock()
