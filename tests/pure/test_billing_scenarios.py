"""The billing scenarios of tests/data/scenarios/ through the ``ptbill process --bundle`` code path.

Each bundle is read and grouped as ``process --bundle`` does (``group_bundle``), turned into the
transaction Bundle by ``dry_run_bundle`` (the function the command prints), and compared with
expected.json: the ChargeItem lines exactly, and exactly the DetectedIssue, Task and Flag codes the
billing steps own (the classifier's documentation hints are its own tests' business). Two bundles also go
through the real command in a subprocess to pin the CLI to the same result.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import integration.billing.steps as steps_pkg
from integration.fhir.extract import group_bundle
from integration.fhir.writeback import EXT_MODIFIER
from integration.pipeline import dry_run_bundle
from integration.sync import Group
from mappings.loader import default_tables

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "data" / "scenarios"
EXPECTED: dict[str, dict[str, Any]] = json.loads((SCENARIOS / "expected.json").read_text())


def billing_codes() -> set[str]:
    """Every finding, action and flag code a billing step names (module constants F_*, A_*, FLAG_*)."""
    out: set[str] = set()
    for info in pkgutil.iter_modules(steps_pkg.__path__):
        mod = importlib.import_module(f"{steps_pkg.__name__}.{info.name}")
        for name, value in vars(mod).items():
            if name.startswith(("F_", "A_", "FLAG_")) and isinstance(value, str):
                out.add(value)
    return out


BILLING = billing_codes()


def summary(bundle: dict[str, Any]) -> dict[str, Any]:
    lines: list[list[Any]] = []
    kinds: dict[str, set[str]] = {"DetectedIssue": set(), "Task": set(), "Flag": set()}
    for e in bundle["entry"]:
        r = e["resource"]
        t = r["resourceType"]
        code = r.get("code", {}).get("coding", [{}])[0].get("code")
        if t == "ChargeItem" and r.get("status") == "planned":
            mods = [
                x["valueCodeableConcept"]["coding"][0]["code"]
                for x in r.get("extension", [])
                if x["url"] == EXT_MODIFIER
            ]
            lines.append([code, r["quantity"]["value"], mods])
        elif t in kinds:
            kinds[t].add(code)
    return {
        "lines": sorted(lines),
        "issues": sorted(kinds["DetectedIssue"] & BILLING),
        "tasks": sorted(kinds["Task"]),
        "flags": sorted(kinds["Flag"]),
        "all_issues": kinds["DetectedIssue"],
    }


def process_in_process(name: str) -> dict[str, Any]:
    bundle = json.loads((SCENARIOS / name).read_text())
    groups, problems = group_bundle(bundle)
    assert problems == []
    return dry_run_bundle([Group(e, dict(r)) for e, r in groups], default_tables())


def test_scenario_files_are_what_the_builder_writes():
    spec = importlib.util.spec_from_file_location("scenario_build", SCENARIOS / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(build)
    finally:
        del sys.modules[spec.name]
    rendered = build.render()
    on_disk = {p.name: p.read_text() for p in SCENARIOS.iterdir() if p.suffix in (".json", ".md")}
    assert set(rendered) == set(on_disk)
    for name, text in rendered.items():
        assert on_disk[name] == text, (
            f"{name} differs from build.py: run python tests/data/scenarios/build.py"
        )
    assert len([n for n in rendered if n[:2].isdigit()]) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=[n.removesuffix(".json") for n in sorted(EXPECTED)])
def test_scenario(name: str):
    want = EXPECTED[name]
    got = summary(process_in_process(name))
    assert got["lines"] == want["lines"], want["why"]
    assert got["issues"] == want["issues"], want["why"]
    assert got["tasks"] == want["tasks"], want["why"]
    assert got["flags"] == want["flags"], want["why"]
    assert all("KX" not in mods for _, _, mods in got["lines"])  # never added by ptbill


def test_every_expected_billing_code_is_a_named_step_constant():
    named = {c for w in EXPECTED.values() for c in (*w["issues"], *w["tasks"], *w["flags"])}
    assert named <= BILLING
    # and the codes are constants in their step's source, never assembled at run time
    for info in pkgutil.iter_modules(steps_pkg.__path__):
        src = inspect.getsource(importlib.import_module(f"{steps_pkg.__name__}.{info.name}"))
        assert 'f"BILL-' not in src and 'f"DOC-' not in src and 'f"NCCI-' not in src, info.name


@pytest.mark.parametrize("name", ["13_overlap_partial.json", "10_estim_text_commercial.json"])
def test_cli_prints_the_same_result(name: str):
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "process", "--bundle", str(SCENARIOS / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    cli = summary(json.loads(proc.stdout))
    here = summary(process_in_process(name))
    assert {k: cli[k] for k in ("lines", "issues", "tasks", "flags")} == {
        k: here[k] for k in ("lines", "issues", "tasks", "flags")
    }
