"""integration/logs.py: the allow-list formatter keeps data (PHI) out of log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from integration import logs
from integration.errors import FhirTemporaryError, InputError

PHI = "Zyxwvut Qqqprivate"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf = io.StringIO()
    logs.configure("DEBUG", "json", buf)
    try:
        yield logging.getLogger("ptbill.test"), buf
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in buf.getvalue().splitlines() if ln.strip()]


def test_arguments_are_dropped_and_flagged(capture):
    log, buf = capture
    log.info("patient %s seen on %s", PHI, "1937-04-19")
    (rec,) = lines(buf)
    assert rec["msg"] == "patient %s seen on %s"
    assert rec["args_dropped"] is True
    assert PHI not in buf.getvalue() and "1937-04-19" not in buf.getvalue()


def test_non_allow_listed_extras_are_dropped(capture):
    log, buf = capture
    log.info(
        "encounter processed",
        extra={"encounter_id": "enc-1", "patient_name": PHI, "note": PHI, "birthDate": "1937-04-19"},
    )
    (rec,) = lines(buf)
    assert rec["encounter_id"] == "enc-1"
    assert set(rec) <= {"ts", "level", "logger", "msg"} | logs.ALLOWED
    assert PHI not in buf.getvalue() and "1937-04-19" not in buf.getvalue()


@pytest.mark.parametrize(
    "exc",
    [
        ValueError(f"invalid literal: {PHI}"),
        KeyError(PHI),
        json.JSONDecodeError(f"bad {PHI}", PHI, 0),
        UnicodeDecodeError("utf-8", PHI.encode(), 0, 1, PHI),
    ],
    ids=lambda e: type(e).__name__,
)
def test_foreign_exception_messages_are_not_emitted(capture, exc):
    log, buf = capture
    try:
        raise exc
    except Exception:
        log.exception("step failed")
    (rec,) = lines(buf)
    assert rec["exc_type"] == type(exc).__name__
    assert "exc" not in rec
    assert PHI not in buf.getvalue()
    assert "Traceback" not in buf.getvalue()


def test_fhir_error_summary_has_no_query_string(capture):
    log, buf = capture
    err = FhirTemporaryError(
        "GET failed",
        status=503,
        method="GET",
        url=f"https://emr.example/fhir/Patient?name={PHI}&birthdate=1937-04-19",
        outcome="server busy",
    )
    try:
        raise err
    except FhirTemporaryError:
        log.error("read failed", exc_info=True)
    (rec,) = lines(buf)
    exc = rec["exc"]
    assert isinstance(exc, dict)
    assert exc["url"] == "https://emr.example/fhir/Patient"
    assert exc["status"] == 503 and exc["error"] == "FhirTemporaryError"
    assert "?" not in buf.getvalue()
    assert "Qqqprivate" not in buf.getvalue() and "1937-04-19" not in buf.getvalue()


def test_allowed_path_field_has_no_query_string(capture):
    log, buf = capture
    log.warning("http", extra={"path": "/fhir/Patient?identifier=MRN|12345", "method": "GET"})
    (rec,) = lines(buf)
    assert rec["path"] == "/fhir/Patient"
    assert "12345" not in buf.getvalue()


def test_input_error_message_is_ptbill_own(capture):
    """InputError carries type/id and a code-written reason; the log still holds only the class name."""
    log, buf = capture
    try:
        raise InputError("Encounter has no id", resource_type="Encounter")
    except InputError:
        log.error("bad input", exc_info=True)
    (rec,) = lines(buf)
    assert rec["exc_type"] == "InputError"


def test_non_string_message_logs_type_name_only(capture):
    log, buf = capture
    log.info({"name": PHI})  # a dict passed as the message
    (rec,) = lines(buf)
    assert rec["msg"] == "dict"
    assert PHI not in buf.getvalue()


def test_values_are_bounded(capture):
    log, buf = capture
    log.info(
        "big",
        extra={
            "reason": "x" * 5000,
            "counts": {f"k{i}": i for i in range(500)},
            "tables": [object()],
        },
    )
    (rec,) = lines(buf)
    assert isinstance(rec["reason"], str) and len(rec["reason"]) == 300
    assert isinstance(rec["counts"], dict) and len(rec["counts"]) == 60
    assert rec["tables"] == ["object"]  # unknown objects become their type name, never their repr


def test_text_format_uses_the_same_allow_list():
    buf = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("INFO", "text", buf)
        logging.getLogger("ptbill.test").info("done %s", PHI, extra={"run_id": "r1", "patient": PHI})
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    out = buf.getvalue()
    assert "ptbill.test: done %s" in out and "run_id=r1" in out
    assert PHI not in out


def test_configure_quiets_chatty_libraries(capture):
    _, buf = capture
    logging.getLogger("urllib3.connectionpool").info("GET /fhir/Patient?name=%s", PHI)
    assert buf.getvalue() == ""


def test_exceptions_log_where_they_happened_without_their_message(capture):
    log, buf = capture

    def deep() -> None:
        raise AttributeError(f"'{PHI}' object has no attribute 'x'")

    try:
        deep()
    except AttributeError:
        log.error("Unrecoverable error", exc_info=True)
    (rec,) = lines(buf)
    assert rec["exc_type"] == "AttributeError"
    where = rec["exc_where"]
    assert isinstance(where, list) and where[-1].endswith(" deep") and "test_logs.py:" in where[-1]
    assert PHI not in buf.getvalue()
