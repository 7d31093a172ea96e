"""Choosing how to write to a server from its CapabilityStatement, and cutting a plan into its Bundles."""

from __future__ import annotations

from typing import Any

import pytest

from integration.errors import ConfigError
from integration.fhir.capabilities import read_capabilities
from integration.fhir.write_strategy import WriteStrategy, choose_strategy, documented_limits, fits, steps
from integration.fhir.writeback import LOCAL_REF, Write

TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")


def statement(
    *,
    update_create: bool,
    versioning: str = "versioned-update",
    conditional_create: bool = True,
    system: tuple[str, ...] = ("transaction", "batch"),
    types: tuple[str, ...] = TYPES,
    doc: str = "",
) -> dict[str, Any]:
    res = [
        {
            "type": t,
            "interaction": [{"code": c} for c in ("read", "vread", "update", "create", "search-type")],
            "versioning": versioning,
            "updateCreate": update_create,
            "conditionalCreate": conditional_create,
            "conditionalUpdate": True,
            "searchParam": [{"name": "identifier", "type": "token"}, {"name": "_tag", "type": "token"}],
        }
        for t in types
    ]
    inter = [{"code": c, **({"documentation": doc} if c == "transaction" else {})} for c in system]
    return {"fhirVersion": "4.0.1", "rest": [{"mode": "server", "resource": res, "interaction": inter}]}


def test_auto_picks_id_mode_where_create_by_put_is_allowed():
    s = choose_strategy(read_capabilities(statement(update_create=True)))
    assert (s.mode, s.versioned, s.atomic) == ("id", True, True)


def test_auto_picks_conditional_mode_and_batches_on_a_server_with_server_ids_only():
    s = choose_strategy(read_capabilities(statement(update_create=False, system=("batch",))))
    assert (s.mode, s.atomic, s.conditional_create) == ("conditional", False, True)
    assert "batch" in s.describe()


def test_the_old_mode_values_still_work_and_are_checked():
    caps = read_capabilities(statement(update_create=True))
    assert choose_strategy(caps, "conditional").mode == "conditional"
    with pytest.raises(ConfigError, match="updateCreate"):
        choose_strategy(read_capabilities(statement(update_create=False)), "id")


def test_a_server_that_cannot_take_writes_is_refused_naming_what_is_missing():
    with pytest.raises(ConfigError, match="conditional create") as e:
        choose_strategy(read_capabilities(statement(update_create=False, conditional_create=False)))
    assert "duplicates" in str(e.value)
    with pytest.raises(ConfigError, match="transaction or batch"):
        choose_strategy(read_capabilities(statement(update_create=True, system=())))


def test_without_versioned_update_the_strategy_says_it_reads_back():
    s = choose_strategy(read_capabilities(statement(update_create=True, versioning="versioned")))
    assert not s.versioned and "read-back" in s.describe()


def test_types_the_statement_leaves_out_are_judged_by_the_listed_ones():
    caps = read_capabilities(
        statement(update_create=True, types=("ChargeItem", "Task", "Flag", "Provenance"))
    )
    assert choose_strategy(caps).mode == "id"  # sekmet serves DetectedIssue without listing it


def test_documented_transaction_limits_are_read_and_the_setting_wins():
    doc = (
        "Atomic. Limits: a transaction holding a conditional entry (If-None-Exist create, conditional update "
        "or delete) may have at most 8 entries; at most 50 update (PUT) entries; over a limit is refused."
    )
    st = statement(update_create=False, doc=doc)
    limits = documented_limits(st)
    assert limits == {"max_conditional_entries": 8, "max_updates": 50}
    s = choose_strategy(read_capabilities(st), documented=limits)
    assert (s.max_conditional_entries, s.max_updates, s.max_entries) == (8, 50, 0)
    s = choose_strategy(read_capabilities(st), max_entries=20, documented=limits)
    assert (s.max_entries, s.max_conditional_entries) == (20, 0)
    assert documented_limits(statement(update_create=True)) == {}


def w(kind: str, rtype: str, ident: str, refs: tuple[str, ...] = ()) -> Write:
    body: dict[str, Any] = {"resourceType": rtype}
    if refs:
        body["implicated"] = [{"reference": LOCAL_REF + r} for r in refs]
    return Write(kind, rtype, ident, body, None if kind == "create" else "id-" + ident, "1")  # type: ignore[arg-type]


def test_one_atomic_transaction_when_it_fits():
    writes = [w("create", "ChargeItem", "ci-1"), w("create", "DetectedIssue", "di-1", ("ci-1",))]
    assert steps(writes, WriteStrategy(mode="conditional"), []) == [writes]


def test_batches_put_references_to_new_charge_items_in_a_later_bundle():
    writes = [
        w("create", "ChargeItem", "ci-1"),
        w("create", "DetectedIssue", "di-1", ("ci-1",)),
        w("update", "Task", "task-1", ("ci-0",)),
    ]
    out = steps(writes, WriteStrategy(mode="conditional", atomic=False), ["ci-0"])
    assert [[x.identifier for x in s] for s in out] == [["ci-1", "task-1"], ["di-1"]]


def test_limits_cut_bundles():
    s = WriteStrategy(mode="conditional", max_conditional_entries=3, max_updates=2)
    creates = [w("create", "ChargeItem", f"ci-{i}") for i in range(5)]
    out = steps(creates, s, [])
    assert [len(x) for x in out] == [3, 2]
    assert all(fits(x, s) for x in out)
    assert not fits(out[0], s, extra_conditional=1)  # no room for a conditional Provenance
    updates = [w("update", "Task", f"t-{i}") for i in range(5)]
    assert [len(x) for x in steps(updates, s, [])] == [2, 2, 1]
