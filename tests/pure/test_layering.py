"""The layering of the design card, checked: the library never imports Celery (or the tasks layer), and
the pure domain (model, decide, classify, billing, extract, writeback) imports no HTTP, Redis, Celery or
settings."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "integration/model.py",
    "integration/decide.py",
    "integration/fhir/extract.py",
    "integration/fhir/writeback.py",
    "integration/review/model.py",
    "integration/review/lookup.py",
    "integration/review/summary.py",
    "integration/review/text.py",
    "integration/review/html.py",
    "integration/review/csv_lines.py",
]
PURE_DIRS = ["integration/classify", "integration/billing"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def top(mod: str) -> str:
    return mod.split(".")[0]


def test_library_never_imports_celery_or_the_tasks_layer():
    for path in sorted((ROOT / "integration").rglob("*.py")):
        mods = {top(m) for m in imported_modules(path)}
        assert not mods & {"celery", "kombu", "tasks", "ptbill_demo"}, path


def test_demo_tools_are_reached_only_by_the_cli_commands_that_need_them():
    """ptbill_demo (synthetic data, embedded servers, the demo) is a tool the Celery layer never uses."""
    for path in sorted((ROOT / "tasks").rglob("*.py")):
        mods = {top(m) for m in imported_modules(path)}
        if path.name != "cli.py":
            assert "ptbill_demo" not in mods, path
    assert (
        not (ROOT / "integration" / "embedded.py").exists()
        and not (ROOT / "integration" / "synth.py").exists()
    )


def test_domain_is_pure():
    files = [ROOT / p for p in PURE] + [p for d in PURE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 8
    forbidden = {"requests", "redis", "celery", "kombu", "urllib3", "socket", "tasks"}
    for path in files:
        mods = imported_modules(path)
        assert not {top(m) for m in mods} & forbidden, path
        assert "integration.settings" not in mods and "integration.state" not in mods, path
