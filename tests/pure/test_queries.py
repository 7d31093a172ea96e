"""The sync's reads without a server: window, server clock, run limits, paging checks, capability checks.

A small fake stands in for the FHIR client (``search`` yields scripted pages, ``get`` answers counts and
the clock probe); the HTTP behaviour itself is tested in tests/client, the whole path in tests/integration.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integration.claim import Group
from integration.errors import FhirTemporaryError, InputError
from integration.fhir.capabilities import change_detection, check_server, read_capabilities, refusal, warnings
from integration.fhir.queries import (
    ReadStats,
    RunLimitExceeded,
    ServerClockUnknown,
    TruncatedSearch,
    context_requests,
    fix_window,
    iso,
    pages,
    server_now,
)
from integration.settings import Settings
from tests.capability_statements import complete

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


class FakeClient:
    base_url = "http://emr.test/fhir"
    page_size = 100

    def __init__(
        self,
        pages: list[dict[str, Any]] | None = None,
        counts: list[int | None] | None = None,
        probe: dict[str, Any] | Exception | None = None,
        date: datetime | None = None,
    ):
        self._pages = pages or []
        self._counts = list(counts or [])
        self._probe = probe
        self._date = date
        self.gets: list[list[tuple[str, str]]] = []

    def search(self, rtype: str, params: Any) -> Iterator[dict[str, Any]]:
        yield from self._pages

    def get(self, path: str, params: Any = None) -> dict[str, Any]:
        self.gets.append(list(params or []))
        if self._counts:
            n = self._counts.pop(0)
            return {"resourceType": "Bundle", **({"total": n} if n is not None else {})}
        if isinstance(self._probe, Exception):
            raise self._probe
        return self._probe or {"resourceType": "Bundle"}

    def server_clock(self) -> datetime | None:
        return self._date


def page(n: int, total: int | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Encounter", "id": f"e{i}"}, "search": {"mode": "match"}}
            for i in range(n)
        ]
        + [{"resource": {"resourceType": "Patient", "id": "p"}, "search": {"mode": "include"}}],
    }
    if total is not None:
        b["total"] = total
    return b


# --- the window and the server's clock -------------------------------------------------------------------


def test_until_is_the_server_clock_minus_the_lag_and_a_later_until_is_clamped():
    since, until = fix_window("2026-03-01T00:00:00Z", None, T0, 2)
    assert (since, until) == ("2026-03-01T00:00:00Z", "2026-03-02T11:59:58.000Z")
    _, clamped = fix_window("2026-03-01T00:00:00Z", "2030-01-01T00:00:00Z", T0, 0)
    assert clamped == iso(T0)
    _, kept = fix_window("2026-03-01T00:00:00Z", "2026-03-01T06:00:00Z", T0, 0)
    assert kept == "2026-03-01T06:00:00.000Z"


def test_since_after_until_is_refused_with_a_clear_error():
    with pytest.raises(InputError, match=r"since 2026-03-03T00:00:00\.000Z is after until"):
        fix_window("2026-03-03T00:00:00Z", None, T0, 0)  # a watermark in the server's future
    with pytest.raises(InputError, match="not an ISO instant"):
        fix_window("yesterday", None, T0, 0)


def test_server_clock_prefers_the_bundle_stamp_when_it_agrees_with_the_date_header():
    probe = {"resourceType": "Bundle", "meta": {"lastUpdated": "2026-03-02T12:00:00.750Z"}}
    assert server_now(FakeClient(probe=probe, date=T0)) == T0 + timedelta(milliseconds=750)
    # a stamp far from the Date header (a cached search, a broken server) is not trusted
    odd = {"resourceType": "Bundle", "meta": {"lastUpdated": "2026-03-05T00:00:00Z"}}
    assert server_now(FakeClient(probe=odd, date=T0)) == T0


def test_server_clock_from_the_date_header_when_the_probe_fails(caplog):
    client = FakeClient(probe=FhirTemporaryError("probe failed", status=503), date=T0)
    with caplog.at_level("WARNING"):
        assert server_now(client) == T0  # never the local clock
    assert any("disagree" in r.getMessage() for r in caplog.records)  # T0 is months from now


def test_no_server_clock_at_all_refuses_the_run():
    with pytest.raises(ServerClockUnknown, match="did not say what time it is"):
        server_now(FakeClient(probe=FhirTemporaryError("down", status=503), date=None))


# --- bounded, total-independent paging ---------------------------------------------------------------


def test_page_cap_stops_the_run():
    stats = ReadStats(max_pages=2)
    client = FakeClient(pages=[page(1)] * 5)
    with pytest.raises(RunLimitExceeded, match="PTBILL_MAX_PAGES") as e:
        list(pages(client, "Encounter", [], stats))  # type: ignore[arg-type]
    assert e.value.kind == "page-cap" and stats.pages == 3


def test_deadline_stops_the_run():
    stats = ReadStats(deadline=0.0)  # long past
    with pytest.raises(RunLimitExceeded, match="PTBILL_SYNC_DEADLINE") as e:
        list(pages(FakeClient(pages=[page(1)]), "Encounter", [], stats))  # type: ignore[arg-type]
    assert e.value.kind == "deadline"


def test_paging_does_not_depend_on_total():
    client = FakeClient(pages=[page(3), page(2)])  # no total anywhere
    got = list(pages(client, "Encounter", [], ReadStats()))  # type: ignore[arg-type]
    assert len(got) == 2 and client.gets == []


def test_total_promising_more_than_the_pages_held_fails():
    client = FakeClient(pages=[page(3, total=10)], counts=[10])
    with pytest.raises(TruncatedSearch, match=r"total says 10 match.*held 3.*re-count says 10"):
        list(pages(client, "Encounter", [("status", "finished"), ("_include", "x")], ReadStats()))  # type: ignore[arg-type]
    assert ("_include", "x") not in client.gets[0] and ("_summary", "count") in client.gets[0]


def test_entries_that_left_the_window_meanwhile_are_not_truncation():
    client = FakeClient(pages=[page(3, total=4)], counts=[3])  # one left while we paged
    assert len(list(pages(client, "Encounter", [], ReadStats()))) == 1  # type: ignore[arg-type]


# --- performers are read by search -------------------------------------------------------------------


def test_practitioner_role_is_searched_with_include_not_read():
    proc = {
        "resourceType": "Procedure",
        "id": "p1",
        "performer": [{"actor": {"reference": "PractitionerRole/r1"}}],
    }
    group = Group({"resourceType": "Encounter", "id": "e1"}, {"Procedure/p1": proc})
    urls = [u for _, u in context_requests([group], set())]
    assert urls == ["PractitionerRole?_id=r1&_include=PractitionerRole:practitioner"]


# --- what the server must support ---------------------------------------------------------------------


def statement(**kw: Any) -> dict[str, Any]:
    return complete(**kw)


def test_a_complete_server_gets_id_writes():
    caps = read_capabilities(statement())
    assert check_server(caps, Settings.from_env({})) == ("id", [])


def test_no_create_by_put_chooses_conditional_by_default_but_not_over_an_explicit_mode():
    caps = read_capabilities(statement(update_create=False))
    assert check_server(caps, Settings.from_env({})) == ("conditional", [])
    strategy, problems = check_server(caps, Settings.from_env({"PTBILL_WRITE_MODE": "id"}))
    assert strategy == "id" and "ChargeItem updateCreate (create by PUT with ptbill's ids)" in problems


def test_missing_pieces_are_named_in_one_message():
    caps = read_capabilities(statement(version="3.0.2", without=("Procedure",)))
    strategy, problems = check_server(caps, Settings.from_env({}))
    assert "FHIR version 3.0.2 (ptbill needs R4, 4.0.x)" in problems
    assert "Procedure (not in the CapabilityStatement)" in problems
    line = refusal("http://emr.test/fhir", strategy, problems)
    assert line.count("\n") == 0 and "FHIR version 3.0.2" in line and "Procedure (not in" in line


def test_an_undeclared_output_type_is_a_warning_not_a_refusal():
    caps = read_capabilities(statement(without=("DetectedIssue",)))
    assert check_server(caps, Settings.from_env({})) == ("id", [])
    assert any("DetectedIssue is not in the CapabilityStatement" in w for w in warnings(caps))


def test_without_history_deletions_and_moves_are_not_followed_and_say_so():
    caps = read_capabilities(statement(interactions=("read", "update", "create", "search-type")))
    assert check_server(caps, Settings.from_env({})) == ("id", [])
    assert change_detection(caps) == {"deletions": False, "moves": False}
    said = " ".join(warnings(caps))
    assert "deleted Procedures are not detected" in said and "history-instance" in said
