"""Evaluation complexity (PT 97161-97163, OT 97165-97167) from what the note documents.

The level is the lowest level met by every component (shared/eval/LABELING.md §8.8, after Clinicient and
theraplatform); the components and their bands are the CPT descriptors' (APTA and AOTA, 2017):

  PT  history: personal factors / comorbidities affecting the plan of care: 0 / 1-2 / 3+
      examination: elements of body structures/functions, activity, participation: 1-2 / 3 / 4+
      clinical presentation: stable / evolving / unstable
  OT  history and records review: brief / expanded / extensive
      performance deficits: 1-3 / 4-5 / 6+ (CPT's bands 1-3 / 3-5 / 5+ overlap; an overlap takes the lower)
      comorbidities affecting occupational performance: none / one ("may") / two or more ("present")
      modification of tasks or assistance during the assessment: none / minimal-moderate / significant
      treatment options: limited / several / multiple

A component the note does not document supports only the lowest level: the suggestion is never guessed up.
``Assessment.documented`` is what the documented components alone would support, so a person can attest the
rest (the caller writes the finding; the billing documentation step turns it into a Task).

Vocabulary: mappings/classify/side_eval.yaml (rows counted once each); list structure ("Exam: a, b, c",
"Factors affecting POC: a; b", "(4)") is read from the raw text. Pure: plain data in, frozen dataclasses out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from integration.classify.sidelex import SideHit

Discipline = Literal["PT", "OT"]
LOW, MODERATE, HIGH = 1, 2, 3
LEVEL_NAMES = {LOW: "low", MODERATE: "moderate", HIGH: "high"}

_SENTENCE = re.compile(r"(?<=[.;!?])\s+|\n+")
_PARENS = re.compile(r"\([^()]*\)")
_LIST_END = r"(?:\.(?=\s|$)|\||\n|$)"  # a list ends with its sentence, a flowsheet cell or a line
_EXAM_LIST = re.compile(
    r"\b(?:exam(?:ination)?|examined|objective|tests and measures|assessed|re-?measured)\s*[:\-]\s*(.+?)"
    + _LIST_END
)
_FACTOR_LIST = re.compile(
    r"\b(?:personal factors|comorbidities|factors affecting(?: the)? (?:poc|plan of care|care))"
    r"\s*[:\-]\s*(.+?)" + _LIST_END
)
_DEFICIT_COUNT = re.compile(
    r"\bdeficits?\b[^.]*?\((\d{1,2})(?:\s*deficits?)?\)|\b(\d{1,2})\s+(?:performance\s+)?deficits\b"
)
_DEFICIT_LIST = re.compile(r"\bdeficits?\s*[:\-]\s*(.+?)" + _LIST_END)
_AFFECTS = re.compile(r"\baffect(?:s|ed|ing)?\b|\bimpact(?:s|ed|ing)?\b|\blimit(?:s|ed|ing)\b")
_SPLIT_WIDE = re.compile(r"[,;/]|\band\b|\bplus\b")
# an unchecked template box with its label, or a blank: documents nothing (LABELING.md §8, conventions 1)
# an evaluation's components are read from its first 20,000 characters (an evaluation note is far shorter;
# the bound keeps the list regexes linear on any input)
_MAX_CHARS = 20_000
_UNCHECKED = re.compile(r"\[\s*\]\s*[^\[\]|;,.\n]*|_{3,}")
_REVIEW = {"evalx.review_brief": LOW, "evalx.review_expanded": MODERATE, "evalx.review_extensive": HIGH}
_MODIFICATION = {"evalx.modif_none": LOW, "evalx.modif_some": MODERATE, "evalx.modif_significant": HIGH}
_OPTIONS = {"evalx.options_limited": LOW, "evalx.options_several": MODERATE, "evalx.options_multiple": HIGH}
_PRESENTATION = {"evalx.pres_stable": LOW, "evalx.pres_evolving": MODERATE, "evalx.pres_unstable": HIGH}


@dataclass(frozen=True)
class Component:
    name: str
    level: int | None  # LOW/MODERATE/HIGH, None when the note does not document it
    basis: str  # what was read ("2 factors: commute, hypermobility"), for the evidence and the Task


@dataclass(frozen=True)
class Assessment:
    discipline: Discipline
    components: tuple[Component, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.level is None)

    @property
    def documented(self) -> int | None:
        """The level the documented components support (None when nothing is documented)."""
        levels = [c.level for c in self.components if c.level is not None]
        return min(levels) if levels else None

    @property
    def supported(self) -> int:
        """The level the note supports: undocumented components support only the lowest level."""
        return LOW if self.missing else (self.documented or LOW)


Scanner = Callable[[str], Sequence[SideHit]]


def strip_unchecked(text: str) -> str:
    """The text without unchecked template boxes (``[ ] evolving``) and blanks (``___``)."""
    return _UNCHECKED.sub(" ", text) if "[" in text or "___" in text else text


def assess(discipline: Discipline, text: str, scan: Scanner) -> Assessment:
    """Assess one evaluation note; ``scan`` runs the side_eval matcher over a piece of raw text."""
    text = strip_unchecked(text[:_MAX_CHARS])
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    per_sentence = [(s, list(scan(s))) for s in sentences]
    hits = [h for _, hs in per_sentence for h in hs]
    comps: tuple[Component, ...]
    if discipline == "PT":
        comps = (_pt_history(text, hits), _pt_exam(text, hits), _presentation(hits))
    else:
        comps = (
            _banded("history review", hits, _REVIEW),
            _ot_deficits(text),
            _ot_comorbidities(per_sentence, hits),
            _banded("modification of tasks or assistance", hits, _MODIFICATION),
            _banded("treatment options", hits, _OPTIONS),
        )
    return Assessment(discipline, comps)


def _distinct(hits: Sequence[SideHit], signal: str) -> dict[str, str]:
    """row id -> first matched text, for the hits of ``signal`` (a kind counts once)."""
    out: dict[str, str] = {}
    for h in hits:
        if h.signal == signal:
            out.setdefault(h.row_id, h.text)
    return out


def _list_items(m: re.Match[str] | None, *, semicolons_first: bool) -> list[str]:
    if m is None:
        return []
    body = _PARENS.sub(" ", m.group(1)).strip()
    if body.isdigit():  # "factors affecting POC: 2"
        return ["(as counted in the note)"] * min(int(body), 20)
    if semicolons_first and ";" in body:
        parts: list[str] = []
        for seg in body.split(";"):  # "lives alone; comorbidities: DM, HTN"
            _head, colon, rest = seg.partition(":")
            parts.extend(rest.split(",") if colon else [seg])
    else:
        parts = _SPLIT_WIDE.split(body)
    return [p.strip() for p in parts if re.search(r"[a-z]", p)]


def _pt_history(text: str, hits: Sequence[SideHit]) -> Component:
    name = "history (personal factors and comorbidities affecting the plan of care)"
    if any(h.signal == "evalx.hist_none" for h in hits):
        return Component(name, LOW, "none affecting the plan of care")
    listed = _list_items(_FACTOR_LIST.search(text.lower()), semicolons_first=True)
    kinds = _distinct(hits, "evalx.factor")
    n = len(listed) if listed else len(kinds)
    what = ", ".join(listed or kinds.values())
    if n == 0:
        return Component(name, None, "not documented")
    return Component(name, MODERATE if n <= 2 else HIGH, f"{n}: {what}")


def _pt_exam(text: str, hits: Sequence[SideHit]) -> Component:
    name = "examination (body structures/functions, activity, participation)"
    listed = _list_items(_EXAM_LIST.search(text.lower()), semicolons_first=False)
    kinds = _distinct(hits, "evalx.exam")
    n = max(len(listed), len(kinds)) if listed else len(kinds)
    what = ", ".join(listed if len(listed) >= len(kinds) else kinds.values())
    if n == 0:
        return Component(name, None, "not documented")
    return Component(name, LOW if n <= 2 else (MODERATE if n == 3 else HIGH), f"{n} elements: {what}")


def _presentation(hits: Sequence[SideHit]) -> Component:
    return _banded("clinical presentation", hits, _PRESENTATION)


def _banded(name: str, hits: Sequence[SideHit], bands: dict[str, int]) -> Component:
    """The highest band documented (a note naming an unstable sign has an unstable presentation)."""
    found = [(bands[h.signal], h.text) for h in hits if h.signal in bands]
    if not found:
        return Component(name, None, "not documented")
    level, said = max(found)
    return Component(name, level, f"{LEVEL_NAMES[level]} ({said})")


def _ot_deficits(text: str) -> Component:
    name = "performance deficits"
    low = text.lower()
    m = _DEFICIT_COUNT.search(low)
    if m is not None:
        n = int(m.group(1) or m.group(2))
        basis = f"{n} (as counted in the note)"
    else:
        items = _list_items(_DEFICIT_LIST.search(low), semicolons_first=False)
        n = len(items)
        basis = f"{n}: {', '.join(items)}"
    if n == 0:
        return Component(name, None, "not documented")
    return Component(name, LOW if n <= 3 else (MODERATE if n <= 5 else HIGH), basis)


def _ot_comorbidities(per_sentence: list[tuple[str, list[SideHit]]], hits: Sequence[SideHit]) -> Component:
    name = "comorbidities affecting occupational performance"
    if any(h.signal == "evalx.hist_none" for h in hits):
        return Component(name, LOW, "none")
    affecting = [h for s, hs in per_sentence if _AFFECTS.search(s.lower()) for h in hs]
    kinds = _distinct(affecting, "evalx.factor") or _distinct(hits, "evalx.factor")
    if not kinds:
        return Component(name, None, "not documented")
    n = len(kinds)
    return Component(name, MODERATE if n == 1 else HIGH, f"{n}: {', '.join(kinds.values())}")
