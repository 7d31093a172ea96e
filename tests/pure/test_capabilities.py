"""Reading a CapabilityStatement: declared behaviours, conservative defaults for omitted elements."""

from __future__ import annotations

from integration.fhir.capabilities import read_capabilities

STATEMENT = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "software": {"name": "Example", "version": "1.2"},
    "rest": [
        {
            "mode": "server",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "resource": [
                {
                    "type": "ChargeItem",
                    "interaction": [{"code": "read"}, {"code": "update"}, {"code": "search-type"}],
                    "versioning": "versioned-update",
                    "updateCreate": True,
                    "conditionalUpdate": True,
                    "searchParam": [{"name": "identifier", "type": "token"}],
                },
                {"type": "Task", "interaction": [{"code": "create"}]},
            ],
        },
        {"mode": "client", "interaction": [{"code": "history-system"}]},
    ],
}


def test_declared_behaviours_are_read() -> None:
    caps = read_capabilities(STATEMENT)
    assert caps.r4 and caps.transaction and caps.batch
    assert caps.software == "Example 1.2"
    ci = caps.resource("ChargeItem")
    assert ci is not None and ci.versioned_update and ci.update_create and ci.conditional_update
    assert caps.supports("ChargeItem", "update") and not caps.supports("ChargeItem", "delete")
    assert caps.searchable("ChargeItem", "identifier") and caps.searchable("ChargeItem", "_lastUpdated")
    assert "history-system" not in caps.system_interactions  # client-mode entries are not the server's


def test_omitted_elements_read_conservatively() -> None:
    caps = read_capabilities(STATEMENT)
    task = caps.resource("Task")
    assert task is not None
    assert not task.versioned_update and not task.update_create and not task.conditional_create
    assert not caps.searchable("Task", "identifier")
    assert caps.resource("Flag") is None and not caps.searchable("Flag", "_id")


def test_garbage_is_not_a_crash() -> None:
    caps = read_capabilities({"rest": "nonsense", "fhirVersion": 3})
    assert caps.fhir_version is None and not caps.transaction and dict(caps.resources) == {}
