"""JSON from outside ptbill (HTTP bodies, bundle files), parsed with a clean error instead of a crash.

``loads(raw)`` refuses, as :class:`integration.errors.JsonRefused` with a fixed ``kind``:

* ``not-json``: bytes that are not UTF-8 (or UTF-16/32, as RFC 8259 allows readers to accept; files
  may ask for undecodable bytes to be replaced instead) or text that is not JSON;
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


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH, replace_undecodable: bool = False) -> Any:
    """Parse ``raw``; JsonRefused when it is not JSON or nests deeper than ``max_depth``.

    ``replace_undecodable``: bytes that are not valid in the text's encoding become U+FFFD instead of
    refusing the whole document (a stray Latin-1 byte in one note must not lose a whole bundle)."""
    if isinstance(raw, bytes | bytearray):
        encoding = json.detect_encoding(raw)
        try:
            text = bytes(raw).decode(encoding, errors="replace" if replace_undecodable else "strict")
        except UnicodeDecodeError as e:
            raise JsonRefused("not-json", f"not {encoding} text (byte {e.start})") from None
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
    """A JSON file (``ptbill process --bundle``; undecodable bytes replaced); OSError when unreadable."""
    with open(path, "rb") as fh:
        return loads(fh.read(), max_depth=max_depth, replace_undecodable=True)
