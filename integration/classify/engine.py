"""The intervention classifier: signals from codings and text, then ordered rules from mappings/classify.

Pure: plain data in, frozen dataclasses out. Tables are compiled once per Tables object and period of validity
(the rows in force change only at effective/expires boundaries), never per call.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from integration.classify.fuzzy import Reading, TolerantReader
from integration.classify.text import BREAK, Abbrev, Hit, Normalizer, Phrase, PhraseMatcher, fold
from integration.model import (
    CPT,
    HCPCS_SYSTEMS,
    SNOMED,
    UNSUPPORTED,
    Classification,
    Coding,
    Evidence,
    Finding,
    Intervention,
)
from mappings.loader import Tables
from mappings.schemas.classify import _SIG_RX, LEXICON_TABLES

CLASSIFY_TABLES = (
    "classify_concepts",
    "classify_signals",
    "classify_code_map",
    "classify_abbreviations",
    "classify_rules",
    "classify_doc_requirements",
    *LEXICON_TABLES,
)
_DEFAULT_CTX = ("main", "intent", "cue")
_ALL_CTX = ("main", "intent", "cue", "goal", "reason", "report")
_NEG_SPAN = 4
_MODALITY_CODES = frozenset({"97010", "97012", "97016", "97018", "97022", "97032", "97033", "97035", "G0283"})
_MANUAL_CODES = frozenset({"97140", "97124"})
# an entry classified as a modality / manual therapy that also documents one of these is several interventions
_MULTI_EXPRS = ("main:ex.*", "main:task.*", "main:balance.*", "gait.pattern", "gait.training")
# documentation requirements checked against the code on the Procedure even when the text supports another
CODED_DOC_CHECKS = frozenset({"DOC-97530-FUNCTIONAL-TASK"})
F_TEXT_UNREADABLE = "DOC-TEXT-UNREADABLE"
R_TEXT_UNREADABLE = "R-TEXT-UNREADABLE"
_READABLE_SHARE = (
    0.5  # below this share of ASCII letters/digits among non-space characters a text is unreadable
)
_WORD_MAX = 64  # a "word" longer than this is not prose


def unreadable_ok(text: str) -> bool:
    """Whether non-blank ``text`` reads as text: at least half of its non-space characters are letters or
    digits after folding accents (text.fold), and it is not one unbroken run of characters. Blank text is
    "ok" (nothing to read; other findings say the documentation is missing). Linear in its length."""
    if not text.strip():
        return True
    folded = fold(text)
    total = len(text) - sum(1 for ch in text if ch.isspace())
    alnum = sum(1 for ch in folded if ch.isalnum())
    if total == 0 or alnum < _READABLE_SHARE * total:
        return False
    return any(len(w) <= _WORD_MAX for w in folded.split())


_CODE_CONFLICT_SOURCE = (
    "ptbill: a coded CPT is evidence, not truth (billing-rules.md §5.1: notes must match the claim)"
)


# --- compiled form -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    ctxs: tuple[str, ...]
    name: str
    prefix: bool
    text: str
    keys: frozenset[str]  # "ctx:name" or "ctx:name.*" keys: true when a signal of the intervention has one
    bit: int = 0  # its condition bit in the compiled table set (_Bits); 0 only before compilation

    @staticmethod
    def parse(text: str, bits: _Bits | None = None) -> Expr:
        m = _SIG_RX.match(text)
        if m is None:  # rejected by the schema already
            raise ValueError(text)
        ctx, name, star = m.group(1), m.group(2), m.group(3)
        ctxs = _DEFAULT_CTX if ctx is None else (_ALL_CTX if ctx == "any" else (ctx,))
        suffix = ".*" if star else ""
        keys = frozenset(f"{c}:{name}{suffix}" for c in ctxs)
        return Expr(ctxs, name, bool(star), text, keys, bits.bit(keys) if bits is not None else 0)


class _Bits:
    """Condition bits of one compiled table set.

    Every set of signal keys the engine tests (a rule's `all` expression, its `any` and `none` lists, an
    `alternatives_if` condition, a documentation requirement) gets one bit. A signal seen in a context sets
    the bits of every condition holding one of its keys, so "does the intervention have any of these keys"
    is one AND on an int instead of a set intersection. All bits are assigned while compiling, before any
    lookup.
    """

    def __init__(self) -> None:
        self._bit_of: dict[frozenset[str], int] = {}
        self._key_bits: dict[str, int] = {}
        self._by_ctx: dict[str, dict[str, int]] = {}
        self._frozen = False

    def bit(self, keys: frozenset[str]) -> int:
        if not keys:
            return 0
        b = self._bit_of.get(keys)
        if b is None:
            if self._frozen:
                raise RuntimeError("condition bits are assigned while compiling only")
            b = 1 << len(self._bit_of)
            self._bit_of[keys] = b
            for k in keys:
                self._key_bits[k] = self._key_bits.get(k, 0) | b
        return b

    def freeze(self) -> None:
        self._frozen = True

    def of(self, sig: str, ctx: str) -> int:
        """The bits set by signal ``sig`` seen in context ``ctx`` (cached; signals come from the tables)."""
        by_sig = self._by_ctx.get(ctx)
        if by_sig is None:
            by_sig = self._by_ctx.setdefault(ctx, {})
        m = by_sig.get(sig)
        if m is None:
            m = 0
            kb = self._key_bits
            for k in _keys(sig, ctx):
                m |= kb.get(k, 0)
            if len(by_sig) < 100_000:
                by_sig[sig] = m
        return m


@dataclass(frozen=True)
class CRule:
    id: str
    concept: str
    all: tuple[Expr, ...]
    any: tuple[Expr, ...]
    none: tuple[Expr, ...]
    confidence: float
    alternatives: tuple[str, ...]
    alternatives_if: tuple[tuple[Expr, str], ...]
    finding: tuple[str, str, str] | None  # (code, severity, message)
    kind: str
    source: str
    require: int = 0  # condition bits that must all be set: each `all` expression, and `any` (as one)
    forbid: int = 0  # the `none` condition bit
    code: str = ""  # the concept's code
    alts: tuple[str, ...] = ()  # alternatives without the conditional ones, in order, unique, not `code`
    evidence_exprs: tuple[Expr, ...] = ()  # `all` then `any`


@dataclass(frozen=True)
class CDoc:
    id: str
    concept: str
    finding_code: str
    severity: str
    message: str
    any_signals: tuple[Expr, ...]
    fields: tuple[str, ...]
    source: str
    any_mask: int = 0  # condition bits of any_signals


@dataclass
class Compiled:
    normalizer: Normalizer
    matcher: PhraseMatcher
    reader: TolerantReader
    concept_code: dict[str, str]
    concept_label: dict[str, str]
    concept_alts: dict[str, tuple[str, ...]]
    rules: tuple[CRule, ...]
    docs: dict[str, tuple[CDoc, ...]]
    code_map: dict[tuple[str, str], Any]
    local_map: dict[str, Any]
    therapy_signals: frozenset[str]
    specific_signals: frozenset[str]
    weight_class: dict[str, str]
    billable: frozenset[str]
    bits: _Bits
    specific_bit: int  # a specific signal in the main, intent or cue context
    multi_exprs: tuple[Expr, ...]  # what else an entry coded as a modality / manual therapy may document
    concept_of_code: dict[str, str]  # code -> its first concept in table order


def _compile(tables: Tables, on: date | None) -> Compiled:
    def rows(name: str) -> tuple[Any, ...]:
        return tables.active(name, on)

    bits = _Bits()

    def expr(text: str) -> Expr:
        return Expr.parse(text, bits)

    normalizer = Normalizer(
        Abbrev(r.match, r.expansion, r.case_sensitive) for r in rows("classify_abbreviations")
    )
    phrases: list[Phrase] = []
    for name in LEXICON_TABLES:
        for r in rows(name):
            sigs = (r.signal, *r.also)
            phrases.extend(Phrase.parse(p, sigs, r.weight, r.id, r.not_after) for p in r.phrases)
    sig_rows = rows("classify_signals")
    concepts = rows("classify_concepts")
    concept_code = {c.concept: c.code for c in concepts}
    concept_alts = {c.concept: tuple(c.alternatives) for c in concepts}
    rules = []
    for r in sorted(rows("classify_rules"), key=lambda r: r.order):
        finding = (r.finding_code, r.finding_severity, r.finding_message) if r.finding_code else None
        all_e = tuple(expr(e) for e in r.all)
        any_e = tuple(expr(e) for e in r.any)
        none_e = tuple(expr(e) for e in r.none)
        require = 0
        for e in all_e:
            require |= e.bit
        require |= bits.bit(frozenset(k for e in any_e for k in e.keys))
        rules.append(
            CRule(
                id=r.id,
                concept=r.concept,
                all=all_e,
                any=any_e,
                none=none_e,
                confidence=r.confidence,
                alternatives=tuple(r.alternatives),
                alternatives_if=tuple((expr(d["when"]), d["concept"]) for d in r.alternatives_if),
                finding=finding,
                kind=r.kind,
                source=r.source,
                require=require,
                forbid=bits.bit(frozenset(k for e in none_e for k in e.keys)),
                code=concept_code[r.concept],
                alts=tuple(
                    _uniq(
                        a
                        for a in (
                            *concept_alts.get(r.concept, ()),
                            *(concept_code[c] for c in r.alternatives),
                        )
                        if a != concept_code[r.concept]
                    )
                ),
                evidence_exprs=(*all_e, *any_e),
            )
        )
    docs: dict[str, list[CDoc]] = {}
    for d in rows("classify_doc_requirements"):
        any_signals = tuple(expr(e) for e in d.any_signals)
        any_mask = 0
        for e in any_signals:
            any_mask |= e.bit
        docs.setdefault(d.concept, []).append(
            CDoc(
                d.id,
                d.concept,
                d.finding_code,
                d.severity,
                d.message,
                any_signals,
                tuple(d.fields),
                d.source,
                any_mask,
            )
        )
    code_map: dict[tuple[str, str], Any] = {}
    local_map: dict[str, Any] = {}
    for r in rows("classify_code_map"):
        if r.system == "local":
            local_map[r.code] = r
        else:
            code_map[(r.system, r.code)] = r
    billable = (
        frozenset(r.code for r in tables.active("billable_codes", on))
        if "billable_codes" in tables
        else frozenset()
    )
    specific = frozenset(r.signal for r in sig_rows if r.specific)
    specific_bit = bits.bit(frozenset(f"{c}:{s}" for c in _DEFAULT_CTX for s in specific))
    multi_exprs = tuple(expr(x) for x in _MULTI_EXPRS)
    bits.freeze()
    concept_of_code: dict[str, str] = {}
    for c in concepts:
        concept_of_code.setdefault(c.code, c.concept)
    words: set[str] = set()
    stems: set[str] = set()
    for ph in phrases:
        for kind, val in ph.pattern:
            if kind == "exact":
                words.add(val)
            elif kind == "stem":
                stems.add(val)
    for r in rows("classify_abbreviations"):
        words.update(r.expansion.lower().split())
    return Compiled(
        normalizer=normalizer,
        matcher=PhraseMatcher(phrases),
        reader=TolerantReader(words, stems),
        concept_code=concept_code,
        concept_label={c.concept: c.label for c in concepts},
        concept_alts=concept_alts,
        rules=tuple(rules),
        docs={k: tuple(v) for k, v in docs.items()},
        code_map=code_map,
        local_map=local_map,
        therapy_signals=frozenset(r.signal for r in sig_rows if r.therapy),
        specific_signals=specific,
        weight_class={r.signal: r.weight_class for r in sig_rows if r.weight_class != "none"},
        billable=billable,
        bits=bits,
        specific_bit=specific_bit,
        multi_exprs=multi_exprs,
        concept_of_code=concept_of_code,
    )


@dataclass
class _Entry:
    tables: Tables
    boundaries: list[date]
    by_period: dict[int, Compiled] = field(default_factory=dict)


_CACHE: dict[int, _Entry] = {}
_LOCK = threading.Lock()
_CACHE_MAX = 8


def compiled_for(tables: Tables, on: date | None = None) -> Compiled:
    """The compiled classifier for ``tables`` as of ``on`` (cached per Tables object and validity period)."""
    entry = _CACHE.get(id(tables))
    if entry is None or entry.tables is not tables:
        bounds: set[date] = set()
        for name in (*CLASSIFY_TABLES, "billable_codes"):
            if name not in tables:
                continue
            for r in tables[name].rows:
                bounds.add(r.effective)
                if r.expires is not None:
                    bounds.add(r.expires + timedelta(days=1))
        entry = _Entry(tables, sorted(bounds))
        with _LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[id(tables)] = entry
    period = -1 if on is None else bisect.bisect_right(entry.boundaries, on)
    comp = entry.by_period.get(period)
    if comp is None:
        comp = _compile(tables, on)
        with _LOCK:
            entry.by_period[period] = comp
    return comp


# --- signals from one intervention -------------------------------------------------------------


_KEYS_CACHE: dict[tuple[str, str], tuple[str, ...]] = {}


def _keys(sig: str, ctx: str) -> tuple[str, ...]:
    k = _KEYS_CACHE.get((sig, ctx))
    if k is None:
        parts = sig.split(".")
        k = (f"{ctx}:{sig}", *(f"{ctx}:{'.'.join(parts[:n])}.*" for n in range(1, len(parts) + 1)))
        _KEYS_CACHE[(sig, ctx)] = k
    return k


@dataclass(slots=True)
class Signals:
    bits: _Bits
    mask: int = 0  # condition bits set by the signals so far (see _Bits)
    hits: list[tuple[str, str, Hit | None, str | None]] = field(default_factory=list)  # (signal, context,
    # hit, coding evidence)
    group_count_ok: bool = False
    readings: tuple[Reading, ...] = ()  # tolerant-reading changes in the note text (fuzzy.TolerantReader)

    def add(self, sig: str, ctx: str, hit: Hit | None = None, coding: str | None = None) -> None:
        self.mask |= self.bits.of(sig, ctx)
        self.hits.append((sig, ctx, hit, coding))

    def has(self, e: Expr) -> bool:
        return bool(self.mask & e.bit)

    def without(self, families: tuple[str, ...]) -> Signals:
        s = Signals(self.bits)
        for sig, ctx, hit, coding in self.hits:
            if not sig.startswith(families):
                s.add(sig, ctx, hit, coding)
        s.group_count_ok = self.group_count_ok
        s.readings = self.readings
        return s


_SPAN_MARKERS = {
    "marker.intent": "intent",
    "marker.intent_task": "intent",
    "marker.goal": "goal",
    "marker.cue": "cue",
}
# negation markers: how far back / forward they reach (always inside one clause)
_NEG_FORWARD, _NEG_EITHER, _NEG_ADJACENT, _NEG_BACKWARD = 1, 2, 3, 4
_NEG_MARKERS = {
    "marker.negation": _NEG_FORWARD,  # "no balance work": the next _NEG_SPAN tokens
    "marker.negation_back": _NEG_BACKWARD,  # "standing balance replaced with seated ex": back to clause start
    # "declined stairs" forward; "stairs declined" back to the clause start
    "marker.negation_either": _NEG_EITHER,
    "marker.negation_adjacent": _NEG_ADJACENT,  # "NMES-free": only the hit right before it
}
_REPORT_MARKER = "marker.report"  # "pt reports doing", "per pt": activity the patient reports, not furnished
_SESSION_MARKER = "marker.session"  # "today", "in clinic": ends a report
_REPORT = "report"
# instruction, cues or one-on-one contact document the session too (an assist level may be part of a report:
# "walks at home with husband's hand-held assist")
_SESSION_SIGNALS = frozenset({"contact.cues", "contact.one_on_one", "marker.cue"})
_REASON = "marker.reason"  # "d/t effusion": a short noun phrase giving a cause, not an intervention
_REASON_SPAN = 3
# signals that say nothing about what was done: they neither make a clause "content" for a backward
# negation nor are removed by one
_NOT_CONTENT = ("marker.", "anat.", "contact.", "none.", "discipline.")


def _is_content(sig: str) -> bool:
    return not sig.startswith(_NOT_CONTENT)


def text_signals(comp: Compiled, text: str) -> tuple[tuple[str, ...], list[tuple[str, str, Hit]]]:
    """Tokens and (signal, context, hit) triples for one piece of text (see read_signals)."""
    toks, out, _readings = read_signals(comp, text)
    return toks, out


def read_signals(
    comp: Compiled, text: str
) -> tuple[tuple[str, ...], list[tuple[str, str, Hit]], tuple[Reading, ...]]:
    """Tokens, (signal, context, hit) triples and tolerant-reading changes for one piece of text; negated
    hits are dropped.

    Context resets at every clause break. A forward negation ("no", "without") drops the hits in the next
    few tokens; a deferral ("held", "deferred", "declined", "d/c'd", "not performed") drops what follows it
    when an intervention follows within that span, otherwise the interventions before it in its clause
    ("gait training held d/t effusion"); "-free" drops the hit right before it. A reason ("d/t dizziness")
    puts the next few tokens in the "reason" context, which no rule counts by default.

    A patient's report of activity ("pt reports doing HEP", "per pt: walks daily") puts what follows in the
    "report" context (not counted by default: nothing was furnished), over commas and dashes, until the end of
    its sentence or a clause that documents the session ("today", "in clinic", instruction, cues, assist).
    """
    toks, readings = comp.reader.read(comp.normalizer.tokens(text))
    hits = comp.matcher.scan(toks)
    out: list[tuple[str, str, Hit]] = []
    ctx = "main"
    report_on = False
    session_clauses: set[int] | None = None
    neg_until = -1
    neg_modifier = False
    reason_until = -1
    clause = 0
    clause_start = 0  # index in `out` where the current clause starts
    prev: Hit | None = None
    prev_end = 0
    for i, h in enumerate(hits):
        if h.clause != clause:
            if report_on:
                if session_clauses is None:
                    session_clauses = _session_clauses(hits)
                if h.clause in session_clauses or _sentence_between(toks, prev_end, h.start):
                    report_on = False
            clause = h.clause
            ctx = _REPORT if report_on else "main"
            neg_until = reason_until = -1
            clause_start = len(out)
            prev = None
        sigs = h.phrase.signals
        lead = sigs[0]
        prev_end = h.end
        if lead == _REPORT_MARKER:
            report_on, ctx = True, _REPORT
            continue
        if report_on and (lead == _SESSION_MARKER or lead in _SESSION_SIGNALS):
            report_on, ctx = False, "main"
            if lead == _SESSION_MARKER:
                continue
        last, prev = prev, h
        if lead == _REASON:  # a cause ends a negation: "no balance work d/t dizziness"
            neg_until = -1
            reason_until = _reason_end(toks, h.end)
            continue
        if h.start < neg_until:
            if not (neg_modifier and lead in _SPAN_MARKERS):
                continue  # negated: ignore (markers included)
            neg_until = -1  # "walked w/o AD for endurance": the purpose is not negated
        if h.phrase.not_after and last is not None and last.end == h.start:
            if any(s.startswith(h.phrase.not_after) for s in last.phrase.signals):
                continue
        neg = _NEG_MARKERS.get(lead)
        if neg is not None:
            if neg == _NEG_ADJACENT:
                if last is not None and last.end == h.start:
                    while len(out) > clause_start and out[-1][2] is last:
                        out.pop()
                continue
            back = neg == _NEG_BACKWARD or (
                neg == _NEG_EITHER and not _content_follows(hits, i, h.end + _NEG_SPAN)
            )
            if back:
                kept = [t for t in out[clause_start:] if not _is_content(t[0])]
                if neg == _NEG_BACKWARD or len(kept) < len(out) - clause_start:
                    out[clause_start:] = kept
                    continue
            neg_until = h.end + _NEG_SPAN
            # after an intervention in its clause a negation modifies it ("w/ no UE support"): it ends at
            # a purpose or cue; at the clause start it covers the span ("no balance work for falls")
            neg_modifier = any(_is_content(t[0]) for t in out[clause_start:])
            continue
        c = "reason" if h.start < reason_until else ctx
        if lead in _SPAN_MARKERS:
            if c == _REPORT:
                continue
            if c != "main" and c != "intent" and c != "cue":
                out.append((lead, c, h))
                continue
            out.append((lead, c if lead != "marker.goal" else "goal", h))
            ctx = _SPAN_MARKERS[lead]
            continue
        for s in sigs:
            out.append((s, c, h))
    return toks, out, readings


def _session_clauses(hits: list[Hit]) -> set[int]:
    """Clauses that document the session itself (they end a patient's report)."""
    out: set[int] = set()
    for h in hits:
        lead = h.phrase.signals[0]
        if lead == _SESSION_MARKER or lead in _SESSION_SIGNALS:
            out.add(h.clause)
    return out


def _sentence_between(toks: tuple[str, ...], start: int, end: int) -> bool:
    """Whether a sentence break (two clause breaks in a row) lies in toks[start:end]."""
    for j in range(max(start, 0), end - 1):
        if toks[j] == BREAK and toks[j + 1] == BREAK:
            return True
    return False


def _reason_end(toks: tuple[str, ...], start: int) -> int:
    """End (exclusive) of a reason starting at ``start``: a few tokens, cut at "to" ("d/t pain -> x")."""
    end = min(len(toks), start + _REASON_SPAN)
    for j in range(start, end):
        if toks[j] == "to":
            return j
    return end


def _content_follows(hits: list[Hit], i: int, until: int) -> bool:
    """Whether an intervention hit follows hit ``i`` in its clause before token ``until`` (and before a reason
    or another negation)."""
    clause = hits[i].clause
    for h in hits[i + 1 :]:
        if h.clause != clause or h.start >= until:
            return False
        lead = h.phrase.signals[0]
        if lead == _REASON or lead in _NEG_MARKERS:
            return False
        if _is_content(lead):
            return True
    return False


def collect(comp: Compiled, itv: Intervention) -> tuple[Signals, tuple[str, ...], list[Coding]]:
    """Signals of an intervention, its tokens and the billable codings found on it."""
    sig = Signals(comp.bits)
    coded: list[Coding] = []
    for c in itv.codings:
        system, code = c.system or "", (c.code or "").strip()
        if not code:
            continue
        row = None
        if system == CPT:
            row = comp.code_map.get(("cpt", code))
            if row is not None or code in comp.billable:
                coded.append(Coding("cpt", code, c.display))
        elif _is_hcpcs(system):
            row = comp.code_map.get(("hcpcs", code))
            if row is not None or code in comp.billable:
                coded.append(Coding("hcpcs", code, c.display))
        elif system == SNOMED:
            row = comp.code_map.get(("snomed", code))
        else:
            row = comp.local_map.get(code)
        if row is not None:
            for s in row.signals:
                sig.add(s, "main", None, f"{system}|{code}")
    toks, triples, sig.readings = read_signals(comp, note_text(itv))
    bits_of, mask, append = comp.bits.of, sig.mask, sig.hits.append
    for s, ctx, h in triples:  # Signals.add, inlined
        if s == "group.count":
            if not _group_count_ok(h.text):
                continue
            sig.group_count_ok = True
        mask |= bits_of(s, ctx)
        append((s, ctx, h, None))
    sig.mask = mask
    if itv.group_size is not None and itv.group_size >= 2:
        sig.add("ctx.group_size", "main", None, f"group_size={itv.group_size}")
    _derive(comp, sig)
    return sig, toks, coded


def _is_hcpcs(system: str) -> bool:
    return system in HCPCS_SYSTEMS or system.startswith("https://www.cms.gov/Medicare/Coding/HCPCS")


MAX_TEXT = 20_000  # characters of one intervention's documentation that are read (a note is a few hundred)
F_TEXT_TRUNCATED = "DOC-TEXT-TRUNCATED"
R_TEXT_TRUNCATED = "R-TEXT-TRUNCATED"


def note_text(itv: Intervention) -> str:
    """The text classified: what was written, or (when blank) the displays of its non-CPT/HCPCS codings; at
    most MAX_TEXT characters of it (cut at a space where there is one): time per intervention is bounded."""
    text = itv.full_text()
    if len(text) > MAX_TEXT:
        cut = text.rfind(" ", MAX_TEXT - 200, MAX_TEXT)
        return text[: cut if cut > 0 else MAX_TEXT]
    if text.strip():
        return text
    displays = [
        c.display
        for c in itv.codings
        if c.display and (c.code or "").strip() and (c.system or "") != CPT and not _is_hcpcs(c.system or "")
    ]
    return " . ".join(displays) if displays else text


def _group_count_ok(matched: str) -> bool:
    for t in matched.split():
        if t.isdigit():
            n = int(t)
            return 2 <= n <= 100
    return False


def _derive(comp: Compiled, sig: Signals) -> None:
    ex_w = task_w = 0.0
    seen: set[tuple[int, str]] = set()
    for s, ctx, hit, _ in sig.hits:
        if ctx != "main":
            continue
        wc = comp.weight_class.get(s)
        if wc is None:
            continue
        pos = hit.start if hit is not None else -1 - len(seen)  # a coding counts once, weight 1
        if (pos, wc) in seen:
            continue
        seen.add((pos, wc))
        w = hit.phrase.weight if hit is not None else 1.0
        if wc == "exercise":
            ex_w += w
        elif wc == "task":
            task_w += w
    if task_w > ex_w:
        sig.add("form.task_dominant", "main")
    elif ex_w > 0:
        sig.add("form.exercise_dominant", "main")
    if ex_w > 0 and task_w == 0:
        sig.add("form.exercise_only", "main")
    if sig.mask & comp.specific_bit:
        sig.add("derived.specific", "main")


# --- rules -------------------------------------------------------------------------------------


def _decide(comp: Compiled, sig: Signals) -> CRule:
    """The first rule (in table order) whose every `all` expression and one `any` hold, and no `none`."""
    mask = sig.mask
    for rule in comp.rules:
        if mask & rule.require == rule.require and not mask & rule.forbid:
            return rule
    raise LookupError("classify_rules has no catch-all rule")  # the shipped table ends with R-ABSTAIN-NONE


def _alternatives(comp: Compiled, rule: CRule, sig: Signals, code: str) -> list[str]:
    """The concept's alternatives, the rule's, then those of its `alternatives_if` conditions that hold."""
    if code == rule.code:
        alts = list(rule.alts)  # precomputed: same order, unique, without the code
        for e, c in rule.alternatives_if:
            if sig.mask & e.bit:
                a = comp.concept_code[c]
                if a != code and a not in alts:
                    alts.append(a)
        return alts
    out: list[str] = list(comp.concept_alts.get(rule.concept, ()))
    out.extend(comp.concept_code[c] for c in rule.alternatives)
    for e, c in rule.alternatives_if:
        if sig.has(e):
            out.append(comp.concept_code[c])
    return _uniq(a for a in out if a != code)


def _uniq(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)


def _evidence(rule: CRule, sig: Signals, specific: frozenset[str] = frozenset()) -> list[Evidence]:
    """The rule, then the matched phrases / codings behind its `all` and `any` expressions that hold (a
    signal counts for an expression in one of its contexts, by name or, for ``name.*``, by prefix); at most
    6 entries."""
    rid = rule.id
    ev = [Evidence("rule", rid, rid)]
    seen: set[str] = set()
    mask, hits = sig.mask, sig.hits
    for e in rule.evidence_exprs:
        if not mask & e.bit:
            continue
        name, dotted, prefix, ctxs = e.name, e.name + ".", e.prefix, e.ctxs
        for s, ctx, hit, coding in hits:
            if ctx not in ctxs or not (s == name or (prefix and s.startswith(dotted))):
                continue
            p = hit.text if hit is not None else coding
            if p is None or p in seen:
                continue
            seen.add(p)
            if hit is not None and sig.readings:
                p = _as_read(p, hit, sig.readings)
            ev.append(Evidence("coding" if "|" in p else "phrase", p, rid))
            if len(ev) >= 6:
                return ev
    if len(ev) == 1 and specific:
        # a rule decided by derived signals (the exercise-vs-task form): show the phrases behind the form
        for s, ctx, hit, _ in hits:
            if hit is None or ctx != "main" or s not in specific or hit.text in seen:
                continue
            seen.add(hit.text)
            ev.append(Evidence("phrase", _as_read(hit.text, hit, sig.readings), rid))
            if len(ev) >= 6:
                break
    return ev


def _as_read(text: str, hit: Hit, readings: tuple[Reading, ...]) -> str:
    """A matched phrase with what the note actually says where tolerant reading changed a token:
    ``doorway stretch (read from 'dorway strech')``."""
    written = [r for r in readings if r.start < hit.end and r.end > hit.start]
    if not written:
        return text
    return f"{text} (read from '{' '.join(r.written for r in written)}')"


def _doc_findings(comp: Compiled, concept: str, sig: Signals, itv: Intervention, code: str) -> list[Finding]:
    out = []
    mask = sig.mask
    for d in comp.docs.get(concept, ()):
        if mask & d.any_mask:
            continue
        if any(getattr(itv, f) for f in d.fields):
            continue
        out.append(
            Finding(
                code=d.finding_code,
                severity=d.severity,  # type: ignore[arg-type]
                message=d.message,
                rule_id=d.id,
                source=d.source,
                procedure_ids=(itv.id,),
                line_code=code,
            )
        )
    return out


def classify_with(comp: Compiled, itv: Intervention) -> Classification:
    sig, _toks, coded = collect(comp, itv)
    rule = _decide(comp, sig)
    code = rule.code
    alts = _alternatives(comp, rule, sig, code)
    confidence = rule.confidence
    evidence = _evidence(rule, sig, comp.specific_signals)
    rule_ids = [rule.id]
    findings: list[Finding] = []
    if rule.finding is not None:
        fcode, sev, msg = rule.finding
        findings.append(Finding(fcode, sev, msg, rule.id, rule.source, (itv.id,), code))  # type: ignore[arg-type]

    # several interventions in one entry: the modality/manual code wins, the rest is an alternative
    if code in _MODALITY_CODES or code in _MANUAL_CODES:
        rest = sig.without(("modality.", "manual.", "generic.manual"))
        if any(rest.has(e) for e in comp.multi_exprs):
            _derive(comp, rest)
            second = _decide(comp, rest)
            scode = comp.concept_code[second.concept]
            if scode != UNSUPPORTED and scode != code:
                alts = _uniq([scode, *alts])
                confidence = min(confidence, 0.7)
                rule_ids.append(second.id)
                findings.append(
                    Finding(
                        "DOC-MULTIPLE-INTERVENTIONS",
                        "low",
                        f"One entry documents more than one intervention ({comp.concept_label[rule.concept]} "
                        f"and {comp.concept_label[second.concept]}); record each as its own procedure "
                        "with its minutes.",
                        second.id,
                        "billing-rules.md §5.1 (identify each intervention billed)",
                        (itv.id,),
                        code,
                    )
                )

    # codings on the Procedure: evidence, not truth
    coded_code = coded[0].code if coded else None
    if coded_code is not None:
        sys_label = coded[0].system
        evidence.append(Evidence("coding", f"{sys_label}|{coded_code}", "R-CODING"))
        nothing_in_text = rule.kind == "abstain-none"
        if nothing_in_text and coded_code in comp.billable:
            rule_ids.append("R-CODING-ONLY")
            return Classification(
                code=coded_code,
                alternatives=tuple(
                    a
                    for a in comp.concept_alts.get(_concept_of(comp, coded_code) or "", ())
                    if a != coded_code
                ),
                confidence=0.5,
                evidence=tuple(evidence),
                findings=(
                    Finding(
                        "DOC-TEXT-MISSING",
                        "moderate",
                        f"Procedure coded {coded_code} but the documentation does not describe the "
                        "intervention; document what was done (exercise/activity, body part, purpose).",
                        "R-CODING-ONLY",
                        _CODE_CONFLICT_SOURCE,
                        (itv.id,),
                        coded_code,
                    ),
                ),
                rule_ids=tuple(rule_ids),
            )
        if rule.kind == "abstain-vague" and coded_code in comp.billable:
            rule_ids.append("R-CODING-VAGUE")
            return Classification(
                code=coded_code,
                alternatives=(),
                confidence=0.3,
                evidence=tuple(evidence),
                findings=tuple(findings),
                rule_ids=tuple(rule_ids),
            )
        if coded_code == code:
            confidence = min(0.98, confidence + 0.08)
        elif coded_code in alts and code != UNSUPPORTED:
            # a defensible choice already made by the clinician: keep it, show ours as the alternative
            alts = _uniq([code, *(a for a in alts if a != coded_code)])
            code = coded_code
            confidence = max(0.3, confidence - 0.1)
            rule_ids.append("R-CODING-DEFENSIBLE")
        else:
            rule_ids.append("R-CODE-CONFLICT")
            what = comp.concept_label.get(rule.concept, code)
            findings.append(
                Finding(
                    "CODE-CONFLICT",
                    "high" if code == UNSUPPORTED else "moderate",
                    f"Procedure is coded {coded_code} but the documentation supports {code} ({what}); "
                    f"review the code or the note.",
                    "R-CODE-CONFLICT",
                    _CODE_CONFLICT_SOURCE,
                    (itv.id,),
                    code,
                )
            )
            confidence = min(confidence, 0.75)
            # the code the clinician chose still needs what it requires ("Ther act" over a plain drill)
            coded_concept = _concept_of(comp, coded_code)
            if coded_concept is not None and rule.kind == "decide":
                findings.extend(
                    f
                    for f in _doc_findings(comp, coded_concept, sig, itv, coded_code)
                    if f.rule_id in CODED_DOC_CHECKS
                )

    concept = _concept_of(comp, code)
    if code != UNSUPPORTED and concept is not None:
        findings.extend(_doc_findings(comp, concept, sig, itv, code))
    if len(itv.full_text()) > MAX_TEXT:
        findings.append(
            Finding(
                F_TEXT_TRUNCATED,
                "moderate",
                f"The documentation is longer than {MAX_TEXT:,} characters; only its beginning was read. "
                "Record each intervention as its own procedure with its own note.",
                R_TEXT_TRUNCATED,
                "ptbill: bad input gets a clear finding (issue 8, bad input)",
                (itv.id,),
                code,
            )
        )
    if rule.kind == "abstain-none" and code == UNSUPPORTED and not unreadable_ok(note_text(itv)):
        findings.append(
            Finding(
                F_TEXT_UNREADABLE,
                "high",
                "The documentation could not be read as text (mostly symbols, control characters, another "
                "script, or one unbroken run of characters); nothing was classified. Check the note's "
                "encoding or re-enter it.",
                R_TEXT_UNREADABLE,
                "ptbill: bad input gets a clear finding (issue 8, bad input)",
                (itv.id,),
                code,
            )
        )
    return Classification(
        code=code,
        alternatives=tuple(alts),
        confidence=round(max(0.0, min(1.0, confidence)), 3),
        evidence=tuple(evidence),
        findings=tuple(findings),
        rule_ids=tuple(rule_ids),
    )


def _concept_of(comp: Compiled, code: str) -> str | None:
    concept = comp.concept_of_code.get(code)
    if concept is not None:
        return concept
    if code == "97014":
        return "estim_unattended"
    return None


# --- therapy relevance -------------------------------------------------------------------------


def relevance_with(comp: Compiled, itv: Intervention) -> str | None:
    for c in itv.codings:
        system, code = c.system or "", (c.code or "").strip()
        if system == CPT and (code.startswith("97") or ("cpt", code) in comp.code_map):
            return None
        if (system in HCPCS_SYSTEMS or system.startswith("https://www.cms.gov/Medicare/Coding/HCPCS")) and (
            ("hcpcs", code) in comp.code_map
        ):
            return None
        if system == SNOMED:
            row = comp.code_map.get(("snomed", code))
            if row is not None:
                return None if row.relevance == "therapy" else row.relevance
    texts = [itv.full_text(), *(c.display or "" for c in itv.codings if c.system != CPT)]
    texts.extend(c.display or c.code or "" for c in itv.categories)
    for p in itv.performers:
        texts.extend(f.display or "" for f in p.function)
    therapy_generic = therapy_specific = nontherapy = False
    for t in texts:
        if not t:
            continue
        _toks, triples = text_signals(comp, t[:MAX_TEXT])
        for s, ctx, _h in triples:
            if ctx == "goal" or ctx == "reason" or ctx == _REPORT:
                continue
            if s == "none.nontherapy":
                nontherapy = True
            elif s in comp.therapy_signals:
                if s in comp.specific_signals:
                    therapy_specific = True
                else:
                    therapy_generic = True
    if therapy_specific or (therapy_generic and not nontherapy):
        return None
    return "not-therapy"
