"""JSON from outside ptbill (HTTP bodies, bundle files), parsed with a clean error instead of a crash.

``loads(raw)`` refuses, as :class:`integration.errors.JsonRefused` with a fixed ``kind``:

* ``not-json``: bytes that are not UTF-8 (or UTF-16/32 with a BOM, as RFC 8259 allows readers to
  accept) or text that is not JSON;
* ``too-deep``: nesting deeper than ``max_depth`` objects/arrays (FHIR resources nest about 15 deep; a
  hostile or broken document nested 100,000 deep would otherwise end in a ``RecursionError`` here or in
  any code that walks it).

The reason never quotes the input (it may be clinical text): only where parsing stopped.
"""

from __future__ import annotations

import json
from typing import Any

from integration.errors import JsonRefused

MAX_DEPTH = 64


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw``; JsonRefused when it is not JSON or nests deeper than ``max_depth``."""
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode(json.detect_encoding(raw))
        except (UnicodeDecodeError, LookupError) as e:
            raise JsonRefused(
                "not-json",
                f"not UTF-8 text (byte {e.start})"
                if isinstance(e, UnicodeDecodeError)
                else "unknown text encoding",
            ) from None
    else:
        text = raw
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonRefused("too-deep", f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as e:
        raise JsonRefused("not-json", f"not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """JsonRefused("too-deep") when ``value`` nests deeper than ``max_depth`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise JsonRefused("too-deep", f"nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


def load_file(path: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON file (``ptbill process --bundle``); OSError when it cannot be read."""
    with open(path, "rb") as fh:
        return loads(fh.read(), max_depth=max_depth)
