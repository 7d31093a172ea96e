"""Deciding an entry from its documented items (pure).

One Procedure's documentation is split into items (``integration.classify.segment``); each item is classified
on its own with the engine's public entry ``classify_with`` (no codings: an item is judged on what it says),
and the entry is decided from them:

* **all coded items one code** -> the entry's classification as the engine made it on the whole text (it sees
  what the items share: the heading's context, a purpose written once for the list). When the engine's code
  differs from the items' and a heading names it ("Ther act:" over isolated exercises), the items decide and
  ``DOC-HEADING-CONTRADICTS`` says so;
* **several codes, every coded item with its own minutes** (summing to no more than the Procedure's
  minutes) -> ``Classification.shares``: one share per code with those minutes; billing makes one line per
  share (``integration/billing/steps/entries.py``), which then goes through the units rules like any other
  line. ``DOC-MIXED-INTERVENTIONS`` (low) names the items per code;
* **several codes without per-item minutes** -> minutes are never moved by weight: the entry keeps the code
  documented on the Procedure when an item supports it, else the best supported code (most items; a tie
  goes to the engine's code on the whole text when it is among them, else the first timed code), and
  ``DOC-MIXED-INTERVENTIONS`` (moderate) names the items per code; billing adds a Task asking the
  clinician to split the minutes (``DOC-SPLIT-MINUTES``).

The engine's UNSUPPORTED on the whole text stands (an aide, a template left blank, a note that documents no
skilled service): items never turn an abstention into a code.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from integration.classify.segment import Heading, Segment, Segmentation, segment
from integration.model import (
    CPT,
    HCPCS_SYSTEMS,
    UNSUPPORTED,
    Classification,
    CodeShare,
    DocumentedItem,
    Evidence,
    Finding,
    Intervention,
    Severity,
)

F_MIXED = "DOC-MIXED-INTERVENTIONS"
F_HEADING = "DOC-HEADING-CONTRADICTS"
RULE_ITEMS = "ENTRY-ITEMS"
RULE_MIXED = "ENTRY-MIXED"
RULE_SHARES = "ENTRY-MIXED-SHARES"
RULE_HEADING = "ENTRY-HEADING"
SOURCE_MIXED = (
    "MBPM ch. 15 §220.3 (each intervention documented and billed as furnished; per-code minutes when several "
    "timed codes are billed); billing-rules.md §5.1; classification issue 8 (items, not strings)"
)
SOURCE_HEADING = (
    "LABELING.md §8.1 (a heading is only a label: when it and the content disagree, code the content)"
)
# findings of the engine on the whole text that the item decision replaces
_REPLACED = frozenset({"DOC-MULTIPLE-INTERVENTIONS"})
_QUOTE_MAX = 60

_LABEL_MAX_WORDS = 4  # a category heading ("Ther act", "Neuro Re-ed [x]"); longer ones are context
_NOT_LETTERS = re.compile(r"[^a-z]")
_LABEL_NOISE = re.compile(r"\[[^\]]{0,3}\]|\(\s*[0-9G]\d{4}\s*\)|\d+\s*min\w*|_+", re.I)

Classifier = Callable[[Intervention], Classification]
LabelClassifier = Callable[[str], tuple[str, tuple[str, ...]]]  # a label -> (code, alternatives)


@dataclass(frozen=True)
class CodeSets:
    """Code categories the decision needs, from core/billable_codes.yaml as of the date of service."""

    untimed: frozenset[str] = frozenset()  # one unit per session: never the dominant code by minutes
    session: frozenset[str] = frozenset()  # evaluations and group therapy: the whole session is one service
    # service-category names ("therapeutic activities", "ther act": the concepts' labels and the abbreviations
    # expanding to them), as letters only: a heading naming one is a label, not context. Empty: any short
    # heading is taken for a label.
    categories: frozenset[str] = frozenset()

    def is_category(self, label: str) -> bool:
        return _is_category(label, self.categories)


@functools.lru_cache(maxsize=4096)
def _is_category(label: str, categories: frozenset[str]) -> bool:
    words = _label_words(label)
    if not words or len(words) > _LABEL_MAX_WORDS:
        return False
    if not categories:
        return True
    key = letters(" ".join(words))
    if key in categories:
        return True
    return len(key) >= 6 and any(
        abs(len(key) - len(c)) <= 3 and (c.startswith(key[:-3]) or key.startswith(c[:-3])) for c in categories
    )


def letters(text: str) -> str:
    """Lower-case letters only ("Neuro Re-ed" -> "neuroreed"): how category names are compared."""
    return _NOT_LETTERS.sub("", text.lower())


_CODING_ONLY = "R-CODING-ONLY"  # the engine's rule: a coded Procedure whose text names nothing


def classify_entry(
    classify_one: Classifier,
    itv: Intervention,
    codes: CodeSets = CodeSets(),
    label_code: LabelClassifier | None = None,
) -> Classification:
    """The entry's classification with its items.

    ``classify_one`` is the engine on one intervention; ``label_code`` the engine's code for a heading's label
    (the caller may cache it: labels repeat); by default ``classify_one`` on the label.
    """
    text = itv.full_text()
    if not text.strip():
        return classify_one(itv)
    try:
        seg = segment(text)
        labels = label_code or _label_classifier(classify_one)
        under = _under_labels(classify_one, itv, seg, labels, codes)
        if under is not None:
            return under
        whole = classify_one(itv)
        return _from_items(classify_one, itv, whole, seg, codes, labels)
    except (ValueError, LookupError, RecursionError):  # never lose the entry: the whole-text decision
        return classify_one(itv)


def _under_labels(
    classify_one: Classifier, itv: Intervention, seg: Segmentation, labels: LabelClassifier, codes: CodeSets
) -> Classification | None:
    """One item under category labels ("Ther act: ..."): a label is only a label, the content is coded (with
    the Procedure's codings); a label naming another code is a finding. None: not that case, or the content
    alone names nothing (then the whole text is classified: a title may be all there is)."""
    if (
        len(seg.segments) != 1
        or not seg.headings
        or not all(codes.is_category(h.label) for h in seg.headings)
    ):
        return None
    named = [(h.label, *labels(h.label)) for h in seg.headings]
    if any(c == UNSUPPORTED or c in codes.session for _, c, _alts in named):
        return None  # a label naming no code, or a group / evaluation: the whole text decides
    s = seg.segments[0]
    content = classify_one(replace(itv, text=s.text, notes=()))
    if content.code == UNSUPPORTED or _CODING_ONLY in content.rule_ids:
        return None  # the content alone names nothing (a code on the Procedure is not content)
    item = _item(s, content)
    contra: list[tuple[str, str, tuple[str, ...]]] = [
        (label, c, (content.code,)) for label, c, _alts in named if c != content.code
    ]
    # what the labels name stays a defensible alternative ("Laundry task:" over carrying a basket)
    alts = tuple(
        dict.fromkeys(
            a
            for a in (*content.alternatives, *(x for _, c, la in named for x in (c, *la)))
            if a != content.code and a != UNSUPPORTED
        )
    )
    if alts != content.alternatives:
        content = _with_alternatives(content, alts)
    if not contra:
        return _with_items(content, (item,))
    return _with_items(_add_findings(content, _heading_findings(itv, contra), RULE_HEADING), (item,))


def _with_alternatives(c: Classification, alts: tuple[str, ...]) -> Classification:
    return _copy(c, alternatives=alts)


def _add_findings(c: Classification, extra: list[Finding], rule_id: str) -> Classification:
    return _copy(c, findings=(*c.findings, *extra), rule_ids=(*c.rule_ids, rule_id))


def _copy(c: Classification, **changes: object) -> Classification:
    """dataclasses.replace without its per-call cost: every field copied, then ``changes`` (a slotted
    Classification takes dataclasses.replace)."""
    if not hasattr(c, "__dict__"):
        return replace(c, **changes)  # type: ignore[arg-type]
    new = object.__new__(Classification)
    new.__dict__.update(c.__dict__)
    for k, v in changes.items():
        object.__setattr__(new, k, v)
    return new


def _from_items(
    classify_one: Classifier,
    itv: Intervention,
    whole: Classification,
    seg: Segmentation,
    codes: CodeSets,
    labels: LabelClassifier,
) -> Classification:
    if len(seg.segments) <= 1:
        if not seg.segments:
            return _with_items(whole, ())
        one = _item(seg.segments[0], whole)
        # one item under headings: only a category heading naming the engine's code can contradict it
        if (
            whole.code == UNSUPPORTED
            or whole.code in codes.session
            or not any(codes.is_category(h.label) and labels(h.label)[0] == whole.code for h in seg.headings)
        ):
            return _with_items(whole, (one,))
    item_cls = [classify_one(item_intervention(itv, s)) for s in seg.segments]
    return decide_entry(itv, whole, seg, item_cls, labels, codes, classify_one)


def _with_items(c: Classification, items: tuple[DocumentedItem, ...]) -> Classification:
    return _copy(c, items=items)


def _label_classifier(classify_one: Classifier) -> LabelClassifier:
    def code(label: str) -> tuple[str, tuple[str, ...]]:
        c = classify_one(Intervention(id="heading", text=label))
        return c.code, c.alternatives

    return code


def item_intervention(itv: Intervention, s: Segment) -> Intervention:
    """One item as an intervention: its text and minutes, the Procedure's site, date and performers."""
    return Intervention(
        id=itv.id,
        text=s.text,
        body_sites=itv.body_sites,
        minutes=s.minutes,
        performed_date=itv.performed_date,
        status=itv.status,
        performers=itv.performers,
        group_size=itv.group_size,
    )


def decide_entry(
    itv: Intervention,
    whole: Classification,
    seg: Segmentation,
    item_cls: Sequence[Classification],
    label_code: LabelClassifier | None = None,
    codes: CodeSets = CodeSets(),
    classify_one: Classifier | None = None,
) -> Classification:
    """Decide an entry from the engine's whole-text classification and its items' (see the module doc)."""
    items = [_item(s, c) for s, c in zip(seg.segments, item_cls, strict=True)]
    heading_code = _heading_codes(seg, items, label_code, codes)
    # a heading with no coded item under it documents the intervention itself ("2nd visit PIP splint: tension
    # adjusted"): it is an item
    for h in seg.headings:
        hc = heading_code.get(h)
        if (
            hc is None
            or hc == UNSUPPORTED
            or any(it.heading == h.label and it.code != UNSUPPORTED for it in items)
        ):
            continue
        at = next((k for k, it in enumerate(items) if it.start >= h.start), len(items))
        items.insert(at, DocumentedItem(h.start, h.end, h.label, hc, heading=None))
    done = tuple(items)
    if whole.code == UNSUPPORTED or whole.code in codes.session:
        return _with_items(whole, done)  # an abstention, a group session or an evaluation is one service
    coded = [(i, it) for i, it in enumerate(done) if it.code != UNSUPPORTED]
    found = list(dict.fromkeys(it.code for _, it in coded))
    if not found:
        return _with_items(whole, done)
    contra = _contradicting(seg, done, heading_code, codes)
    if len(found) >= 2 and any(_covered(c, coded) for c in (whole.code, *found)):
        found = [whole.code]
    if (
        len(found) >= 2
        and classify_one is not None
        and not _differ_in_context(itv, done, coded, classify_one, codes)
    ):
        found = [whole.code]
    if len(found) == 1:
        only = found[0]
        if whole.code == only and not contra:
            return _with_items(whole, done)
        if not contra:
            return _with_items(whole, done)
        return _by_items(itv, whole, done, only, contra)
    return _mixed(itv, whole, done, coded, found, codes, contra)


def _differ_in_context(
    itv: Intervention,
    items: tuple[DocumentedItem, ...],
    coded: list[tuple[int, DocumentedItem]],
    classify_one: Classifier,
    codes: CodeSets,
) -> bool:
    """Whether the items still document several codes read with their context: the heading they stand
    under, or a title before them that names a service category ("Therapeutic exercise. rows 2x10, squats
    x10"). A heading stating a purpose applies to each item under it ("strengthening R hip: squats 3x10")."""
    context: dict[int, str] = {}
    title: str | None = None
    for i, it in enumerate(items):
        if it.code != UNSUPPORTED and it.heading is None and codes.is_category(it.text):
            title = it.text
            continue
        ctx = it.heading or title
        if ctx is not None and it.code != UNSUPPORTED:
            context[i] = ctx
    if not context:
        return True
    seen: set[str] = set()
    for i, it in coded:
        if i in context:
            c = classify_one(
                Intervention(id=itv.id, text=f"{context[i]}: {it.text}", body_sites=itv.body_sites)
            ).code
            seen.add(it.code if c == UNSUPPORTED else c)
        elif not (it.heading is None and codes.is_category(it.text)):
            seen.add(it.code)
    return len(seen) >= 2


def _covered(code: str, coded: list[tuple[int, DocumentedItem]]) -> bool:
    """Every coded item names ``code`` as its code or an alternative: one intervention, described in parts."""
    return all(it.code == code or code in it.alternatives for _, it in coded)


def _heading_codes(
    seg: Segmentation, items: list[DocumentedItem], label_code: LabelClassifier | None, codes: CodeSets
) -> dict[Heading, str]:
    """The code of each heading that can matter: a category label over coded items (a contradiction), or a
    heading with nothing coded under it (it may be the item itself)."""
    if label_code is None:
        return {}
    out = {}
    for h in seg.headings:
        coded_under = any(it.heading == h.label and it.code != UNSUPPORTED for it in items)
        if not coded_under or codes.is_category(h.label):
            out[h] = label_code(h.label)[0]
    return out


def _contradicting(
    seg: Segmentation, items: tuple[DocumentedItem, ...], heading_code: dict[Heading, str], codes: CodeSets
) -> list[tuple[str, str, tuple[str, ...]]]:
    """(label, its code, the codes under it) for each category heading ("Ther act:", "Ther Ex [x]") whose
    code none of the coded items under it documents. A longer heading is context, not a label."""
    out = []
    for h in seg.headings:
        hc = heading_code.get(h, UNSUPPORTED)
        if hc == UNSUPPORTED or not codes.is_category(h.label):
            continue
        under = tuple(
            dict.fromkeys(it.code for it in items if it.heading == h.label and it.code != UNSUPPORTED)
        )
        if under and hc not in under:
            out.append((h.label, hc, under))
    return out


def _label_words(label: str) -> list[str]:
    return [w for w in _LABEL_NOISE.sub(" ", label).split() if w]


def _item(s: Segment, c: Classification) -> DocumentedItem:
    return DocumentedItem(
        start=s.start,
        end=s.end,
        text=s.text,
        code=c.code,
        evidence=tuple(e for e in c.evidence if e.kind != "rule"),
        alternatives=c.alternatives,
        minutes=s.minutes,
        heading=s.heading,
    )


def _by_items(
    itv: Intervention,
    whole: Classification,
    items: tuple[DocumentedItem, ...],
    code: str,
    contra: list[tuple[str, str, tuple[str, ...]]],
) -> Classification:
    ev = [e for it in items if it.code == code for e in it.evidence][:6]
    return Classification(
        code=code,
        alternatives=tuple(dict.fromkeys(a for a in (whole.code, *whole.alternatives) if a != code)),
        confidence=min(whole.confidence, 0.8) if code != whole.code else whole.confidence,
        evidence=(Evidence("rule", RULE_HEADING, RULE_HEADING), *ev)
        if code != whole.code
        else whole.evidence,
        findings=(
            *(x for x in whole.findings if x.line_code in (None, code)),
            *_heading_findings(itv, contra),
        ),
        rule_ids=(*whole.rule_ids, RULE_HEADING),
        items=items,
    )


def _mixed(
    itv: Intervention,
    whole: Classification,
    items: tuple[DocumentedItem, ...],
    coded: list[tuple[int, DocumentedItem]],
    codes: list[str],
    sets: CodeSets,
    contra: list[tuple[str, str, tuple[str, ...]]],
) -> Classification:
    untimed = sets.untimed
    by_code: dict[str, list[int]] = {c: [i for i, it in coded if it.code == c] for c in codes}
    coded_code = _coded(itv)
    minutes = [it.minutes for _, it in coded]
    total = sum(m for m in minutes if m is not None)
    with_minutes = all(m is not None for m in minutes) and (itv.minutes is None or total <= itv.minutes)
    shares: tuple[CodeShare, ...] = ()
    if with_minutes:
        shares = tuple(
            CodeShare(c, sum(items[i].minutes or 0 for i in idx), tuple(idx)) for c, idx in by_code.items()
        )
        timed = [s for s in shares if s.code not in untimed] or list(shares)
        code = coded_code if coded_code in by_code else max(timed, key=lambda s: s.minutes).code
    elif coded_code in by_code:
        code = coded_code
    else:
        most = max(len(v) for v in by_code.values())
        tied = [c for c, v in by_code.items() if len(v) == most]
        timed_tied = [c for c in tied if c not in untimed] or tied
        code = whole.code if whole.code in tied else timed_tied[0]
    per_code = "; ".join(
        f"{c}: "
        + ", ".join(
            f"'{_quote(items[i].text)}'" + (f" {items[i].minutes} min" if with_minutes else "") for i in idx
        )
        for c, idx in by_code.items()
    )
    if shares:
        msg = (
            f"One entry documents {len(codes)} codes, each item with its own minutes ({per_code}); billed as "
            "one line per code with those minutes."
        )
        sev: Severity = "low"
    else:
        basis = "the code on the Procedure" if code == coded_code else "the code with the most items"
        why = (
            f" (the items' minutes, {total}, exceed the entry's {itv.minutes})"
            if all(m is not None for m in minutes)
            else ""
        )
        msg = (
            f"One entry documents {len(codes)} codes ({per_code}) without minutes per item{why}; all minutes "
            f"stay on {code} ({basis}) until the clinician records the minutes of each intervention."
        )
        sev = "moderate"
    findings: list[Finding] = [
        x
        for x in whole.findings
        if x.code not in _REPLACED and not (x.code == "CODE-CONFLICT" and coded_code in by_code)
    ]
    findings.append(
        Finding(F_MIXED, sev, msg, RULE_SHARES if shares else RULE_MIXED, SOURCE_MIXED, (itv.id,), code)
    )
    hd = _heading_findings(itv, contra)
    findings.extend(hd)
    rid = RULE_SHARES if shares else RULE_MIXED
    ev: list[Evidence] = [Evidence("rule", rid, rid)]
    for c, idx in by_code.items():
        ev.extend(Evidence(e.kind, f"{c}: {e.value}", rid) for e in items[idx[0]].evidence[:1])
    return Classification(
        code=code,
        alternatives=tuple(dict.fromkeys(a for a in (*codes, *whole.alternatives) if a != code)),
        confidence=round(min(whole.confidence, 0.7 if shares else 0.6), 3),
        evidence=tuple(ev),
        findings=tuple(findings),
        rule_ids=(*whole.rule_ids, rid, *([RULE_HEADING] if hd else [])),
        shares=shares,
        items=items,
    )


def _heading_findings(itv: Intervention, contra: list[tuple[str, str, tuple[str, ...]]]) -> list[Finding]:
    """A category heading naming a code none of the coded items under it documents (decided by the items)."""
    return [
        Finding(
            F_HEADING,
            "low",
            f"The heading '{_quote(label)}' names {hc} but the items under it document {', '.join(under)}; "
            "coded by the items.",
            RULE_HEADING,
            SOURCE_HEADING,
            (itv.id,),
            None,
        )
        for label, hc, under in contra
    ]


def _coded(itv: Intervention) -> str | None:
    for c in itv.codings:
        system, code = c.system or "", (c.code or "").strip()
        if code and (
            system == CPT or system in HCPCS_SYSTEMS or system.startswith("https://www.cms.gov/Medicare")
        ):
            return code
    return None


def _quote(t: str) -> str:
    t = " ".join(t.split())
    return t if len(t) <= _QUOTE_MAX else t[: _QUOTE_MAX - 1] + "…"
