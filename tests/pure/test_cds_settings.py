"""The real-time feedback settings (PTBILL_SERVE_*, PTBILL_NOTIFY_*, PTBILL_SUBSCRIPTION*, PTBILL_CDS_*)."""

from __future__ import annotations

import pytest

from integration.errors import ConfigError
from integration.settings import Settings


def test_defaults():
    s = Settings.from_env({})
    assert (s.serve_host, s.serve_port, s.public_url) == ("127.0.0.1", 8095, None)
    assert s.subscriptions == ("Procedure?", "Encounter?") and s.subscription_payload == "full-resource"
    assert s.notify_secret is None and s.notify_header == "Authorization"
    assert s.cds_clients == () and s.cds_algorithms == ("RS384", "ES384") and not s.cds_writeback


def test_parsing_and_the_secret_stays_secret(tmp_path):
    secret = tmp_path / "notify"
    secret.write_text("n0tify-s3cret\n")
    s = Settings.from_env(
        {
            "PTBILL_PUBLIC_URL": "https://ptbill.clinic.example/",
            "PTBILL_NOTIFY_SECRET_FILE": str(secret),
            "PTBILL_SUBSCRIPTIONS": "Procedure?status=completed  http://x.example/Topic/enc ",
            "PTBILL_SUBSCRIPTION_PAYLOAD": "ID-ONLY",
            "PTBILL_CDS_CLIENTS": '{"https://ehr.example": "https://ehr.example/jwks.json"}',
            "PTBILL_CDS_ALGORITHMS": "es384, rs384",
            "PTBILL_CDS_FHIR_SERVERS": "https://ehr.example/fhir/, https://other.example/r4",
            "PTBILL_CDS_WRITEBACK": "yes",
            "PTBILL_PUSH_DEBOUNCE_SECONDS": "0",
        }
    )
    assert s.public_url == "https://ptbill.clinic.example" and s.notify_secret == "n0tify-s3cret"
    assert s.subscriptions == ("Procedure?status=completed", "http://x.example/Topic/enc")
    assert s.subscription_payload == "id-only" and s.push_debounce_seconds == 0
    assert s.cds_clients == (("https://ehr.example", "https://ehr.example/jwks.json"),)
    assert s.cds_algorithms == ("ES384", "RS384")
    assert s.cds_fhir_servers == ("https://ehr.example/fhir", "https://other.example/r4") and s.cds_writeback
    assert "n0tify-s3cret" not in repr(s) and s.redacted()["notify_secret"] == "***"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"PTBILL_SERVE_PORT": "0"}, "PTBILL_SERVE_PORT"),
        ({"PTBILL_PUBLIC_URL": "ptbill.example"}, "PTBILL_PUBLIC_URL"),
        ({"PTBILL_NOTIFY_HEADER": "X Bad"}, "PTBILL_NOTIFY_HEADER"),
        ({"PTBILL_SUBSCRIPTION_PAYLOAD": "everything"}, "PTBILL_SUBSCRIPTION_PAYLOAD"),
        ({"PTBILL_CDS_CLIENTS": "not json"}, "PTBILL_CDS_CLIENTS"),
        ({"PTBILL_CDS_CLIENTS": '{"iss": "ftp://x"}'}, "PTBILL_CDS_CLIENTS"),
        ({"PTBILL_CDS_CLIENTS": '["a"]'}, "PTBILL_CDS_CLIENTS"),
        ({"PTBILL_CDS_ALGORITHMS": "HS256"}, "PTBILL_CDS_ALGORITHMS"),
        ({"PTBILL_CDS_ALGORITHMS": "none"}, "PTBILL_CDS_ALGORITHMS"),
        ({"PTBILL_CDS_FHIR_SERVERS": "ehr.example"}, "PTBILL_CDS_FHIR_SERVERS"),
        ({"PTBILL_PUSH_DEBOUNCE_SECONDS": "-1"}, "PTBILL_PUSH_DEBOUNCE_SECONDS"),
        ({"PTBILL_SERVE_MAX_BODY_BYTES": "10"}, "PTBILL_SERVE_MAX_BODY_BYTES"),
        ({"PTBILL_CDS_FETCH_TIMEOUT": "0"}, "PTBILL_CDS_FETCH_TIMEOUT"),
    ],
)
def test_bad_values_are_refused(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)
