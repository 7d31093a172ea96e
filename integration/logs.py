"""JSON-lines logging with an allow-list of fields, so clinical text cannot reach a log line by accident.

Only the message (a fixed, code-written string) and the fields in ``ALLOWED`` are emitted. Anything else
passed through ``extra=`` is dropped, and so are exception messages from outside ptbill (they may
quote data): for exceptions only the class name is logged, plus ptbill's own FhirError summary, whose
URL never includes the query string. Record arguments (``%s``) are refused: log messages must not be
built from data.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

ALLOWED = {
    "task_id",
    "task_name",
    "encounter_id",
    "run_id",
    "server",
    "status",
    "counts",
    "duration_ms",
    "attempt",
    "error",
    "reason",
    "pages",
    "encounters",
    "pending",
    "since",
    "until",
    "queue",
    "worker",
    "http_status",
    "method",
    "path",
    "retry_in",
    "tables",
    "problems",
    # the FHIR client's own request fields (integration/fhir/client.py, auth.py): ptbill's values only
    "url",
    "kind",
    "bytes",
    "max_attempts",
    "expires_in",
    # the Celery task decorator (tasks/base.py) and metrics
    "deadline_s",
    "port",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.msg if isinstance(record.msg, str) else type(record.msg).__name__,
        }
        if record.args:
            out["msg"] = str(record.msg)  # the template only: arguments may carry data
            out["args_dropped"] = True
        for k in ALLOWED:
            if k in record.__dict__:
                v = record.__dict__[k]
                out[k] = _safe(_no_query(v) if k in _URL_FIELDS else v)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["exc_type"] = type(exc).__name__
            # where it happened, as code positions only (file:line function): a traceback without the
            # exception's message or any source line, so a crash in Celery or kombu can be found
            out["exc_where"] = _where(record.exc_info[2])
            summary = getattr(exc, "summary", None)
            if callable(summary) and type(exc).__module__.startswith("integration"):
                d = summary()
                if isinstance(d, dict):  # belt and braces: the client already strips query strings
                    # the server's OperationOutcome text may quote submitted values: kept in the dead-letter
                    # record for operators, never in logs
                    d = {k: (_no_query(v) if k in _URL_FIELDS else v) for k, v in d.items() if k != "outcome"}
                out["exc"] = _safe(d)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        d = json.loads(super().format(record))
        head = f"{d.pop('ts')} {d.pop('level'):7} {d.pop('logger')}: {d.pop('msg')}"
        return head + ("" if not d else " " + " ".join(f"{k}={v}" for k, v in d.items()))


_URL_FIELDS = {"url", "path"}


def _where(tb: Any, limit: int = 12) -> list[str]:
    out = []
    for f in traceback.extract_tb(tb)[-limit:]:
        name = f.filename.replace("\\", "/")
        for marker in ("site-packages/", "/integration/", "/tasks/", "/mappings/", "/ptbill_demo/"):
            if marker in name:
                name = (marker.strip("/") + "/" if marker != "site-packages/" else "") + name.split(
                    marker, 1
                )[1]
                break
        else:
            name = name.rsplit("/", 1)[-1]
        out.append(f"{name}:{f.lineno} {f.name}")
    return out


def _no_query(v: Any) -> Any:
    """A URL or path without its query string or fragment (search values may identify patients)."""
    if isinstance(v, str):
        return v.split("?", 1)[0].split("#", 1)[0]
    return v


def _safe(v: Any) -> Any:
    if isinstance(v, str):
        return v[:300]
    if isinstance(v, int | float | bool) or v is None:
        return v
    if isinstance(v, dict):
        return {str(k)[:80]: _safe(x) for k, x in list(v.items())[:60]}
    if isinstance(v, list | tuple):
        return [_safe(x) for x in list(v)[:60]]
    return type(v).__name__


def configure(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route every logger (ptbill, celery, kombu, requests) through the allow-list formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel("WARNING")
    # Python warnings (e.g. Celery's SecurityWarning) go through the same formatter instead of raw stderr
    logging.captureWarnings(True)
