"""`ptbill classify` / `ptbill eval` entry points (pure-ish: read a JSONL file or stdin, write to ``out``).

classify_main(path, out): one JSON line per input line, in order:
    {"id", "code", "alternatives", "confidence", "evidence", "findings"}
eval_main(path, out): accuracy report over lines that also carry expected_code / acceptable_codes; the last
line holds the headline figures.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from integration.classify import classify
from integration.model import UNSUPPORTED, Classification, Coding, Finding, Intervention
from mappings.loader import Tables, default_tables

INPUT_RULE = "CLI-INPUT"


@contextmanager
def _open(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin
    else:
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield fh


def _intervention(obj: Any, lineno: int) -> Intervention:
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    raw_id = obj.get("id")
    itv_id = str(raw_id) if raw_id not in (None, "") else f"line-{lineno}"
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError("'text' must be a string")
    body = obj.get("body_site")
    if body is not None and not isinstance(body, str):
        raise ValueError("'body_site' must be a string or null")
    minutes = obj.get("minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float)):
        raise ValueError("'minutes' must be a number or null")
    codings: list[Coding] = []
    for c in obj.get("codings") or []:
        if not isinstance(c, dict):
            raise ValueError("'codings' entries must be objects with system/code")
        codings.append(Coding(_s(c.get("system")), _s(c.get("code")), _s(c.get("display"))))
    gs = obj.get("group_size")
    return Intervention(
        id=itv_id,
        text=text or "",
        codings=tuple(codings),
        body_sites=(body,) if body else (),
        minutes=int(minutes) if minutes is not None else None,
        group_size=gs if isinstance(gs, int) and not isinstance(gs, bool) else None,
    )


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def _input_error(itv_id: str, msg: str) -> Classification:
    return Classification(
        code=UNSUPPORTED,
        confidence=0.0,
        findings=(
            Finding(
                code="INPUT-INVALID",
                severity="high",
                message=f"Input line could not be read: {msg}",
                rule_id=INPUT_RULE,
                source="ptbill classify input format",
                procedure_ids=(itv_id,),
            ),
        ),
        rule_ids=(INPUT_RULE,),
    )


def _records(path: str, tables: Tables) -> Iterator[tuple[dict[str, Any], str, Classification]]:
    with _open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            obj: Any = None
            try:
                obj = json.loads(line)
                itv = _intervention(obj, lineno)
            except (ValueError, TypeError) as e:
                raw_id = obj.get("id") if isinstance(obj, dict) else None
                itv_id = str(raw_id) if raw_id not in (None, "") else f"line-{lineno}"
                msg = "malformed JSON" if isinstance(e, json.JSONDecodeError) else str(e)
                yield (obj if isinstance(obj, dict) else {}), itv_id, _input_error(itv_id, msg)
                continue
            try:
                c = classify(itv, tables)
            except Exception as e:  # never drop a line: report it as an input problem
                c = _input_error(itv.id, f"classification failed ({type(e).__name__})")
            yield obj, itv.id, c


def to_json(itv_id: str, c: Classification) -> dict[str, Any]:
    return {
        "id": itv_id,
        "code": c.code,
        "alternatives": list(c.alternatives),
        "confidence": c.confidence,
        "evidence": [{"kind": e.kind, "value": e.value, "rule_id": e.rule_id} for e in c.evidence],
        "findings": [
            {"code": f.code, "severity": f.severity, "message": f.message, "rule_id": f.rule_id}
            for f in c.findings
        ],
    }


def classify_main(path: str, out: TextIO, tables: Tables | None = None) -> int:
    t = tables or default_tables()
    for _obj, itv_id, c in _records(path, t):
        out.write(json.dumps(to_json(itv_id, c), ensure_ascii=False) + "\n")
    return 0


def eval_main(path: str, out: TextIO, tables: Tables | None = None) -> int:
    t = tables or default_tables()
    rows: list[tuple[str, str, set[str], str]] = []  # id, expected, acceptable, predicted
    for obj, itv_id, c in _records(path, t):
        exp = str(obj.get("expected_code") or "")
        acc = {str(a) for a in (obj.get("acceptable_codes") or [])} | ({exp} if exp else set())
        rows.append((itv_id, exp, acc, c.code))
    n = len(rows)
    strict = sum(p == e for _, e, _, p in rows) / n if n else 0.0
    lenient = sum(p in a for _, _, a, p in rows) / n if n else 0.0
    tp = sum(p == UNSUPPORTED and e == UNSUPPORTED for _, e, _, p in rows)
    pred_u = sum(p == UNSUPPORTED for *_, p in rows)
    gold_u = sum(e == UNSUPPORTED for _, e, _, _ in rows)
    u_prec = tp / pred_u if pred_u else 1.0
    u_rec = tp / gold_u if gold_u else 1.0
    conf = Counter((e, p) for _, e, _, p in rows if {e, p} <= {"97110", "97530"})
    out.write(f"cases: {n}\n")
    out.write(f"strict accuracy:  {strict:.3f}\nlenient accuracy: {lenient:.3f}\n")
    out.write(f"UNSUPPORTED precision {u_prec:.3f} recall {u_rec:.3f} (gold {gold_u}, predicted {pred_u})\n")
    out.write("97110<->97530 confusion (expected -> predicted):\n")
    for e in ("97110", "97530"):
        out.write(f"  {e}: " + "  ".join(f"->{p} {conf[(e, p)]}" for p in ("97110", "97530")) + "\n")
    out.write(f"{'code':<12}{'support':>8}{'precision':>11}{'recall':>8}\n")
    codes = sorted({e for _, e, _, _ in rows} | {p for *_, p in rows})
    for code in codes:
        sup = sum(e == code for _, e, _, _ in rows)
        pc = sum(p == code for *_, p in rows)
        hit = sum(p == code and e == code for _, e, _, p in rows)
        prec = f"{hit / pc:.3f}" if pc else "-"
        rec = f"{hit / sup:.3f}" if sup else "-"
        out.write(f"{code:<12}{sup:>8}{prec:>11}{rec:>8}\n")
    miss = [(i, e, p, p in a) for i, e, a, p in rows if p != e]
    out.write("misclassified (id expected predicted [lenient-ok]):\n")
    for i, e, p, ok in miss:
        out.write(f"  {i} {e} {p}{' lenient-ok' if ok else ''}\n")
    out.write(
        f"strict={strict:.3f} lenient={lenient:.3f} unsupported_precision={u_prec:.3f} "
        f"unsupported_recall={u_rec:.3f} n={n}\n"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("classify", "eval"):
        sys.stderr.write("usage: python -m integration.classify.cli {classify|eval} FILE|-\n")
        return 2
    fn = classify_main if args[0] == "classify" else eval_main
    return fn(args[1], sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
