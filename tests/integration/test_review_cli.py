"""Results a person can read, as real processes: ``ptbill show`` and ``ptbill report`` against a real FHIR
server that ptbill synced, the HTML report rendered in headless Chromium, and ``ptbill demo``.

Chromium (Debian's ``chromium``; ``scripts/test.sh`` installs it when missing) loads the report with a
check script appended to a copy of the page; the script measures what was laid out (charts with bars of
non-zero width, tables with rows) and which resources were fetched (none), and Chromium's ``--dump-dom``
hands the figures back. A screenshot is kept next to the report for a person to look at.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.fhir.client import FhirClient
from integration.fhir.writeback import ENCOUNTER_TAG, PTBILL_TAG
from ptbill_demo.embedded import SekmetServer
from tests.integration.support import env_for, ptbill, seed

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CHECK_SCRIPT = """
<script>
(function () {
  const charts = [...document.querySelectorAll('svg.chart')].map(function (s) {
    const r = s.getBoundingClientRect();
    const bars = [...s.querySelectorAll('rect')].filter(b => b.getBoundingClientRect().width > 0).length;
    const labels = [...s.querySelectorAll('text')].map(t => t.textContent);
    return {id: s.id, width: r.width, height: r.height, bars: bars, labels: labels};
  });
  const tables = [...document.querySelectorAll('table')].map(function (t) {
    return {id: t.id, rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
            height: t.getBoundingClientRect().height,
            headers: [...t.querySelectorAll('th')].map(h => h.textContent.trim())};
  });
  const fetched = performance.getEntriesByType('resource').map(e => e.name);
  const out = document.createElement('pre');
  out.id = 'ptbill-check';
  out.textContent = JSON.stringify({charts: charts, tables: tables, fetched: fetched, title: document.title});
  document.body.appendChild(out);
})();
</script>
"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it when run as root)")
    return path


