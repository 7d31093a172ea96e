"""ptbill's business identifiers and the search strings that find them.

Pure. Each resource ptbill writes has one identifier under ``IDENTIFIER_SYSTEM`` whose value is a prefix and
a hash of the suggestion's natural key: ``ci-<32 hex>`` for the ChargeItem of key
``ci|{encounter}|{code}|{date}``. Such values never need search escaping and never carry an EMR id. Values
written before this scheme are the natural key itself (``ci|enc-1|97110|2026-03-02``): they are recognised
(``is_legacy``) and mapped to the new value, so the resource is updated in place, not duplicated.

Search values are escaped anyway (FHIR R4 search §2.1.1.6: ``\\``, ``|``, ``,`` and ``$``), so a system
URL or an old value with one of them still matches exactly one token.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

BASE = "https://ptbill.dev/fhir"
IDENTIFIER_SYSTEM = f"{BASE}/identifier"

_ESCAPE = re.compile(r"([\\|,$])")
_VALUE = re.compile(r"^[a-z]+-[0-9a-f]{32}$")


def identifier_value(key: str) -> str:
    """The identifier value of a natural key: its prefix (before the first ``|``) and 32 hex of its hash."""
    prefix = key.split("|", 1)[0] or "x"
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def is_legacy(value: str) -> bool:
    """True for a value of the old scheme (the natural key itself, ``|``-joined)."""
    return "|" in value and not _VALUE.match(value)


def current_value(value: str) -> str:
    """The value under today's scheme: legacy values are hashed, current ones returned as they are."""
    return identifier_value(value) if is_legacy(value) else value


def escape_search_value(value: str) -> str:
    """R4 search escaping of one token part: ``\\`` ``|`` ``,`` ``$`` get a backslash."""
    return _ESCAPE.sub(r"\\\1", value)


def token(system: str, value: str) -> str:
    """``system|value`` with both parts escaped (not yet percent-encoded)."""
    return f"{escape_search_value(system)}|{escape_search_value(value)}"


def identifier_query(value: str, system: str = IDENTIFIER_SYSTEM) -> str:
    """``identifier=<system>|<value>``, escaped and percent-encoded: for a search URL or If-None-Exist."""
    return "identifier=" + quote(token(system, value), safe="")


def tag_query(system: str, code: str) -> str:
    """``_tag=<system>|<code>``, escaped and percent-encoded."""
    return "_tag=" + quote(token(system, code), safe="")
