"""`ptbill classify` / `ptbill eval` entry points (pure-ish: read a JSONL file or stdin, write to ``out``).

classify_main(path, out): one JSON line per input line, in order:
    {"id", "code", "alternatives", "confidence", "evidence", "findings", "items", "shares"}
    items: the documented items the entry was decided from, each {"start", "end", "text", "code",
    "alternatives", "minutes", "heading", "evidence"} (offsets into the input's text); shares: for an entry of
    several codes with per-item minutes, {"code", "minutes", "items"} (item indexes) per code.
eval_main(path, out): accuracy report over lines that also carry expected_code / acceptable_codes; a file of
mixed entries (lines with codes_present, LABELING.md §8.9) gets the mixed-entry report instead. The last line
holds the headline figures.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from integration.classify import classify
from integration.classify.entry import F_MIXED
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
        "items": [
            {
                "start": it.start,
                "end": it.end,
                "text": it.text,
                "code": it.code,
                "alternatives": list(it.alternatives),
                "minutes": it.minutes,
                "heading": it.heading,
                "evidence": [{"kind": e.kind, "value": e.value, "rule_id": e.rule_id} for e in it.evidence],
            }
            for it in c.items
        ],
        "shares": [{"code": s.code, "minutes": s.minutes, "items": list(s.item_indexes)} for s in c.shares],
    }


def is_mixed(c: Classification) -> bool:
    """Whether the classification says the entry documents several codes (split or flagged)."""
    return bool(c.shares) or any(f.code == F_MIXED for f in c.findings)


def item_codes(c: Classification) -> list[str]:
    """The codes the entry's items name, in order of appearance (the entry's code when not mixed)."""
    if not is_mixed(c):
        return [] if c.code == UNSUPPORTED else [c.code]
    return list(dict.fromkeys(it.code for it in c.items if it.code != UNSUPPORTED))


def classify_main(path: str, out: TextIO, tables: Tables | None = None) -> int:
    t = tables or default_tables()
    for _obj, itv_id, c in _records(path, t):
        out.write(json.dumps(to_json(itv_id, c), ensure_ascii=False) + "\n")
    return 0


def eval_main(path: str, out: TextIO, tables: Tables | None = None) -> int:
    t = tables or default_tables()
    records = list(_records(path, t))
    if records and all("codes_present" in obj for obj, _, _ in records):
        return _eval_mixed(records, out)
    rows: list[tuple[str, str, set[str], str]] = []  # id, expected, acceptable, predicted
    flagged: list[str] = []
    for obj, itv_id, c in records:
        exp = str(obj.get("expected_code") or "")
        acc = {str(a) for a in (obj.get("acceptable_codes") or [])} | ({exp} if exp else set())
        rows.append((itv_id, exp, acc, c.code))
        if is_mixed(c):
            flagged.append(itv_id)
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
        f"flagged as mixed ({F_MIXED} or split): {len(flagged)}" + "".join(f" {i}" for i in flagged) + "\n"
    )
    out.write(
        f"strict={strict:.3f} lenient={lenient:.3f} unsupported_precision={u_prec:.3f} "
        f"unsupported_recall={u_rec:.3f} n={n}\n"
    )
    return 0


def _eval_mixed(records: list[tuple[dict[str, Any], str, Classification]], out: TextIO) -> int:
    """Mixed entries (LABELING.md §8.9): flag recall/precision, codes named, controls flagged, dominant code
    and per-code minutes."""
    n = len(records)
    mixed = ctrl = tp = fp = 0
    named_hit = named_gold = named_pred = exact = 0
    dom_n = dom_hit = min_n = min_hit = 0
    lines: list[str] = []
    for obj, itv_id, c in records:
        gold = [str(x) for x in obj.get("codes_present") or []]
        is_gold_mixed = len(gold) >= 2
        flag = is_mixed(c)
        pred = item_codes(c)
        mixed += is_gold_mixed
        ctrl += not is_gold_mixed
        tp += flag and is_gold_mixed
        fp += flag and not is_gold_mixed
        if is_gold_mixed:
            hit = len(set(pred) & set(gold))
            named_hit += hit
            named_gold += len(gold)
            named_pred += len(set(pred))
            exact += set(pred) == set(gold)
        dom = obj.get("dominant_code")
        if dom:
            dom_n += 1
            dom_hit += c.code == dom
        im = obj.get("item_minutes")
        if isinstance(im, dict) and im:
            min_n += 1
            min_hit += {s.code: s.minutes for s in c.shares} == {str(k): v for k, v in im.items()}
        mark = "ok" if flag == is_gold_mixed else ("MISSED" if is_gold_mixed else "FALSE-FLAG")
        lines.append(f"  {itv_id} {mark} gold {'+'.join(gold)} items {'+'.join(pred) or '-'} code {c.code}")
    rec = tp / mixed if mixed else 1.0
    prec = tp / (tp + fp) if tp + fp else 1.0
    cr = named_hit / named_gold if named_gold else 1.0
    cp = named_hit / named_pred if named_pred else 1.0
    out.write(f"cases: {n} (mixed {mixed}, single-code controls {ctrl})\n")
    out.write(
        f"flagged: recall {rec:.3f} precision {prec:.3f} (true {tp}, false {fp}); "
        f"controls flagged {fp}/{ctrl}\n"
    )
    out.write(
        f"codes named (mixed entries): recall {cr:.3f} precision {cp:.3f}, "
        f"all codes exactly {exact}/{mixed}\n"
    )
    out.write(f"dominant code: {dom_hit}/{dom_n}; per-code minutes exactly right: {min_hit}/{min_n}\n")
    out.write("per entry (id, result, gold codes, codes the items name, entry code):\n")
    for ln in lines:
        out.write(ln + "\n")
    out.write(
        f"flag_recall={rec:.3f} flag_precision={prec:.3f} controls_flagged={fp}/{ctrl} codes_recall={cr:.3f} "
        f"codes_precision={cp:.3f} dominant={dom_hit}/{dom_n} minutes={min_hit}/{min_n} n={n}\n"
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
