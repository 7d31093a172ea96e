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
_CLAUSE_CHARS = str.maketrans({c: " | " for c in ";,()[]{}!?\n\r\t"})
_PERIOD = re.compile(r"\.(?!\d)")
_DASH = re.compile(r"(?:^|\s)-+(?:\s|$)")
_CHUNK = re.compile(r"[a-z0-9]+(?:[/:\-][a-z0-9]+)*/?|<->|<>|->|=>|[>&#+|]")
_PART = re.compile(r"[a-z]+|\d+")
_CLAUSE_WORDS = {("then",): (BREAK,), ("followed", "by"): (BREAK,)}


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
        self._sym = {k: tuple(_PART.findall(v)) for k, v in sym.items()}
        self._chunk_cache: dict[str, tuple[str, ...]] = {}
        self._words = {k: tuple(v.split()) for k, v in words.items()}
        self._words.update(_CLAUSE_WORDS)
        self._max_n = max((len(k) for k in self._words), default=1)
        self._multi_first = {k[0] for k in self._words if len(k) > 1}
        self._uni = {k[0]: v for k, v in self._words.items() if len(k) == 1}

    def tokens(self, raw: str) -> tuple[str, ...]:
        s = raw
        if self._cs_rx is not None:
            cs = self._cs
            s = self._cs_rx.sub(lambda m: f" {cs[m.group(0)]} ", s)
        s = s.lower().translate(_CLAUSE_CHARS)
        if "." in s:
            s = _PERIOD.sub(" | ", s)
        if "-" in s:
            s = _DASH.sub(" | ", s)
        toks: list[str] = []
        cache = self._chunk_cache
        for chunk in _CHUNK.findall(s):
            parts = cache.get(chunk)
            if parts is None:
                parts = self._chunk(chunk)
                if len(cache) < 100_000:
                    cache[chunk] = parts
            toks.extend(parts)
        out: list[str] = []
        words, multi_first, max_n = self._words, self._multi_first, self._max_n
        if multi_first.isdisjoint(toks):  # common case: unigram lookups only
            get = self._uni.get
            for t in toks:
                exp1 = get(t)
                if exp1 is None:
                    out.append(t)
                else:
                    out.extend(exp1)
            return tuple(out)
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
        return tuple(out)

    def _chunk(self, chunk: str) -> tuple[str, ...]:
        """Base tokens of one chunk: a symbolic abbreviation, or its letter and digit runs."""
        if chunk == BREAK:
            return (BREAK,)
        exp = self._sym.get(chunk)
        if exp is not None:
            return exp
        if "/" in chunk:
            k = chunk.index("/") + 1
            head = self._sym.get(chunk[:k])
            if head is not None:
                return head + self._chunk(chunk[k:]) if chunk[k:] else head
        if ":" in chunk:  # 3:1 ratios, times
            return tuple(_PART.findall(chunk))
        return tuple(_PART.findall(chunk))


def _alternation(mapping: dict[str, str], flags: int) -> re.Pattern[str]:
    parts = []
    for m in sorted(mapping, key=len, reverse=True):
        p = re.escape(m)
        if m[0].isalnum():
            p = r"\b" + p
        if m[-1].isalnum():
            p = p + r"\b"
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
    exact: tuple[str, ...] | None = None  # fast path: every token is an exact word

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
        words = tuple(v for _, v in pat) if exact == len(pat) else None
        return Phrase(text, tuple(pat), signals, weight, row_id, (-solid, -exact, -len(text)), words)


@dataclass(slots=True)
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
        self._cand_cache: dict[str, tuple[tuple[Phrase, tuple[str, ...] | None, int, str | None], ...]] = {}

    def _candidates(self, tok: str) -> tuple[tuple[Phrase, tuple[str, ...] | None, int, str | None], ...]:
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
        res = tuple(
            (p, p.exact, len(p.exact) if p.exact is not None else len(p.pattern), _second(p)) for p in found
        )
        if len(self._cand_cache) < 50_000:
            self._cand_cache[tok] = res
        return res

    def scan(self, tokens: Sequence[str]) -> list[Hit]:
        toks = tuple(tokens)
        hits: list[Hit] = []
        i, n = 0, len(toks)
        cache, compute = self._cand_cache, self._candidates
        while i < n:
            tok = toks[i]
            cands = cache.get(tok)
            if cands is None:
                cands = compute(tok)
            end = -1
            for ph, ex, ln, second in cands:
                if ln == 1:
                    end = i + 1  # the candidate index already matched the first token
                elif ex is not None:
                    if toks[i : i + ln] == ex:
                        end = i + ln
                    else:
                        continue
                else:
                    if second is not None and (i + 1 >= n or toks[i + 1] != second):
                        continue
                    end = _match(ph.pattern, 0, toks, i)
                    if end < 0:
                        continue
                hits.append(Hit(i, end, ph, " ".join(toks[i:end])))
                break
            i = end if end > i else i + 1
        return hits


def _second(p: Phrase) -> str | None:
    """The phrase's second token when it must be that exact word (cheap pre-check before _match)."""
    if len(p.pattern) > 1 and p.pattern[1][0] == "exact":
        return p.pattern[1][1]
    return None


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
