"""integration/cds is pure like the domain: no HTTP, Redis, Celery or settings, and none of the I/O
modules of the library (sync, runner, state, hooks, push, the FHIR client)."""

from __future__ import annotations

from pathlib import Path

from tests.pure.test_layering import ROOT, imported_modules, top

FORBIDDEN_TOP = {"requests", "redis", "celery", "kombu", "urllib3", "socket", "httpx", "starlette", "tasks"}
FORBIDDEN_MODULES = {
    "integration.settings",
    "integration.state",
    "integration.sync",
    "integration.runner",
    "integration.hooks",
    "integration.push",
    "integration.hook_auth",
    "integration.fhir.client",
    "integration.fhir.auth",
}


def test_cds_package_is_pure():
    files = sorted(Path(ROOT / "integration" / "cds").rglob("*.py"))
    assert len(files) >= 6
    for path in files:
        mods = imported_modules(path)
        assert not {top(m) for m in mods} & FORBIDDEN_TOP, path
        assert not mods & FORBIDDEN_MODULES, path
