"""docker-compose.yml and the Dockerfile: there is no Docker engine here, so check their structure."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def known_settings() -> set[str]:
    from integration.settings import Settings

    return set(Settings.known_variables())


def test_services_present_with_healthchecks():
    services = compose()["services"]
    assert set(services) == {"redis", "hapi", "worker", "beat", "flower"}
    for name, svc in services.items():
        assert "healthcheck" in svc and svc["healthcheck"]["test"], name


def test_worker_runs_with_events_on_all_queues():
    cmd = compose()["services"]["worker"]["command"]
    assert cmd[:4] == ["celery", "-A", "tasks.app", "worker"]
    assert "-E" in cmd
    queues = cmd[cmd.index("-Q") + 1].split(",")
    from tasks.config import QUEUE_MAINT, QUEUE_PROCESS, QUEUE_READ

    assert set(queues) == {QUEUE_READ, QUEUE_PROCESS, QUEUE_MAINT}


def test_beat_and_flower_commands():
    services = compose()["services"]
    assert "beat" in services["beat"]["command"]
    flower = services["flower"]
    assert "flower" in flower["command"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    # flower must refuse to start without credentials
    assert "?" in flower["environment"]["FLOWER_BASIC_AUTH"]


def test_ptbill_env_names_are_real_settings():
    known = known_settings()
    for name in ("worker", "beat", "flower"):
        env = compose()["services"][name]["environment"]
        for key in env:
            if key.startswith("PTBILL_"):
                assert key in known, f"{name}: {key} is not read by integration/settings.py"
    worker_env = compose()["services"]["worker"]["environment"]
    assert worker_env["PTBILL_BROKER_URL"].startswith("redis://redis:")
    assert worker_env["PTBILL_FHIR_BASE_URL"].endswith("hapi:8080/fhir}")


def test_depends_on_healthy_services():
    services = compose()["services"]
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["hapi"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_three_packages_and_checks_tables():
    text = (ROOT / "Dockerfile").read_text()
    for pkg in ("integration", "tasks", "mappings"):
        assert f"COPY {pkg} ./{pkg}" in text
    assert "ptbill mappings check" in text
    assert "USER ptbill" in text  # not root


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in known_settings() if not n.endswith("_FILE") and n not in readme)
    assert not missing, f"README configuration table lacks {missing}"
