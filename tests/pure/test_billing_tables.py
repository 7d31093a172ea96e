"""The billing rule tables: typed lookups as of a date, and no value decided by a default in code.

Each case copies the shipped core + billing tables, breaks one thing, and loads them with exactly those
schemas (``load_tables(dir, schemas)``): the loader must refuse, naming the table and the rule. The
engine's own backstop (a required rule missing on the date) raises MissingRuleError, never a number.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.billing import bill
from integration.billing.rules import BillingRules
from integration.errors import MappingTableError
from integration.model import (
    Classification,
    ClassifiedIntervention,
    EncounterFacts,
    EpisodeFacts,
    Intervention,
)
from mappings.loader import MAPPINGS_DIR, load_tables
from mappings.schemas import ALL_SCHEMAS
from mappings.schemas import billing as billing_schemas
from mappings.schemas import core as core_schemas
from mappings.schemas.billing import DisciplineModifier, DocumentationRule, PayerProfile
from mappings.schemas.core import BillableCode
from mappings.tables import MissingRuleError, Tables

SCHEMAS = {**core_schemas.SCHEMAS, **billing_schemas.SCHEMAS}
DOS = date(2026, 3, 2)


def copy_tables(root: Path) -> Path:
    for sub in ("core", "billing"):
        (root / sub).mkdir(parents=True)
        for f in (MAPPINGS_DIR / sub).glob("*.yaml"):
            shutil.copy(f, root / sub / f.name)
    return root


def edit(root: Path, rel: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / rel
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def drop_rows(pred: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["rows"] = [r for r in doc["rows"] if not pred(r)]

    return change


def edit_rows(
    pred: Callable[[dict[str, Any]], bool], fn: Callable[[dict[str, Any]], None]
) -> Callable[..., None]:
    def change(doc: dict[str, Any]) -> None:
        for r in doc["rows"]:
            if pred(r):
                fn(r)

    return change


BROKEN = [
    (
        "progress-report row deleted",
        "billing/documentation_rules.yaml",
        drop_rows(lambda r: r["rule"] == "progress_report_interval_visits"),
        "progress_report_interval_visits",
    ),
    (
        "POC recertification row ends early",
        "billing/documentation_rules.yaml",
        edit_rows(
            lambda r: r["rule"] == "poc_recert_interval_days", lambda r: r.update(expires="2025-12-31")
        ),
        "not in force from 2026-01-01",
    ),
    (
        "SLP modifiers deleted",
        "billing/discipline_modifiers.yaml",
        drop_rows(lambda r: r["discipline"] == "SLP"),
        "discipline='SLP'",
    ),
    (
        "de minimis fraction left out",
        "billing/discipline_modifiers.yaml",
        edit_rows(lambda r: r.get("assistant_modifier") == "CQ", lambda r: r.pop("de_minimis_fraction")),
        "de_minimis_fraction",
    ),
    (
        "a payer profile without its unit rule",
        "billing/payer_profiles.yaml",
        edit_rows(lambda r: r["profile"] == "commercial", lambda r: r.pop("unit_rule")),
        "unit_rule",
    ),
    (
        "KX without a near fraction",
        "billing/payer_profiles.yaml",
        edit_rows(lambda r: r["profile"] == "medicare", lambda r: r.update(kx_near_fraction=None)),
        "kx_near_fraction",
    ),
    (
        "a payer without its e-stim code choice",
        "billing/payer_code_rules.yaml",
        drop_rows(lambda r: r["profile"] == "commercial" and r["code"] == "G0283"),
        "97014/G0283",
    ),
    (
        "a substitution without its replacement",
        "billing/payer_code_rules.yaml",
        edit_rows(
            lambda r: r["code"] == "97014" and r["profile"] == "medicare",
            lambda r: r.update(replacement=None),
        ),
        "replacement",
    ),
    ("a code without a fee", "billing/fee_schedule.yaml", drop_rows(lambda r: r["code"] == "97533"), "97533"),
    (
        "an add-on of an unknown primary",
        "core/billable_codes.yaml",
        edit_rows(lambda r: r["code"] == "97130", lambda r: r.update(add_on_to="97999")),
        "add_on_to",
    ),
    (
        "a code without its category",
        "core/billable_codes.yaml",
        edit_rows(lambda r: r["code"] == "97150", lambda r: r.pop("category")),
        "category",
    ),
    (
        "no default payer profile",
        "billing/payer_profiles.yaml",
        drop_rows(lambda r: r["profile"] == "default"),
        "default",
    ),
]


@pytest.mark.parametrize(("case", "rel", "change", "named"), BROKEN, ids=[b[0] for b in BROKEN])
def test_loader_refuses_a_missing_or_defaulted_rule(
    tmp_path: Path, case: str, rel: str, change: Callable[[dict[str, Any]], None], named: str
):
    root = copy_tables(tmp_path)
    edit(root, rel, change)
    with pytest.raises(MappingTableError) as e:
        load_tables(root, schemas=SCHEMAS)
    assert named in str(e.value)


def test_load_tables_checks_only_the_schemas_it_is_given(tmp_path: Path):
    root = copy_tables(tmp_path)
    t = load_tables(root, schemas=SCHEMAS)
    assert set(t.tables) == set(SCHEMAS)
    with pytest.raises(MappingTableError, match="no schema given for table 'kx_thresholds'"):
        load_tables(root, schemas=core_schemas.SCHEMAS)
    with pytest.raises(MappingTableError, match="required table 'classify_rules' has no file"):
        load_tables(root, schemas=ALL_SCHEMAS)


@pytest.fixture(scope="module")
def tables(billing_tables: Tables) -> Tables:
    return billing_tables


def test_as_of_returns_typed_rows_in_force(tables: Tables):
    view = tables.as_of(DOS)
    profiles = view.rows(PayerProfile)
    assert profiles and all(isinstance(p, PayerProfile) for p in profiles)
    assert view.one(PayerProfile, profile="medicare").unit_rule == "CMS"
    assert view.one(DocumentationRule, rule="progress_report_interval_visits").value == 10
    assert view.find(BillableCode, code="99999") is None
    # before 2020 the PT row has no assistant modifier; unknown date: the latest row per key
    assert tables.as_of(date(2019, 6, 1)).one(DisciplineModifier, discipline="PT").assistant_modifier is None
    assert tables.as_of(None).one(DisciplineModifier, discipline="PT").assistant_modifier == "CQ"


def test_missing_rule_names_the_table_key_and_date(tables: Tables):
    with pytest.raises(MissingRuleError) as e:
        tables.as_of(date(2009, 5, 4)).one(DocumentationRule, rule="poc_recert_interval_days")
    msg = str(e.value)
    assert "documentation_rules" in msg and "poc_recert_interval_days" in msg and "2009-05-04" in msg
    assert e.value.table == "documentation_rules" and e.value.on == date(2009, 5, 4)


def _without(tables: Tables, name: str, pred: Callable[[Any], bool]) -> Tables:
    t = tables[name]
    return Tables(
        {**tables.tables, name: dataclasses.replace(t, rows=tuple(r for r in t.rows if not pred(r)))}
    )


def test_engine_raises_instead_of_falling_back(tables: Tables):
    """A required rule missing at run time (tables built around the loader) stops the bill with the rule's
    name; nothing quietly uses 10."""
    broken = _without(tables, "documentation_rules", lambda r: r.rule == "progress_report_interval_visits")
    itv = Intervention(id="a", minutes=20)
    facts = EncounterFacts(
        "enc-x", "finished", "pat", DOS, (itv,), episode=EpisodeFacts(id="ep", visit_number=10)
    )
    ci = (ClassifiedIntervention(itv, Classification(code="97110")),)
    assert bill(facts, ci, tables).flags  # the shipped tables: a progress-report flag
    with pytest.raises(MissingRuleError, match="progress_report_interval_visits"):
        bill(facts, ci, broken)


def test_billing_rules_are_cached_per_tables_and_date(tables: Tables):
    assert BillingRules.as_of(tables, DOS) is BillingRules.as_of(tables, DOS)
    assert BillingRules.as_of(tables, DOS) is not BillingRules.as_of(tables, date(2026, 3, 3))


def test_schemas_never_import_the_loader():
    """The loader <- schemas direction only: row models import mappings.tables, never mappings.loader."""
    import ast

    for path in [*sorted((MAPPINGS_DIR / "schemas").glob("*.py")), MAPPINGS_DIR / "tables.py"]:
        tree = ast.parse(path.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "mappings.loader" not in mods, path
