"""integration/settings.py: PTBILL_* parsing, *_FILE secrets, validation, redaction, TLS default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from integration.errors import ConfigError
from integration.runner import make_client
from integration.settings import Settings, redact_url

SECRET = "s3cr3t-Pa55"


def test_defaults_from_an_empty_environment():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.tls_verify is True
    assert s.auth_type == "none"
    assert s.encounter_statuses == ("finished",)
    assert s.write_mode == "auto"
    assert s.log_format == "json"


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        ({"PTBILL_FHIR_BASE_URL": "https://emr.example/fhir/"}, "fhir_base_url", "https://emr.example/fhir"),
        ({"PTBILL_PAGE_SIZE": "250"}, "page_size", 250),
        ({"PTBILL_PAGE_SIZE": ""}, "page_size", 100),
        ({"PTBILL_HTTP_TIMEOUT": "2.5"}, "http_timeout", 2.5),
        ({"PTBILL_TLS_VERIFY": "no"}, "tls_verify", False),
        ({"PTBILL_TLS_VERIFY": "TRUE"}, "tls_verify", True),
        (
            {"PTBILL_ENCOUNTER_STATUSES": "finished, in-progress,,"},
            "encounter_statuses",
            ("finished", "in-progress"),
        ),
        ({"PTBILL_WRITE_MODE": "Conditional"}, "write_mode", "conditional"),
        ({"PTBILL_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
        ({"PTBILL_LOG_FORMAT": "TEXT"}, "log_format", "text"),
        ({"PTBILL_MAX_RETRIES": "0"}, "max_retries", 0),
        (
            {"PTBILL_BROKER_URL": "redis://h:1/3"},
            "redis_url",
            "redis://h:1/3",
        ),  # state follows a Redis broker
        ({"PTBILL_BROKER_URL": "sqla+sqlite:///x.db"}, "redis_url", "redis://127.0.0.1:6379/0"),
        (
            {"PTBILL_BROKER_URL": "redis://h:1/3", "PTBILL_REDIS_URL": "redis://o:2/4"},
            "redis_url",
            "redis://o:2/4",
        ),
    ],
)
def test_env_parsing(env, attr, expected):
    assert getattr(Settings.from_env(env), attr) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PTBILL_PAGE_SIZE": "ten"}, "PTBILL_PAGE_SIZE must be an integer"),
        ({"PTBILL_PAGE_SIZE": "0"}, "between 1 and 1000"),
        ({"PTBILL_PAGE_SIZE": "1001"}, "between 1 and 1000"),
        ({"PTBILL_HTTP_TIMEOUT": "soon"}, "must be a number"),
        ({"PTBILL_HTTP_TIMEOUT": "0"}, "must be positive"),
        ({"PTBILL_TLS_VERIFY": "maybe"}, "true or false"),
        ({"PTBILL_FHIR_BASE_URL": "ftp://emr"}, "http(s) URL"),
        ({"PTBILL_FHIR_AUTH": "kerberos"}, "none, basic, bearer or smart"),
        ({"PTBILL_FHIR_AUTH": "basic", "PTBILL_FHIR_USER": "u"}, "basic auth needs"),
        ({"PTBILL_FHIR_AUTH": "bearer"}, "bearer auth needs"),
        ({"PTBILL_FHIR_AUTH": "smart", "PTBILL_SMART_CLIENT_ID": "c"}, "smart auth needs"),
        ({"PTBILL_ENCOUNTER_STATUSES": " , "}, "at least one status"),
        ({"PTBILL_WRITE_MODE": "post"}, "id or conditional"),
        ({"PTBILL_LOG_FORMAT": "xml"}, "json or text"),
        ({"PTBILL_LOG_LEVEL": "chatty"}, "PTBILL_LOG_LEVEL"),
        ({"PTBILL_MAX_RETRIES": "-1"}, "must not be negative"),
        ({"PTBILL_LOCK_TIMEOUT": "0"}, "must be positive"),
    ],
)
def test_validation_errors(env, message):
    with pytest.raises(ConfigError, match=None) as ei:
        Settings.from_env(env)
    assert message in str(ei.value)


def test_secret_from_file_wins_and_is_stripped(tmp_path: Path):
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    s = Settings.from_env(
        {
            "PTBILL_FHIR_AUTH": "basic",
            "PTBILL_FHIR_USER": "biller",
            "PTBILL_FHIR_PASSWORD": "from-env",
            "PTBILL_FHIR_PASSWORD_FILE": str(f),
        }
    )
    assert s.auth_password == SECRET


@pytest.mark.parametrize(
    ("name", "attr"),
    [
        ("PTBILL_FHIR_TOKEN", "auth_token"),
        ("PTBILL_SMART_PRIVATE_KEY", "smart_private_key"),
        ("PTBILL_FLOWER_BASIC_AUTH", "flower_basic_auth"),
    ],
)
def test_every_secret_accepts_a_file(tmp_path: Path, name, attr):
    f = tmp_path / "secret"
    f.write_text(SECRET)
    assert getattr(Settings.from_env({f"{name}_FILE": str(f)}), attr) == SECRET


def test_unreadable_secret_file_is_a_config_error_without_the_path_content(tmp_path: Path):
    with pytest.raises(ConfigError) as ei:
        Settings.from_env({"PTBILL_FHIR_TOKEN_FILE": str(tmp_path / "missing")})
    assert "PTBILL_FHIR_TOKEN_FILE cannot be read" in str(ei.value)


def _all_secrets(tmp_path: Path) -> Settings:
    key = tmp_path / "key.pem"
    key.write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n")
    return Settings.from_env(
        {
            "PTBILL_FHIR_BASE_URL": f"https://svc:{SECRET}@emr.example/fhir",
            "PTBILL_FHIR_AUTH": "smart",
            "PTBILL_SMART_CLIENT_ID": "ptbill",
            "PTBILL_SMART_PRIVATE_KEY_FILE": str(key),
            "PTBILL_FHIR_PASSWORD": SECRET,
            "PTBILL_FHIR_TOKEN": SECRET,
            "PTBILL_FLOWER_BASIC_AUTH": f"admin:{SECRET}",
            "PTBILL_BROKER_URL": f"redis://:{SECRET}@redis.internal:6379/0",
            "PTBILL_REDIS_URL": f"rediss://default:{SECRET}@redis.internal:6380/1",
        }
    )


def test_redacted_and_repr_never_show_secrets(tmp_path: Path):
    s = _all_secrets(tmp_path)
    red = s.redacted()
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in repr(red)
    for name in ("auth_password", "auth_token", "smart_private_key", "flower_basic_auth"):
        assert red[name] == "***"
    assert red["broker_url"] == "redis://***@redis.internal:6379/0"
    assert red["redis_url"] == "rediss://***@redis.internal:6380/1"
    assert red["smart_client_id"] == "ptbill"  # not a secret: still shown
    # the object itself keeps the real values for the code that needs them
    assert s.auth_token == SECRET and SECRET in s.broker_url


def test_redacted_leaves_empty_secrets_empty():
    red = Settings().redacted()
    assert red["auth_password"] is None and red["auth_token"] is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@h:1/0", "redis://***@h:1/0"),
        ("amqp://user:pw@h//", "amqp://***@h//"),
        ("https://emr.example/fhir", "https://emr.example/fhir"),
        ("https://emr.example/fhir/Patient?x=a@b", "https://emr.example/fhir/Patient?x=a@b"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_tls_verification_is_on_by_default_and_reaches_the_client():
    s = Settings.from_env({})
    with make_client(s) as client:
        assert client.verify is True


def test_ca_bundle_is_used_for_verification(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    s = Settings.from_env({"PTBILL_CA_BUNDLE": str(ca)})
    with make_client(s) as client:
        assert client.verify == str(ca)


def test_tls_opt_out_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="ptbill.settings"):
        s = Settings.from_env({"PTBILL_TLS_VERIFY": "false"})
    assert s.tls_verify is False
    assert any("TLS certificate verification is OFF" in r.getMessage() for r in caplog.records)
    with make_client(s) as client:
        assert client.verify is False


def test_tls_on_is_not_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="ptbill.settings"):
        Settings.from_env({})
    assert not caplog.records


def test_server_key_is_stable_and_hides_the_url():
    a = Settings.from_env({"PTBILL_FHIR_BASE_URL": "https://emr.example/fhir/"})
    b = Settings.from_env({"PTBILL_FHIR_BASE_URL": "https://emr.example/fhir"})
    assert a.server_key == b.server_key and len(a.server_key) == 12
    assert "emr" not in a.server_key


# --- pydantic-settings: bad values are named, never replaced by defaults ---------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PTBILL_BROKER_URL": "reddis://127.0.0.1:6379/0"},
            "PTBILL_BROKER_URL: unknown scheme 'reddis'; did you mean redis://?",
        ),
        ({"PTBILL_REDIS_URL": "http://127.0.0.1:6379/0"}, "PTBILL_REDIS_URL: unknown scheme 'http'"),
        ({"PTBILL_BROKER_URL": "127.0.0.1:6379"}, "PTBILL_BROKER_URL must be a URL"),
        ({"PTBILL_FHIR_BASE_URL": ""}, "PTBILL_FHIR_BASE_URL is set but empty"),
        ({"PTBILL_FHIR_BASE_URL": "   "}, "PTBILL_FHIR_BASE_URL is set but empty"),
        ({"PTBILL_BROKER_URL": ""}, "PTBILL_BROKER_URL is set but empty"),
        ({"PTBILL_FHIR_BASE_URL": "emr.example/fhir"}, "PTBILL_FHIR_BASE_URL must be an http(s) URL"),
        ({"PTBILL_FHIR_BASE_URL": "https://emr.example/fhir?x=1"}, "without query"),
        ({"PTBILL_SMART_TOKEN_URL": "/token"}, "PTBILL_SMART_TOKEN_URL must be an http(s) URL"),
        ({"PTBILL_RATE_LIMIT": "fast"}, "PTBILL_RATE_LIMIT must be a positive rate"),
        ({"PTBILL_FHIR_REQUEST_BUDGET": "0/s"}, "PTBILL_FHIR_REQUEST_BUDGET must be a positive rate"),
        ({"PTBILL_SMART_ALG": "HS256"}, "PTBILL_SMART_ALG must be one of RS384"),
        ({"PTBILL_INITIAL_SINCE": "last week"}, "PTBILL_INITIAL_SINCE must be an ISO instant"),
        ({"PTBILL_STALE_AFTER_INTERVALS": "0"}, "PTBILL_STALE_AFTER_INTERVALS must be positive"),
        ({"PTBILL_MAPPINGS_DIR": "/nonexistent/mappings"}, "PTBILL_MAPPINGS_DIR names no directory"),
        ({"PTBILL_CA_BUNDLE": "/nonexistent/ca.pem"}, "PTBILL_CA_BUNDLE names no readable file"),
        ({"PTBILL_PROCEDURE_FETCH": "all"}, "PTBILL_PROCEDURE_FETCH must be by-encounter or revinclude"),
    ],
)
def test_bad_values_are_one_clear_line(env, message):
    with pytest.raises(ConfigError) as ei:
        Settings.from_env(env)
    assert message in str(ei.value)
    assert "\n" not in str(ei.value)
    assert "validation error" not in str(ei.value)  # pydantic's wording is translated


def test_several_bad_values_are_all_named_in_one_line():
    with pytest.raises(ConfigError) as ei:
        Settings.from_env({"PTBILL_PAGE_SIZE": "x", "PTBILL_HTTP_TIMEOUT": "y"})
    assert "PTBILL_PAGE_SIZE" in str(ei.value) and "PTBILL_HTTP_TIMEOUT" in str(ei.value)


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        ({}, "rate_limit", None),  # no per-process Celery rate limit by default
        ({"PTBILL_RATE_LIMIT": "20/s"}, "rate_limit", "20/s"),  # the old spelling still works
        ({"PTBILL_RATE_LIMIT": ""}, "rate_limit", None),
        ({}, "fhir_request_budget", None),
        ({"PTBILL_FHIR_REQUEST_BUDGET": "3000/m"}, "request_budget_per_second", 50.0),
        ({"PTBILL_FHIR_REQUEST_BUDGET": "25"}, "request_budget_per_second", 25.0),
        ({"PTBILL_SMART_ALG": "es384"}, "smart_alg", "ES384"),
        ({"PTBILL_BROKER_URL": "sqla+sqlite:///tmp/b.db"}, "broker_url", "sqla+sqlite:///tmp/b.db"),
        ({"PTBILL_SMART_CLIENT_ID": ""}, "smart_client_id", None),  # compose's ${X:-} is "not set"
    ],
)
def test_more_env_parsing(env, attr, expected):
    assert getattr(Settings.from_env(env), attr) == expected


def test_settings_in_code_never_read_the_environment(monkeypatch):
    monkeypatch.setenv("PTBILL_PAGE_SIZE", "7")
    assert Settings().page_size == 100
    assert Settings(page_size=9).page_size == 9
    assert Settings.from_env().page_size == 7  # os.environ is the default of from_env


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(Exception):  # pydantic's ValidationError (frozen instance)
        s.page_size = 5  # type: ignore[misc]


def test_sources_say_where_each_value_came_from(tmp_path: Path):
    f = tmp_path / "tok"
    f.write_text(SECRET)
    s = Settings.from_env(
        {
            "PTBILL_FHIR_AUTH": "bearer",
            "PTBILL_FHIR_TOKEN_FILE": str(f),
            "PTBILL_BROKER_URL": "redis://h:1/2",
            "PTBILL_PAGE_SIZE": "50",
        }
    )
    src = s.sources()
    assert src["auth_type"] == "env PTBILL_FHIR_AUTH"
    assert src["auth_token"] == "file PTBILL_FHIR_TOKEN_FILE"
    assert src["page_size"] == "env PTBILL_PAGE_SIZE"
    assert src["redis_url"].startswith("env PTBILL_BROKER_URL")
    assert src["http_timeout"] == "default"
    rows = {var: (value, source) for var, value, source in s.describe()}
    assert rows["PTBILL_FHIR_TOKEN"] == ("***", "file PTBILL_FHIR_TOKEN_FILE")
    assert rows["PTBILL_PAGE_SIZE"] == (50, "env PTBILL_PAGE_SIZE")
    assert SECRET not in repr(s.describe())


def test_unknown_variables_are_flagged_with_the_closest_known_name():
    from integration.settings import unknown_variable_lines, unknown_variables

    env = {
        "PTBILL_FHIR_BASEURL": "https://emr.example/fhir",
        "PTBILL_BROKER": "redis://x",
        "PTBILL_WHATEVER_ELSE": "1",
        "PTBILL_FHIR_TOKEN_FILE": "/run/secrets/t",  # known: the file variant of a secret
        "PTBILL_TEST_REDIS_URL": "redis://127.0.0.1:6379/5",  # read by the test harness
        "PATH": "/usr/bin",
    }
    found = dict(unknown_variables(env))
    assert found == {
        "PTBILL_BROKER": "PTBILL_BROKER_URL",
        "PTBILL_FHIR_BASEURL": "PTBILL_FHIR_BASE_URL",
        "PTBILL_WHATEVER_ELSE": None,
    }
    lines = unknown_variable_lines(env)
    assert "unknown variable PTBILL_FHIR_BASEURL is ignored; did you mean PTBILL_FHIR_BASE_URL?" in lines
    # the typo is not read as the setting (the CLI and doctor say so; see tests/integration/test_cli_ops.py)
    env.pop("PTBILL_FHIR_TOKEN_FILE")
    assert Settings.from_env(env).fhir_base_url == Settings().fhir_base_url


def test_known_variables_cover_every_field_and_secret_files():
    known = Settings.known_variables()
    assert {"PTBILL_FHIR_BASE_URL", "PTBILL_SMART_PRIVATE_KEY_FILE", "PTBILL_FLOWER_BASIC_AUTH_FILE"} <= known
    assert "PTBILL_PAGE_SIZE_FILE" not in known  # only secrets have a _FILE variant


def test_readme_configuration_table_is_generated_from_the_settings():
    from integration.settings import configuration_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert configuration_table() in readme, (
        "README's configuration table differs from integration/settings.py; "
        "regenerate it with: python -m integration.settings"
    )
