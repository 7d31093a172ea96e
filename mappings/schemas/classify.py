"""Schemas of the classification tables (mappings/classify/*.yaml).

Tables (one concern per file):
  classify_concepts          intervention concepts -> billable code (+ default alternatives)
  classify_signals           the signal vocabulary (families, whether a signal identifies a therapy procedure)
  classify_code_map          CPT/HCPCS/SNOMED/local codings -> concept and/or signals, therapy relevance
  classify_abbreviations     charting abbreviations and common typos, expanded once during normalisation
  classify_lex_*             phrase lexicons (one concern each) -> signals
  classify_rules             ordered decision rules (first match wins)
  classify_doc_requirements  what the documentation must contain for a code (findings when missing)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import field_validator, model_validator

from mappings.tables import RowBase, Schema, Tables

SystemGroup = Literal["cpt", "hcpcs", "snomed", "local"]
Context = Literal["main", "intent", "goal", "cue", "reason", "report"]
CONTEXTS = ("main", "intent", "goal", "cue", "reason", "report", "any")
_SIG_RX = re.compile(r"^(?:(main|intent|goal|cue|reason|report|any):)?([a-z0-9_]+(?:\.[a-z0-9_]+)*)(\.\*)?$")


class ConceptRow(RowBase):
    concept: str
    code: str  # billable code or UNSUPPORTED
    label: str
    alternatives: tuple[str, ...] = ()  # codes


class SignalRow(RowBase):
    signal: str
    family: str
    # what the signal says the item targets (the concept model: body function -> 97110/97112, activity ->
    # 97530/97535/97116) and its WHO ICF category (b: body functions, d: activities and participation)
    target: Literal["body_function", "activity", "none"] = "none"
    icf: str | None = None
    therapy: bool = False  # a hit identifies a rehab-therapy procedure (therapy_relevance)
    specific: bool = False  # names a concrete intervention (defeats vagueness abstention)
    derived: bool = False  # computed by the engine, not matched from text
    weight_class: Literal["none", "exercise", "task"] = "none"


class CodeMapRow(RowBase):
    system: SystemGroup
    code: str
    display: str
    concept: str | None = None
    signals: tuple[str, ...] = ()
    relevance: str = "therapy"  # "therapy" or a skip reason such as "not-therapy"


class AbbreviationRow(RowBase):
    match: str
    expansion: str
    case_sensitive: bool = False

    @field_validator("match")
    @classmethod
    def _nonblank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("match must not be blank")
        return v


class LexiconRow(RowBase):
    id: str
    signal: str
    phrases: tuple[str, ...]
    also: tuple[str, ...] = ()  # extra signals emitted by the same phrases
    weight: float = 1.0
    # signal prefixes ("anat.", "anat.muscle"): a hit of these phrases directly after a hit emitting one of
    # them is dropped ("hamstring group" is a muscle group, not a group session)
    not_after: tuple[str, ...] = ()

    @field_validator("phrases")
    @classmethod
    def _phrases_ok(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("phrases must not be empty")
        for p in v:
            toks = p.split()
            if not toks:
                raise ValueError("blank phrase")
            if toks[0] in ("...", "#") and len(toks) == 1:
                raise ValueError(f"phrase {p!r} matches anything")
            if toks[0] == "..." or toks[-1] == "...":
                raise ValueError(f"phrase {p!r} may not start or end with a gap")
            for t in toks:
                if t not in ("...", "#") and not re.fullmatch(r"[a-z0-9]+\*?", t):
                    raise ValueError(f"phrase {p!r}: token {t!r} must be lowercase a-z0-9 (optional *)")
                if t.endswith("*") and len(t) < 4:
                    raise ValueError(f"phrase {p!r}: stem {t!r} too short (min 3 letters)")
        return v


class RuleRow(RowBase):
    id: str
    order: int
    concept: str
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    confidence: float
    alternatives: tuple[str, ...] = ()  # concepts
    alternatives_if: tuple[dict[str, str], ...] = ()  # {when: signal-expr, concept: concept}
    finding_code: str | None = None
    finding_severity: Literal["high", "moderate", "low"] = "moderate"
    finding_message: str | None = None
    # abstain-guardrail: no skilled service furnished (blank template, delegated delivery, patient report)
    kind: Literal["decide", "abstain-vague", "abstain-unskilled", "abstain-none", "abstain-guardrail"] = (
        "decide"
    )

    @field_validator("confidence")
    @classmethod
    def _conf(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("confidence must be within [0, 1]")
        return v

    @field_validator("all", "any", "none")
    @classmethod
    def _exprs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for e in v:
            if not _SIG_RX.match(e):
                raise ValueError(f"bad signal expression {e!r} (use [ctx:]family.signal or family.*)")
        return v

    @field_validator("alternatives_if")
    @classmethod
    def _altif(cls, v: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
        for d in v:
            if set(d) != {"when", "concept"}:
                raise ValueError("alternatives_if entries need exactly 'when' and 'concept'")
            if not _SIG_RX.match(d["when"]):
                raise ValueError(f"bad signal expression {d['when']!r}")
        return v

    @model_validator(mode="after")
    def _has_condition_or_default(self) -> RuleRow:
        if self.finding_code and not self.finding_message:
            raise ValueError("finding_code needs finding_message")
        return self


class DocRequirementRow(RowBase):
    id: str
    concept: str
    element: str
    finding_code: str
    severity: Literal["high", "moderate", "low"] = "moderate"
    message: str
    any_signals: tuple[str, ...] = ()
    fields: tuple[Literal["body_sites", "group_size", "reasons"], ...] = ()

    @field_validator("any_signals")
    @classmethod
    def _exprs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for e in v:
            if not _SIG_RX.match(e):
                raise ValueError(f"bad signal expression {e!r}")
        return v


LEXICON_TABLES = (
    "classify_lex_crp", "classify_lex_needling", "classify_lex_cognitive", "classify_lex_sensory", "classify_lex_reintegration", "classify_lex_slp", "classify_lex_wider",  # noqa: E501 - issue 8 §5 wider code set; first, so their phrases win exact ties
    "classify_lex_parameters",
    "classify_lex_exercise",
    "classify_lex_functional",
    "classify_lex_gait",
    "classify_lex_balance",
    "classify_lex_manual",
    "classify_lex_adl",
    "classify_lex_group",
    "classify_lex_wheelchair",
    "classify_lex_orthotics",
    "classify_lex_modalities",
    "classify_lex_vague",
    "classify_lex_unskilled",
    "classify_lex_negations",
    "classify_lex_intent",
    "classify_lex_other",
)


# --- cross-reference checks -------------------------------------------------------------------


def _signal_names(t: Tables) -> set[str]:
    return {r.signal for r in t["classify_signals"].rows}


def _expr_ok(expr: str, names: set[str]) -> bool:
    m = _SIG_RX.match(expr)
    if not m:
        return False
    name, star = m.group(2), m.group(3)
    if star:
        return any(n == name or n.startswith(name + ".") for n in names)
    return name in names


def _concepts(t: Tables) -> set[str]:
    return {r.concept for r in t["classify_concepts"].rows}


def _check_concepts(t: Tables) -> Iterable[tuple[str, str]]:
    codes = {r.code for r in t["billable_codes"].rows} if "billable_codes" in t else set()
    for i, r in enumerate(t["classify_concepts"].rows):
        for c in (r.code, *r.alternatives):
            if c != "UNSUPPORTED" and codes and c not in codes:
                yield f"row {i + 1} (concept={r.concept!r})", f"code {c!r} is not in billable_codes"


def _check_code_map(t: Tables) -> Iterable[tuple[str, str]]:
    concepts, names = _concepts(t), _signal_names(t)
    for i, r in enumerate(t["classify_code_map"].rows):
        label = f"row {i + 1} (system={r.system!r}, code={r.code!r})"
        if r.concept is not None and r.concept not in concepts:
            yield label, f"unknown concept {r.concept!r}"
        for s in r.signals:
            if s not in names:
                yield label, f"unknown signal {s!r}"


def _check_lexicon(table: str) -> Any:
    def check(t: Tables) -> Iterable[tuple[str, str]]:
        names = _signal_names(t)
        derived = {r.signal for r in t["classify_signals"].rows if r.derived}
        for i, r in enumerate(t[table].rows):
            for s in (r.signal, *r.also):
                if s not in names:
                    yield f"row {i + 1} (id={r.id!r})", f"unknown signal {s!r} (add it to classify_signals)"
                elif s in derived:
                    yield f"row {i + 1} (id={r.id!r})", f"signal {s!r} is derived; lexicons may not emit it"
            for pre in r.not_after:
                if not any(n == pre or n.startswith(pre.rstrip(".") + ".") for n in names):
                    yield f"row {i + 1} (id={r.id!r})", f"not_after {pre!r} names no known signal"

    return check


def _check_rules(t: Tables) -> Iterable[tuple[str, str]]:
    concepts, names = _concepts(t), _signal_names(t)
    orders: dict[int, str] = {}
    for i, r in enumerate(t["classify_rules"].rows):
        label = f"row {i + 1} (id={r.id!r})"
        if r.concept not in concepts:
            yield label, f"unknown concept {r.concept!r}"
        for c in r.alternatives:
            if c not in concepts:
                yield label, f"unknown alternative concept {c!r}"
        for e in (*r.all, *r.any, *r.none):
            if not _expr_ok(e, names):
                yield label, f"signal expression {e!r} names no known signal"
        for d in r.alternatives_if:
            if not _expr_ok(d["when"], names):
                yield label, f"alternatives_if {d['when']!r} names no known signal"
            if d["concept"] not in concepts:
                yield label, f"alternatives_if concept {d['concept']!r} unknown"
        if r.order in orders:
            yield label, f"order {r.order} already used by rule {orders[r.order]!r}"
        orders[r.order] = r.id


def _check_docs(t: Tables) -> Iterable[tuple[str, str]]:
    concepts, names = _concepts(t), _signal_names(t)
    for i, r in enumerate(t["classify_doc_requirements"].rows):
        label = f"row {i + 1} (id={r.id!r})"
        if r.concept not in concepts:
            yield label, f"unknown concept {r.concept!r}"
        for e in r.any_signals:
            if not _expr_ok(e, names):
                yield label, f"signal expression {e!r} names no known signal"
        if not r.any_signals and not r.fields:
            yield label, "requirement needs any_signals or fields"


SCHEMAS: dict[str, Schema[Any]] = {
    "classify_concepts": Schema(ConceptRow, key=("concept",), crossref=_check_concepts),
    "classify_signals": Schema(SignalRow, key=("signal",)),
    "classify_code_map": Schema(CodeMapRow, key=("system", "code"), crossref=_check_code_map),
    "classify_abbreviations": Schema(AbbreviationRow, key=("match", "case_sensitive")),
    "classify_rules": Schema(RuleRow, key=("id",), crossref=_check_rules),
    "classify_doc_requirements": Schema(DocRequirementRow, key=("id",), crossref=_check_docs),
    **{name: Schema(LexiconRow, key=("id",), crossref=_check_lexicon(name)) for name in LEXICON_TABLES},
    **{n: Schema(LexiconRow, key=("id",), crossref=_check_lexicon(n)) for n in ("classify_side_muscles", "classify_side_eval")},  # noqa: E501 - issue 8 §5: read by classify/wider.py only
}
