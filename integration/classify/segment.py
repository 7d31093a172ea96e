"""Documentation -> documented items: the pieces of one Procedure's text that each describe one intervention.

Pure and linear in the text's length (every pattern is a bounded regex or one left-to-right pass; no
backtracking over unbounded spans). Each item keeps its character span in the text it came from, so the
evidence shown to a person points at what was written.

What splits:

* **flowsheet rows**: two or more lines with ``|`` or tab cells are a table; each row is an item (its cells
  are the item's parameters); a header row (``Exercise | Sets x reps | Load | Notes``) is not an item;
* **one-line sections** separated by ``|`` (template macros: ``Manual Therapy [x] ... | Ther Ex [x] ...``);
* **lines**, **numbered lists** (``1) ... 2) ...``, ``1. ... 2. ...``; only a run counted from 1), bullets;
* **strong separators**: ``;``, a sentence end (``. `` before a capital), ``then`` / ``followed by``;
* **headings**: a short label ending in ``:`` (``Ther act:``, ``O:``, ``Work conditioning:``) is kept apart
  from the items under it (until the next heading). SOAP sections that report no service today (``S:``,
  ``A:``, ``P:``, goals) hold no items;
* **commas** only between interventions: a comma piece that starts like a parameter, a cue or a purpose
  (``glutes``, ``blue TB``, ``3x15``, ``cues for ...``, ``min A``, ``for quad strength``) belongs to the item
  before it, so ``bridges 2x15, glutes, blue TB`` is one item; so does a piece without a dose after one
  without a dose. A purpose written once at the end of a comma list (``squats 3x10, lunges 3x10 for quad
  strength``) is one intent for the whole list: the list is one item.

Minutes: an item's own ``N min`` (digits or words: "ten minutes"); ``min A`` (minimal assistance) and
seconds are not minutes. A heading's minutes (``Ther Ex [x] 15 min: ...``) belong to the whole section,
which is then one item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_SEGMENTS = 200  # beyond this a text is not split (one item); classification stays linear anyway
_HEADING_MAX_CHARS = 60
_HEADING_MAX_WORDS = 10

# --- structural vocabulary (syntax of notes, not billing rules) ----------------------------------------
# first words of a comma piece that continue the item before it: cues, assistance, parameters, purpose,
# side, load, devices named as the exercise's equipment
_CONTINUE_WORDS = frozenset(
    """
    cue cues cueing cued vc vcs tc tcs verbal tactile visual feedback mirror focus focusing focused
    emphasis min mod max minimal moderate maximal minimum maximum assist assistance cga sba mi
    independent indep supervision supervised contact guard standby with w w/ without w/o no for to so in
    on at using via each ea per both bil bilat bilateral b l r lt rt left right x reps rep sets set hold
    holds held sec secs seconds second s lb lbs kg # oz pounds weight wt resistance res red green blue
    yellow black silver gold grey gray purple tb band theraband tubing level lvl speed incline grade rpe
    hr bp spo2 o2 vitals pain nprs vas tolerated tol good fair poor fatigue rest rests resting breaks
    break until x1 x2 x3 x5 x10 increased decreased incr decr improved progressed progressing up down
    ext flex eo ec airex foam eyes open closed ue le uei nwb wbat pwb ttwb fwb ad rw fww spc qc sc hhw
    hha als purpose aim stated intent goal return returned demo demonstrated verbalized verbalised able
    spo
    """.split()
)
_PURPOSE_START = re.compile(r"(?:for|to|in order to|so that|so|focus(?:ing)? on|targeting)\b", re.I)
_JOIN_WORDS = frozenset({"and", "&", "+", "also", "plus", "then", "as", "well"})
_JOIN_FIRST = frozenset("aA&+pPtTwW")
_FIRST_WORD = re.compile(r"(\S+)(?:\s+|$)")
_COMMA_OR_BRACKET = re.compile(r"[,()\[\]{}]")
_REMARK = re.compile(
    r"\s*(?:(?:pt|patient)\s+)?(?:then\s+)?(?:tolerated|tol\b|purpose|aim\b|stated aim|goal of|intent|"
    r"focus(?:ing)? on|for (?:improved|increased|strength|endurance|rom|balance|stability)|"
    r"to (?:improve|increase|strengthen))",
    re.I,
)
# a strong separator, a list number or a template box: the full pass is needed (see _one_item)
_STRONG_CHARS = re.compile(r"[;\n\r|\t\u2022]")
_TRIGGER = re.compile(r"\.\s+[A-Z]|\d[.)]\s")
_SEQ_WORDS = re.compile(r"\b(?:then|followed by|after that)\b")
_COMMA_SEQUENCE = re.compile(
    r",\s*(?:and\s+)?(?:at the end|in the end|after(?:wards?)?|finally|lastly|last|next|later|before)\b", re.I
)
_PURPOSE_TAIL = re.compile(r"\s((?:for|to improve|to increase|to strengthen|in order to|so that)\s)", re.I)
_SEQUENCE = re.compile(
    r"\s*(?:and\s+)?(?:at the end|in the end|after(?:wards?)?|finally|lastly|last|next|later|before)\b", re.I
)
_DOSE = re.compile(
    r"\d\s*[x\u00d7]\s*\d|(?<![a-z])[x\u00d7]\s?\d|\d\s*(?:min|minutes?|reps?|repetitions|times|laps|sets|secs?|seconds|s|ft"
    r"|feet|m|meters|metres|yards|yd|lengths|trials|bouts|rounds|steps|stairs|each|ea)\b",
    re.I,
)
_PARAM_START = re.compile(r"\s*(?:\d|x\s?\d|#)", re.I)
_LINE = re.compile(r"[^\r\n]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'/\-]*|\d+")

# minutes: "12 min", "10-min", "8 minutes", "ten minutes", "15'"; not "min A" / "min assist" (assistance)
_NUM_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUM_WORDS.update({"twenty-five": 25, "thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60})
_UNIT = re.compile(r"minutes|minute|mins|min|mn|'")
_UNIT_END = re.compile(r"(?![a-z])")
_NOT_MINUTES = re.compile(r"\s?(?:a\b|assist|\(a\))")
_NUMBER_BEFORE = re.compile(
    r"(?<![\w.])(\d{1,3}|"
    + "|".join(sorted(map(re.escape, _NUM_WORDS), key=len, reverse=True))
    + r")\s?-?\s?$"
)
# a heading: a short label and a colon at the start of a piece ("Ther act:", "O:", "1:1 aquatic" is not one)
_HEADING = re.compile(
    r"\s*([A-Za-z](?:[^:\n|;]|(?<=\d):(?=\d)){0," + str(_HEADING_MAX_CHARS - 1) + r"}?)\s*:(?!\d)\s*"
)
# SOAP and other sections that document no service furnished today
_NO_SERVICE = frozenset(
    """
    s subjective a assessment assess p plan plans goal goals ltg stg ltgs stgs dx diagnosis hx history
    pmh precautions impression prognosis next visit next session response
    """.split()
)
_SECTION_ALIASES = {"next visit", "next session", "plan of care", "pt response"}

# strong separators inside a line: ";", a sentence end before a capital, then / followed by
_STRONG = re.compile(r";|\.(?=\s+[A-Z])|\b(?i:then|followed by|after that)\b")
_HEADING_NEXT = re.compile(r"\s+[A-Z][A-Za-z ]{0,20}:(?!\d)")
_SENTENCE_KEEP = frozenset({"dr", "vs", "approx", "e.g", "i.e", "st", "mr", "mrs", "ms", "no", "fig", "etc"})
_NUMBERED = re.compile(r"(?:(?<=\s)|^)\(?(\d{1,2})[.)]\s+(?=[A-Za-z])")
_WORD_BEFORE = re.compile(r"([A-Za-z.]+)$")
_NOT_LETTER = re.compile(r"[^a-z ]")
_NUM_MARK = re.compile(r"\d[.)]\s")
_BULLET = re.compile(r"\s*[-*\u2022\u00b7]\s+")
_CELL_SEP = re.compile(r"[|\t]")
_HEADER_WORDS = frozenset(
    """
    exercise exercises intervention interventions task tasks activity activities time min mins minutes
    duration sets reps set rep load weight resistance notes note comments comment params parameters
    vitals response treatment tx procedure procedures area region side cues assist assistance equipment
    """.split()
)
_TIME_HEADERS = frozenset({"time", "min", "mins", "minutes", "duration"})
_BLANK = re.compile(r"[\s_.\-]*(?:\[\s*\][\s_.\-]*)*")
_CODE_IN_PARENS = re.compile(r"\(\s*(?:cpt\s*)?[0-9G]\d{4}\s*\)", re.I)
_CHECKED = re.compile(r"\[\s*[xX\u2713\u2714]\s*\]")
_UNCHECKED = re.compile(r"\[\s*\]")


class _TooMany(Exception):
    pass


@dataclass(frozen=True)
class Segment:
    """One documented item: its span in the text, the text to classify, its minutes and its heading."""

    start: int
    end: int
    text: str  # what is classified (the span's text; a shared trailing purpose may be appended)
    minutes: int | None = None
    heading: str | None = None  # the label of the heading it stands under ("Ther act"), if any
    heading_start: int | None = None
    heading_end: int | None = None


@dataclass(frozen=True)
class Heading:
    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Segmentation:
    segments: tuple[Segment, ...]
    headings: tuple[Heading, ...] = ()
    truncated: bool = False  # more than MAX_SEGMENTS pieces: not split


def minutes_in(text: str) -> int | None:
    """The minutes an item documents for itself (the last ``N min`` in it), or None."""
    low = text.lower()
    if "min" not in low and "'" not in text and "mn" not in low:
        return None
    value = None
    for u in _UNIT.finditer(low):  # literal units first (fast), then the number just before each
        after = _UNIT_END.match(low, u.end())
        if u.group(0) != "'" and after is None:
            continue  # "minimal", "mins" handled, "mnemonic" not
        if _NOT_MINUTES.match(low, u.end()):
            continue  # "min A", "min assist": minimal assistance
        m = _NUMBER_BEFORE.search(low, max(0, u.start() - 16), u.start())
        if m is None:
            continue
        g = m.group(1)
        n = _NUM_WORDS.get(g)
        value = n if n is not None else int(g)
    return value if value is not None and 0 < value <= 600 else None


def segment(text: str) -> Segmentation:
    """Split ``text`` into documented items (see the module docstring)."""
    quick = _one_item(text)
    if quick is not None:
        return quick
    pieces: list[_Piece] = []
    state = _State()
    try:
        _split(text, pieces, state)
    except _TooMany:
        s, e = _strip(text, 0, len(text))
        return Segmentation((Segment(s, e, text[s:e]),), truncated=True)
    segs = tuple(
        Segment(
            p.start,
            p.end,
            p.text,
            minutes_in(p.minutes_text if p.minutes_text is not None else text[p.start : p.end]),
            p.heading.label if p.heading else None,
            p.heading.start if p.heading else None,
            p.heading.end if p.heading else None,
        )
        for p in pieces
    )
    return Segmentation(segs, tuple(state.headings))


def _split(text: str, pieces: list[_Piece], state: _State) -> None:
    lines = [(m.start(), m.end()) for m in _LINE.finditer(text)]
    table = sum(1 for ln in lines if len(_cells(text, *ln)) >= 2) >= 2
    header_done = False
    for s, e in lines:
        cells = _cells(text, s, e)
        if table and len(cells) >= 2:
            if not header_done and _is_header(text, cells):
                header_done = True
                state.time_cols = {
                    i for i, (cs, ce) in enumerate(cells) if text[cs:ce].lower() in _TIME_HEADERS
                }
                continue
            header_done = True
            _row(text, s, e, cells, pieces, state)
        elif len(cells) >= 2 and sum(1 for c in cells if _labelled(text, *c)) >= 2:
            # one-line template sections: "Manual Therapy [x] ... | Ther Ex [x] ... | Neuro Re-ed [ ]"
            for cs, ce in cells:
                if _label_only(text, cs, ce):  # "THERAPEUTIC ACTIVITY (97530) [X]": heads what follows
                    label = Heading(cs, ce, text[cs:ce])
                    state.heading, state.pinned, state.no_service = label, label, False
                    state.headings.append(label)
                    continue
                _prose(text, cs, ce, pieces, state)
            state.heading = state.pinned = None
        elif len(cells) >= 2:  # one flowsheet row without a header: one item
            _row(text, s, e, cells, pieces, state)
        else:
            _prose(text, s, e, pieces, state)
        if len(pieces) > MAX_SEGMENTS:
            raise _TooMany


def _one_item(text: str) -> Segmentation | None:
    """The common case without the full pass: one line (with at most one heading at its start) that nothing
    can split -- no strong separator, and no comma between two dosed pieces or before a new step. None:
    take the full pass."""
    if _needs_full_pass(text):
        return None
    s, e = _strip(text, 0, len(text))
    if e <= s:
        return Segmentation(())
    heading: Heading | None = None
    if ":" in text:
        h = _heading_at(text, s, e)
        if h is None or not _is_heading_label(h.group(1)) or ":" in text[h.end() : e]:
            return None
        label = h.group(1).strip()
        if _NOT_LETTER.sub("", label.lower()).strip() in _NO_SERVICE or _BLANK.fullmatch(text[h.end() : e]):
            return None
        heading = Heading(h.start(1), h.end(1), label)
        s = h.end()
    body = text[s:e]
    if "," in body and (_COMMA_SEQUENCE.search(body) is not None or _two_doses(body)):
        return None
    if "[" in body or _PARAM_START.match(body):
        return None
    seg = Segment(
        s,
        e,
        body,
        minutes_in(body),
        heading.label if heading else None,
        heading.start if heading else None,
        heading.end if heading else None,
    )
    return Segmentation((seg,), (heading,) if heading else ())


def _needs_full_pass(text: str) -> bool:
    """A strong separator, a list number or a sentence end may be in ``text`` (cheap string tests first)."""
    if _STRONG_CHARS.search(text) is not None:
        return True
    if (". " in text or ") " in text) and _TRIGGER.search(text) is not None:
        return True
    low = text.lower()
    return ("then" in low or "followed by" in low or "after that" in low) and _SEQ_WORDS.search(
        low
    ) is not None


def _two_doses(t: str) -> bool:
    """Two comma pieces in a row each carry a dose (the only way a comma separates items without a step
    word)."""
    before = False
    for piece in t.split(","):
        dosed = _DOSE.search(piece) is not None
        if dosed and before:
            return True
        before = dosed
    return False


# --- internals ---------------------------------------------------------------------------------------


@dataclass
class _Piece:
    start: int
    end: int
    text: str
    heading: Heading | None
    minutes_text: str | None = None  # where its minutes are read (a heading's), None: its own span


class _State:
    def __init__(self) -> None:
        self.heading: Heading | None = None
        self.pinned: Heading | None = None  # a template's category label: inner labels do not replace it
        self.no_service = False
        self.headings: list[Heading] = []
        self.time_cols: set[int] = set()


def _cells(text: str, s: int, e: int) -> list[tuple[int, int]]:
    line = text[s:e]
    if "|" not in line and "\t" not in line:
        return []
    out: list[tuple[int, int]] = []
    pos = s
    for m in _CELL_SEP.finditer(text, s, e):
        cs, ce = _strip(text, pos, m.start())
        if ce > cs:
            out.append((cs, ce))
        pos = m.end()
    cs, ce = _strip(text, pos, e)
    if ce > cs:
        out.append((cs, ce))
    return out


def _is_header(text: str, cells: list[tuple[int, int]]) -> bool:
    words = [text[cs:ce].lower() for cs, ce in cells]
    if any(ch.isdigit() for w in words for ch in w):
        return False
    return any(set(_WORD.findall(w)) & _HEADER_WORDS for w in words)


def _row(text: str, s: int, e: int, cells: list[tuple[int, int]], pieces: list[_Piece], st: _State) -> None:
    """A flowsheet row: one item; its minutes from a time column or any ``N min`` cell."""
    if _only_unchecked(text[s:e]):
        return
    minutes_text = None
    if st.time_cols:
        minutes_text = " ".join(text[cs:ce] for i, (cs, ce) in enumerate(cells) if i in st.time_cols)
        if minutes_text and minutes_in(minutes_text) is None and re.fullmatch(r"\s*\d{1,3}\s*", minutes_text):
            minutes_text = minutes_text.strip() + " min"
    rs, re_ = cells[0][0], cells[-1][1]
    pieces.append(_Piece(rs, re_, text[rs:re_], None, minutes_text))


def _heading_at(text: str, s: int, e: int) -> re.Match[str] | None:
    """A heading label at ``s`` (only tried when a colon follows within a label's length)."""
    if text.find(":", s, min(e, s + _HEADING_MAX_CHARS + 8)) == -1:
        return None
    return _HEADING.match(text, s, e)


def _labelled(text: str, s: int, e: int) -> bool:
    """A template cell: it has a check box or starts with a label ("Assist: indep")."""
    t = text[s:e]
    if _CHECKED.search(t) or _UNCHECKED.search(t):
        return True
    h = _heading_at(text, s, e)
    return h is not None and _is_heading_label(h.group(1))


def _label_only(text: str, s: int, e: int) -> bool:
    """A checked category label with nothing else: "THERAPEUTIC ACTIVITY (97530) [X]", "Ther Ex [x]"."""
    t = text[s:e]
    if not _CHECKED.search(t):
        return False
    rest = _UNCHECKED.sub(" ", _CHECKED.sub(" ", _CODE_IN_PARENS.sub(" ", t)))
    return (
        ":" not in rest
        and not any(ch.isdigit() for ch in rest)
        and len(rest.split()) <= 4
        and t.rstrip().endswith("]")
    )


def _only_unchecked(t: str) -> bool:
    return "[" in t and _UNCHECKED.search(t) is not None and _CHECKED.search(t) is None


def _prose(text: str, s: int, e: int, pieces: list[_Piece], st: _State) -> None:
    """A line or one-line section: numbered items, strong separators, headings, then comma pieces."""
    if text[s] in "-*\u2022\u00b7":
        b = _BULLET.match(text, s, e)
        if b is not None and b.end() < e:
            s = b.end()
    for ns, ne in _numbered(text, s, e):
        for ps, pe in _strong(text, ns, ne):
            if pieces and not st.no_service and _REMARK.match(text, ps, pe) and pieces[-1].end <= ps:
                last = pieces[
                    -1
                ]  # "; stated aim trunk strength", "then tolerated ...": about the item before
                last.end, last.text = pe, text[last.start : pe]
                continue
            _piece(text, ps, pe, pieces, st)
            if len(pieces) > MAX_SEGMENTS:
                raise _TooMany


def _numbered(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """Split at a run of list numbers counted from 1 (``1) a 2) b``); anything else stays one span."""
    if (text.find(") ", s, e) == -1 and text.find(". ", s, e) == -1) or _NUM_MARK.search(text, s, e) is None:
        return [(s, e)]
    marks: list[tuple[int, int]] = []
    want = 1
    for m in _NUMBERED.finditer(text, s, e):
        if int(m.group(1)) == want:
            marks.append((m.start(), m.end()))
            want += 1
    if len(marks) < 2:
        return [(s, e)]
    out = []
    if marks[0][0] > s:
        out.append((s, marks[0][0]))
    for i, (_ms, me) in enumerate(marks):
        out.append((me, marks[i + 1][0] if i + 1 < len(marks) else e))
    return out


def _strong(text: str, s: int, e: int) -> Iterator[tuple[int, int]]:
    """Spans between strong separators, lazily (a huge text stops at MAX_SEGMENTS, not after its end)."""
    pos = s
    for m in _STRONG.finditer(text, s, e):
        if m.group(0) == ".":
            w = _WORD_BEFORE.search(text[max(s, m.start() - 8) : m.start()])
            if (
                w is not None
                and (w.group(1).lower() in _SENTENCE_KEEP or (len(w.group(1)) == 1 and w.group(1).isupper()))
                and _HEADING_NEXT.match(text, m.end(), e) is None
            ):
                continue  # "approx. Sixty", "Dr. K", an initial; never before a heading ("... s. A: ...")
        if m.group(0) != ";" and len(text[pos : m.start()].split(maxsplit=1)) <= 1:
            continue  # "pt then tolerated ...": one word is no item, keep it with what follows
        a, b = _strip(text, pos, m.start())
        if b > a:
            yield a, b
        pos = m.end()
    a, b = _strip(text, pos, e)
    if b > a:
        yield a, b


def _piece(text: str, s: int, e: int, pieces: list[_Piece], st: _State) -> None:
    s, e = _trim_joins(text, s, e)
    if e <= s:
        return
    h = _heading_at(text, s, e)
    if h is not None and _is_heading_label(h.group(1)):
        label = h.group(1).strip()
        key = _NOT_LETTER.sub("", label.lower()).strip()
        content = text[h.end() : e]
        if content.strip() and _BLANK.fullmatch(content):
            return  # "Functional task trained: ______": a blank field documents nothing
        if st.pinned is None:
            st.no_service = key in _NO_SERVICE or key in _SECTION_ALIASES
            head = Heading(h.start(1), h.end(1), label)
            st.heading = None if st.no_service else head
            if not st.no_service:
                st.headings.append(head)
        else:
            head = st.pinned
        s = h.end()
        if e <= s:
            return
        if minutes_in(label) is not None:  # "Ther Ex [x] 15 min: a, b": one item with the section's minutes
            if not st.no_service and not _only_unchecked(text[head.start : e]):
                pieces.append(_Piece(s, e, text[s:e], head, label))
            return
    if st.no_service:
        return
    if _only_unchecked(text[s:e]):
        return
    _commas(text, s, e, pieces, st.heading)


def _is_heading_label(label: str) -> bool:
    words = label.split()
    if not words or len(words) > _HEADING_MAX_WORDS:
        return False
    return not re.search(r"\d\s*x\s*\d", label, re.I)  # "3x10: ..." is no label


def _commas(text: str, s: int, e: int, pieces: list[_Piece], heading: Heading | None) -> None:
    """Comma pieces of one strong piece; continuations join the item before them."""
    if "," not in text[s:e]:
        pieces.append(_Piece(s, e, text[s:e], heading))
        return
    spans: list[tuple[int, int]] = []
    depth = 0
    pos = s
    for m in _COMMA_OR_BRACKET.finditer(text, s, e):
        ch, i = m.group(0), m.start()
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0 and not (0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()):
            spans.append((pos, i))
            pos = i + 1
            if len(spans) > MAX_SEGMENTS:
                raise _TooMany
    spans.append((pos, e))
    items: list[list[int]] = []  # [start, end] of each item so far
    shared_purpose: tuple[int, int] | None = None
    n = len(spans)
    for k, (a, b) in enumerate(spans):
        a, b = _trim_joins(text, a, b)
        if b <= a:
            continue
        if items and _continues(text[a:b], text[items[-1][0] : items[-1][1]]):
            if k == n - 1 and len(items) >= 2 and _PURPOSE_START.match(text, a, b):
                shared_purpose = (a, b)
            items[-1][1] = b
            continue
        items.append([a, b])
    if shared_purpose is None and len(items) >= 2:
        # "squats 3x10, lunges 3x10, step-ups 3x10 for quad strength": a purpose after the last dose
        la, lb = items[-1]
        last_dose = None
        for m in _DOSE.finditer(text, la, lb):
            last_dose = m
        if last_dose is not None:
            p = _PURPOSE_TAIL.search(text, last_dose.end(), lb)
            if p is not None:
                shared_purpose = (p.start(1), lb)
    if shared_purpose is not None:  # one purpose written for the whole list: one intent, one item
        items = [[items[0][0], items[-1][1]]]
    for a, b in items:
        pieces.append(_Piece(a, b, text[a:b], heading))


def _continues(piece: str, before: str) -> bool:
    """Whether a comma piece continues the item before it.

    A comma separates two items only when the piece opens a new step ("..., after that", "..., and at the
    end") or when it and the item before it each carry their own dose ("bike 8 min, bridges 2x10") and
    the piece does not start like a parameter, cue, purpose, side or load.
    """
    if _SEQUENCE.match(piece):
        return False
    if _PARAM_START.match(piece):
        return True
    if not (_DOSE.search(piece) and _DOSE.search(before)):
        return True
    words = []
    for m in _WORD.finditer(piece):
        words.append(m.group(0))
        if len(words) > 2:
            break
    if not words:
        return True
    first = words[0].lower()
    if first in _CONTINUE_WORDS:
        return True
    return len(words) <= 2 and not any(ch.isdigit() for ch in piece)  # "glutes", "blue TB", "EO/EC"


def _trim_joins(text: str, s: int, e: int) -> tuple[int, int]:
    """Without leading / trailing joining words ("and", "then", "also", "as well as") and punctuation."""
    s, e = _strip(text, s, e)
    while s < e and text[s] in _JOIN_FIRST:
        m = _FIRST_WORD.match(text, s, e)
        if m is None or m.group(1).lower() not in _JOIN_WORDS:
            break
        s, e = _strip(text, m.end(), e)
    while s < e:
        k = max(text.rfind(" ", s, e), text.rfind("\t", s, e)) + 1
        if k <= s or e - k > 4 or text[k:e].lower() not in _JOIN_WORDS:
            break
        s, e = _strip(text, s, k)
    return s, e


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and (text[s].isspace() or text[s] in ".,;:-|"):
        s += 1
    while e > s and (text[e - 1].isspace() or text[e - 1] in ",;:-|"):
        e -= 1
    return s, e
