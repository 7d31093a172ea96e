"""docker-compose.yml and the Dockerfile: there is no Docker engine here, so check their structure —
the things that made `docker compose up` fail or expose more than it should."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PTBILL_SERVICES = ("fhir-ready", "worker", "beat", "flower", "web")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def known_settings() -> set[str]:
    from integration.settings import OTHER_KNOWN_VARIABLES, Settings

    return set(Settings.known_variables()) - OTHER_KNOWN_VARIABLES


def test_services_present():
    assert set(services()) == {"redis", "hapi", "fhir-ready", "worker", "beat", "flower", "web"}


def test_every_image_is_pinned():
    images = {name: svc["image"] for name, svc in services().items() if "image" in svc}
    assert {"redis", "hapi"} <= set(images)
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} names no version"
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim", base.group(1)), base


def test_nothing_is_published_beyond_loopback():
    for name, svc in services().items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    assert "ports" not in services()["redis"]  # the state store stays on the compose network


def test_healthchecks_work_on_the_images_used():
    s = services()
    # HAPI's image is distroless: no shell, wget or curl. No healthcheck; ptbill's doctor waits for it.
    assert "healthcheck" not in s["hapi"]
    assert s["fhir-ready"]["command"][:2] == ["ptbill", "doctor"] and "--wait" in s["fhir-ready"]["command"]
    assert s["fhir-ready"]["depends_on"]["hapi"]["condition"] == "service_started"
    for name in ("worker", "beat"):
        assert s[name]["depends_on"]["fhir-ready"]["condition"] == "service_completed_successfully"
        assert s[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("redis", "worker", "beat", "flower", "web"):
        assert s[name]["healthcheck"]["test"], name
    assert s["redis"]["healthcheck"]["test"][0] == "CMD"  # redis-cli exists in the redis image
    for name in ("flower", "web"):  # python exists in ours; no shell needed
        assert s[name]["healthcheck"]["test"][:2] == ["CMD", "python"], name


def test_worker_runs_with_events_on_all_queues():
    cmd = services()["worker"]["command"]
    assert cmd[:4] == ["celery", "-A", "tasks.app", "worker"]
    assert "-E" in cmd
    queues = cmd[cmd.index("-Q") + 1].split(",")
    from tasks.config import QUEUE_MAINT, QUEUE_PROCESS, QUEUE_READ

    assert set(queues) == {QUEUE_READ, QUEUE_PROCESS, QUEUE_MAINT}
    assert "beat" in services()["beat"]["command"]


def test_flower_is_ptbill_flower_behind_a_secret():
    flower = services()["flower"]
    assert flower["command"][:2] == ["ptbill", "flower"]
    env = flower["environment"]
    assert env["PTBILL_FLOWER_BASIC_AUTH_FILE"] == "/run/secrets/flower_basic_auth"
    assert "flower_basic_auth" in flower["secrets"]
    assert "PTBILL_FLOWER_BASIC_AUTH" not in env and "FLOWER_BASIC_AUTH" not in env  # not in plain env
    assert compose()["secrets"]["flower_basic_auth"]["file"].startswith("./secrets/")


def test_web_is_ptbill_serve_with_the_notify_secret():
    web = services()["web"]
    assert web["command"][:2] == ["ptbill", "serve"]
    env = web["environment"]
    # listens on every interface inside its container; published on the host's loopback only (above)
    assert env["PTBILL_SERVE_HOST"] == "0.0.0.0" and env["PTBILL_SERVE_PORT"] == "8095"  # noqa: S104
    assert any(str(p).endswith(":8095") for p in web["ports"])
    assert "8095" in web["healthcheck"]["test"][-1] and "/healthz" in web["healthcheck"]["test"][-1]
    assert env["PTBILL_NOTIFY_SECRET_FILE"] == "/run/secrets/notify_secret"
    assert "notify_secret" in web["secrets"]
    assert "PTBILL_NOTIFY_SECRET" not in env  # not in plain env
    assert compose()["secrets"]["notify_secret"]["file"].startswith("./secrets/")
    assert env["PTBILL_PUBLIC_URL"].startswith("${PTBILL_PUBLIC_URL:-http")  # the EMR's address for it
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"
    for name, svc in services().items():  # the secret goes to the service that needs it, nowhere else
        if name != "web":
            assert "notify_secret" not in svc.get("secrets", []), name
            assert "PTBILL_NOTIFY_SECRET_FILE" not in svc.get("environment", {}), name


def test_smart_key_is_a_secret_and_mappings_a_volume():
    c = compose()
    assert "smart_private_key" in c["secrets"]
    for name in PTBILL_SERVICES:
        svc = services()[name]
        assert "smart_private_key" in svc["secrets"], name
        assert svc["environment"]["PTBILL_SMART_PRIVATE_KEY_FILE"] == "/run/secrets/smart_private_key"
        assert svc["environment"]["PTBILL_MAPPINGS_DIR"] == "/etc/ptbill/mappings"
        assert any(v.endswith(":/etc/ptbill/mappings:ro") for v in svc["volumes"]), name


def test_every_ptbill_setting_passes_through():
    known = known_settings()
    for name in PTBILL_SERVICES:
        env = services()[name]["environment"]
        ptbill_keys = {k for k in env if k.startswith("PTBILL_")}
        assert ptbill_keys <= known, f"{name}: {sorted(ptbill_keys - known)} are not ptbill settings"
        as_secrets = {"PTBILL_FLOWER_BASIC_AUTH", "PTBILL_NOTIFY_SECRET"}  # secret files where needed
        missing = {k for k in known if not k.endswith("_FILE")} - ptbill_keys - as_secrets
        assert not missing, f"{name} does not pass {sorted(missing)}"
    worker_env = services()["worker"]["environment"]
    assert worker_env["PTBILL_BROKER_URL"].endswith("redis://redis:6379/0}")
    assert worker_env["PTBILL_FHIR_BASE_URL"].endswith("hapi:8080/fhir}")
    assert worker_env["PTBILL_RATE_LIMIT"] == "${PTBILL_RATE_LIMIT:-}"  # no per-process limit by default


def test_secrets_stay_out_of_git_and_the_image():
    assert "secrets/*" in (ROOT / ".gitignore").read_text()
    assert "secrets/" in (ROOT / ".dockerignore").read_text()
    assert not re.search(r"COPY (\.|secrets)\s", (ROOT / "Dockerfile").read_text())


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


def test_hapi_is_configured_for_what_ptbill_needs():
    """The stand-in EMR behaves as the README's "What an EMR must support" says an EMR must."""
    from integration.settings import Settings

    env = {k: str(v) for k, v in services()["hapi"]["environment"].items()}
    defaults = Settings.from_env({})
    assert env["hapi.fhir.fhir_version"] == "R4"
    # a cached search result would hide edits from the sync window and from the read-back before writes
    assert env["hapi.fhir.reuse_cached_search_results_millis"] == "0"
    # the default write mode ("auto") creates by PUT with ptbill's own ids ("ptb-" + hash) where the server
    # allows client ids, as this HAPI does
    assert defaults.write_mode == "auto" and env["hapi.fhir.client_id_strategy"] in ("ANY", "ALPHANUMERIC")
    # pages of ptbill's default size come whole
    assert int(env["hapi.fhir.max_page_size"]) >= defaults.page_size
    assert int(env["hapi.fhir.default_page_size"]) >= 1
    # deleted Procedures stay in their history (the sync finds them there); no narrative is generated
    assert env["hapi.fhir.delete_expunge_enabled"] == "false" and env["hapi.fhir.expunge_enabled"] == "false"
    assert env["hapi.fhir.narrative_enabled"] == "false"