def render(page: Path, tmp: Path) -> dict[str, Any]:
    """Open ``page`` (with the check script appended to a copy) in headless Chromium; the measurements."""
    probe = tmp / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), "utf-8")
    profile = tmp / "chromium-profile"
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2000"]
    dom = subprocess.run(
        [*cmd, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    m = re.search(r'<pre id="ptbill-check">(.*?)</pre>', dom.stdout, re.S)
    assert m, f"Chromium did not run the page (rc {dom.returncode}): {dom.stderr[-800:]}"
    shot = page.with_suffix(".png")
    subprocess.run(
        [*cmd, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=False
    )
    return json.loads(html.unescape(m.group(1)))


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, Any]]:
    """A real sekmet server with a small synthetic clinic, synced once by ``ptbill sync --inline``."""
    with SekmetServer(tmp_path_factory.mktemp("fhir-review")) as srv:
        bundles = seed(srv.base_url, patients=4, seed_value=11)
        env = env_for(srv.base_url, redis_url)
        p = ptbill(env, "sync", "--inline", timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        days = sorted(
            e["resource"]["period"]["start"][:10]
            for b in bundles
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Encounter"
        )
        yield {"server": srv, "env": env, "since": days[0], "until": days[-1]}


def _ptbill_resources(base_url: str, rtype: str) -> list[dict[str, Any]]:
    with FhirClient(base_url) as c:
        return [e["resource"] for e in c.search_entries(rtype, [("_tag", f"{PTBILL_TAG}|ptbill")])]


def _encounter_tag(res: dict[str, Any]) -> str:
    return next(t["code"] for t in res["meta"]["tag"] if t["system"] == ENCOUNTER_TAG)


def test_show_one_encounter(synced):
    base = synced["server"].base_url
    charges = _ptbill_resources(base, "ChargeItem")
    issues = _ptbill_resources(base, "DetectedIssue")
    with_both = {_encounter_tag(c) for c in charges} & {_encounter_tag(d) for d in issues}
    enc = sorted(with_both)[0]
    p = ptbill(synced["env"], "show", enc)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(f"Encounter/{enc}") and "payer " in out
    for ci in (c for c in charges if _encounter_tag(c) == enc and c["status"] == "planned"):
        code = ci["code"]["coding"][0]["code"]
        units = ci["quantity"]["value"]
        assert re.search(rf"^  {code}\s+\S.*\s{units}\s", out, re.M), (code, out)
    assert "documented: " in out and "evidence: rule: " in out
    for di in (d for d in issues if _encounter_tag(d) == enc and d["status"] == "preliminary"):
        code = di["code"]["coding"][0]["code"]
        assert code in out
        assert " ".join(di["detail"].split()[:6]) in " ".join(out.split())  # its meaning, as written
    assert "OPEN TASKS (" in out and "est. amount" in out
    assert "{" not in out.split("\n", 1)[0]
    as_json = json.loads(ptbill(synced["env"], "show", f"Encounter/{enc}", "--json").stdout)
    assert as_json["encounter_id"] == enc and as_json["lines"]


def test_show_unknown_encounter_is_one_line(synced):
    p = ptbill(synced["env"], "show", "no-such-encounter")
    assert p.returncode == 1
    assert "ptbill has written nothing for Encounter/no-such-encounter" in p.stderr
    assert "Traceback" not in p.stderr


def test_report_tables_csv_and_html_rendered_in_chromium(synced, tmp_path):
    page, sheet = tmp_path / "report.html", tmp_path / "report.csv"
    p = ptbill(
        synced["env"],
        "report",
        "--since",
        synced["since"],
        "--until",
        synced["until"],
        "--html",
        str(page),
        "--csv",
        str(sheet),
    )
    assert p.returncode == 0, p.stderr
    for section in ("BY CODE", "BY THERAPIST", "BY PAYER", "FINDINGS (DetectedIssue)", "OPEN ATTESTATIONS"):
        assert section in p.stdout
    assert f"wrote {page}" in p.stderr and f"wrote {sheet}" in p.stderr
    planned = [
        c
        for c in _ptbill_resources(synced["server"].base_url, "ChargeItem")
        if c["status"] != "entered-in-error"
    ]
    rows = list(csv.DictReader(sheet.open()))
    assert len(rows) == len(planned) > 0
    assert {r["code"] for r in rows} == {c["code"]["coding"][0]["code"] for c in planned}
    assert all(r["therapist"] and r["payer"] for r in rows)
    finding_codes = {
        d["code"]["coding"][0]["code"] for d in _ptbill_resources(synced["server"].base_url, "DetectedIssue")
    }
    for code in finding_codes:
        assert code in p.stdout  # every finding code, none hidden

    seen = render(page, tmp_path)
    charts = {c["id"]: c for c in seen["charts"]}
    assert set(charts) == {"chart-code", "chart-therapist", "chart-payer", "chart-findings"}
    for c in charts.values():
        assert c["width"] > 100 and c["height"] > 30, c
        assert c["bars"] >= 1, c
    assert charts["chart-code"]["bars"] == len(
        {r["code"] for r in rows if float(r["estimated_amount"] or 0) > 0}
    )
    tables = {t["id"]: t for t in seen["tables"]}
    assert tables["table-lines"]["rows"] == len(rows)
    assert tables["table-code"]["rows"] == len({r["code"] for r in rows})
    assert tables["table-findings"]["rows"] == len(finding_codes)
    assert all(t["height"] > 0 for t in tables.values())
    assert "meaning (as ptbill wrote it)" in tables["table-findings"]["headers"]
    assert seen["fetched"] == []  # nothing loaded over the network (or from disk) at view time
    assert page.with_suffix(".png").stat().st_size > 10_000  # a screenshot for a person to look at


def test_demo_prints_tables_and_writes_an_html_report(tmp_path):
    report = tmp_path / "demo-report.html"
    env = {k: v for k, v in env_for("http://127.0.0.1:9/fhir", "redis://127.0.0.1:9/0").items()}
    for k in ("PTBILL_FHIR_BASE_URL", "PTBILL_BROKER_URL", "PTBILL_REDIS_URL"):
        env.pop(k, None)  # the demo with its shipped defaults: embedded server, broker and state
    p = ptbill(env, "demo", "--patients", "3", "--workers", "1", "--report", str(report), timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    out = p.stdout
    assert "{" not in out and "}" not in out  # no JSON dump
    for section in ("BY CODE", "BY THERAPIST", "BY PAYER", "FINDINGS (DetectedIssue)", "OPEN ATTESTATIONS"):
        assert section in out
    assert "est. amount" in out and "$" in out
    assert f"HTML report: {report}" in out
    # real-time feedback: one encounter's CDS Hooks cards, as a table (indicator, topic, card)
    cards = out.split("REAL-TIME FEEDBACK (CDS Hooks encounter-discharge cards", 1)[1]
    assert re.search(r"Encounter/\S+ \(.*\): \d+ card\(s\)", cards)
    assert re.search(r"^\s+indicator\s+topic\s+card$", cards, re.M)
    assert re.search(r"^\s+info\s+\d{5}\s+Suggested \d{5}", cards, re.M)  # a suggested line
    page = report.read_text()
    assert '<svg class="chart"' in page and "<rect" in page
    seen = render(report, tmp_path)
    assert all(c["bars"] >= 1 for c in seen["charts"]) and len(seen["charts"]) == 4
    assert seen["fetched"] == []
