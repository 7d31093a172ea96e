"""Text normalisation and phrase matching for the classifier (compiled once per table set).

Normalisation (once per note): case-sensitive abbreviations on the raw text (``US`` = ultrasound),
lowercase, symbolic abbreviations (``w/``, ``s/p``, ``<>``, ``#``), clause breaks become a ``|`` token,
letters and digits are split, punctuation dropped, then word abbreviations and typos are expanded token
by token (n-grams first).

Matching: every lexicon phrase is a token pattern (exact word, ``stem*``, ``#`` = a number, ``...`` = a gap
of up to three tokens inside one clause). Scanning left to right, the most specific phrase starting at a
token wins and consumes its tokens (so "rolling walker" is a device, not bed-mobility "rolling").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BREAK = "|"
_GAP_MAX = 3
_SPLIT_ALNUM = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_CLAUSE = re.compile(r"[;,()\[\]{}!?\n\r\t]|\.(?!\d)|\s-+\s|\s-+$|^-+\s|\bthen\b|\bfollowed by\b")
_NON_TOKEN = re.compile(r"[^a-z0-9| ]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Abbrev:
    match: str
    expansion: str
    case_sensitive: bool


class Normalizer:
    def __init__(self, abbrevs: Iterable[Abbrev]) -> None:
        cs: dict[str, str] = {}
        sym: dict[str, str] = {}
        words: dict[tuple[str, ...], str] = {}
        for a in abbrevs:
            if a.case_sensitive:
                cs[a.match] = a.expansion
            elif re.fullmatch(r"[a-z0-9 ]+", a.match):
                words[tuple(a.match.split())] = a.expansion
            else:
                sym[a.match.lower()] = a.expansion
        self._cs = cs
        self._cs_rx = _alternation(cs, flags=0) if cs else None
        self._sym = sym
        self._sym_rx = _alternation(sym, flags=0) if sym else None
        self._words = {k: tuple(v.split()) for k, v in words.items()}
        self._max_n = max((len(k) for k in words), default=1)
        self._multi_first = {k[0] for k in words if len(k) > 1}

    def tokens(self, raw: str) -> tuple[str, ...]:
        s = raw
        if self._cs_rx is not None:
            cs = self._cs
            s = self._cs_rx.sub(lambda m: f" {cs[m.group(0)]} ", s)
        s = s.lower()
        if self._sym_rx is not None:
            sym = self._sym
            s = self._sym_rx.sub(lambda m: f" {sym[m.group(0)]} ", s)
        s = _CLAUSE.sub(" | ", s)
        s = _SPLIT_ALNUM.sub(" ", s)
        s = _NON_TOKEN.sub(" ", s)
        toks = s.split()
        out: list[str] = []
        words, multi_first, max_n = self._words, self._multi_first, self._max_n
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            if t in multi_first:
                for k in range(min(max_n, n - i), 1, -1):
                    exp = words.get(tuple(toks[i : i + k]))
                    if exp is not None:
                        out.extend(exp)
                        i += k
                        break
                else:
                    exp1 = words.get((t,))
                    out.extend(exp1 if exp1 is not None else (t,))
                    i += 1
                continue
            exp1 = words.get((t,))
            if exp1 is not None:
                out.extend(exp1)
            else:
                out.append(t)
            i += 1
        # collapse repeated / leading / trailing breaks
        cleaned: list[str] = []
        for t in out:
            if t == BREAK and (not cleaned or cleaned[-1] == BREAK):
                continue
            cleaned.append(t)
        while cleaned and cleaned[-1] == BREAK:
            cleaned.pop()
        return tuple(cleaned)


def _alternation(mapping: dict[str, str], flags: int) -> re.Pattern[str]:
    parts = []
    for m in sorted(mapping, key=len, reverse=True):
        p = re.escape(m)
        if m[0].isalnum():
            p = r"(?<![A-Za-z0-9])" + p
        if m[-1].isalnum():
            p = p + r"(?![A-Za-z0-9])"
        parts.append(p)
    return re.compile("|".join(parts), flags)


# --- phrase matching ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Phrase:
    text: str
    pattern: tuple[tuple[str, str], ...]  # (kind, value): kind in exact|stem|num|gap
    signals: tuple[str, ...]
    weight: float
    row_id: str
    rank: tuple[int, int, int]

    @staticmethod
    def parse(text: str, signals: tuple[str, ...], weight: float, row_id: str) -> Phrase:
        pat: list[tuple[str, str]] = []
        for tok in text.split():
            if tok == "...":
                pat.append(("gap", ""))
            elif tok == "#":
                pat.append(("num", ""))
            elif tok.endswith("*"):
                pat.append(("stem", tok[:-1]))
            else:
                pat.append(("exact", tok))
        solid = sum(1 for k, _ in pat if k != "gap")
        exact = sum(1 for k, _ in pat if k == "exact")
        return Phrase(text, tuple(pat), signals, weight, row_id, (-solid, -exact, -len(text)))


@dataclass(frozen=True)
class Hit:
    start: int
    end: int  # exclusive
    phrase: Phrase
    text: str  # the matched tokens joined


class PhraseMatcher:
    def __init__(self, phrases: Sequence[Phrase]) -> None:
        by_first: dict[str, list[Phrase]] = {}
        stems: set[str] = set()
        for ph in phrases:
            kind, val = ph.pattern[0]
            key = "#" if kind == "num" else (val + "*" if kind == "stem" else val)
            if kind == "stem":
                stems.add(val)
            by_first.setdefault(key, []).append(ph)
        self._by_first = {k: sorted(v, key=lambda p: p.rank) for k, v in by_first.items()}
        self._stems = stems
        self._min_stem = min((len(s) for s in stems), default=3)
        self._key_cache: dict[str, tuple[str, ...]] = {}
        self._cand_cache: dict[str, tuple[Phrase, ...]] = {}

    def _candidates(self, tok: str) -> tuple[Phrase, ...]:
        c = self._cand_cache.get(tok)
        if c is not None:
            return c
        keys: list[str] = [tok]
        if tok.isdigit():
            keys.append("#")
        for n in range(self._min_stem, len(tok) + 1):
            if tok[:n] in self._stems:
                keys.append(tok[:n] + "*")
        found: list[Phrase] = []
        for key in keys:
            found.extend(self._by_first.get(key, ()))
        found.sort(key=lambda p: p.rank)
        res = tuple(found)
        if len(self._cand_cache) < 50_000:
            self._cand_cache[tok] = res
        return res

    def scan(self, toks: Sequence[str]) -> list[Hit]:
        hits: list[Hit] = []
        i, n = 0, len(toks)
        while i < n:
            tok = toks[i]
            if tok == BREAK:
                i += 1
                continue
            best: Hit | None = None
            for ph in self._candidates(tok):
                end = _match(ph.pattern, 0, toks, i)
                if end > 0:
                    best = Hit(i, end, ph, " ".join(toks[i:end]))
                    break
            if best is None:
                i += 1
            else:
                hits.append(best)
                i = best.end
        return hits


def _tok_ok(kind: str, val: str, tok: str) -> bool:
    if tok == BREAK:
        return False
    if kind == "exact":
        return tok == val
    if kind == "stem":
        return tok.startswith(val)
    return tok.isdigit()  # num


def _match(pat: tuple[tuple[str, str], ...], p: int, toks: Sequence[str], i: int) -> int:
    """End index (exclusive) of a match of pat[p:] at toks[i:], or -1."""
    n = len(toks)
    while p < len(pat):
        kind, val = pat[p]
        if kind == "gap":
            for skip in range(0, _GAP_MAX + 1):
                j = i + skip
                if j > n or any(t == BREAK for t in toks[i:j]):
                    break
                end = _match(pat, p + 1, toks, j)
                if end > 0:
                    return end
            return -1
        if i >= n or not _tok_ok(kind, val, toks[i]):
            return -1
        i += 1
        p += 1
    return i
