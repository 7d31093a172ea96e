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
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BREAK = "|"
# Templates (LABELING.md §8.1: only checked boxes and filled fields document anything). An unchecked box and
# its label up to the next box or separator, a blank field (``___``) and a placeholder all become the token
# BLANK_FIELD (the lexicons map it to a signal; a template with nothing else specific abstains); a checked
# box is only a separator.
BLANK_FIELD = "blankfield"
_UNCHECKED_RX = re.compile(
    # the box, then its label: up to the next box, a separator, " -" or a double space
    r"(?:\[\s{0,2}\]|\(\s{0,2}\)|[\u2610\u25a1\u25a2\u274f])"
    r"(?:(?!\s[-\u2013\u2014]|\s\s)[^\[\]\u2610-\u2612\u25a0-\u25a3|;,\n.:()]){0,40}"
)
_CHECKED_RX = re.compile(r"\[\s?[xX\u2713\u2714*+]\s?\]|\([xX]\)|[\u2611\u2612\u25a0\u25a3]")
_BLANK_RX = re.compile(
    r"_{2,}|\*{3,}|\?{3,}|<(?:insert|enter|type|describe|specify|add|list|fill)[a-z ]{0,30}>"
    r"|\[(?:insert|enter|type|describe|specify|add|list|fill)[a-z ]{0,30}\]|\{\{[^{}\n]{0,40}\}\}"
    r"|(?<![a-z])n/a(?![a-z])",
    re.IGNORECASE,
)


def fill_template(raw: str) -> str:
    """The text with template boxes, blanks and placeholders replaced (see BLANK_FIELD)."""
    s = raw
    ascii_text = s.isascii()
    if "[" in s or "()" in s or "( )" in s or "(x)" in s or "(X)" in s or not ascii_text:
        s = _UNCHECKED_RX.sub(f" | {BLANK_FIELD} | ", _CHECKED_RX.sub(" , ", s))
    if "__" in s or "**" in s or "??" in s or "<" in s or "{{" in s or "[" in s or "/a" in s or "/A" in s:
        s = _BLANK_RX.sub(f" {BLANK_FIELD} ", s)
    return s


def fold(raw: str) -> str:
    """Accents and compatibility forms to ASCII (``mobilización`` -> ``mobilizacion``, full-width letters);
    characters with no ASCII form are dropped. Cheap for ASCII text (returned as it is)."""
    if raw.isascii():
        return raw
    return unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")


_GAP_MAX = 3
# each of ",()[]{}" and tab becomes a " | " clause break; a sentence break is two clause breaks in a row
# (" | | "): some spans (a patient's report) reach over commas and dashes but end with the sentence
_CLAUSE_RX = re.compile("[" + re.escape(",()[]{}\t") + "]")
_SENTENCE_RX = re.compile("[" + re.escape(";!?\n\r") + "]")
SENTENCE = (BREAK, BREAK)
_PERIOD = re.compile(r"\.(?!\d)")
_DASH = re.compile(r"(?:^|\s)-+(?:\s|$)")
_CHUNK = re.compile(r"[a-z0-9]+(?:[/:\-][a-z0-9]+)*/?|<->|<>|->|=>|[>&#+|]")
_PART = re.compile(r"[a-z]+|\d+")
_CLAUSE_WORDS = {("then",): (BREAK,), ("followed", "by"): (BREAK,)}
_CACHE_MAX = 100_000  # entries per per-word / per-token cache (bounded memory on odd input)


@dataclass(frozen=True)
class Abbrev:
    match: str
    expansion: str
    case_sensitive: bool


class Normalizer:
    """Raw note text -> tokens. Compiled once per table set; per-word results are cached (bounded)."""

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
        self._cs = {k: f" {v} " for k, v in cs.items()}
        self._cs_rx = _alternation(cs, flags=0) if cs else None
        # a necessary condition for any case-sensitive match (the literals without word boundaries): a much
        # cheaper scan that lets most notes skip the substitution
        self._cs_pre = re.compile("|".join(map(re.escape, sorted(cs, key=len, reverse=True)))) if cs else None
        self._sym = {k: tuple(_PART.findall(v)) for k, v in sym.items()}
        self._words = {k: tuple(v.split()) for k, v in words.items()}
        self._words.update(_CLAUSE_WORDS)
        self._multi_first = frozenset(k[0] for k in self._words if len(k) > 1)
        lens: dict[str, set[int]] = {}
        for k in self._words:
            if len(k) > 1:
                lens.setdefault(k[0], set()).add(len(k))
        self._ngram_lens = {t: tuple(sorted(ns, reverse=True)) for t, ns in lens.items()}
        self._uni = {k[0]: v for k, v in self._words.items() if len(k) == 1}
        # word (whitespace-separated, after the string-level steps) -> its expanded tokens, or None when one
        # of its base tokens may start a multi-token abbreviation (those notes take the n-gram path)
        self._word_exp: dict[str, tuple[str, ...] | None] = {}
        self._word_base: dict[str, tuple[str, ...]] = {}

    def _sub_cs(self, m: re.Match[str]) -> str:
        return self._cs[m.group(0)]

    def tokens(self, raw: str) -> tuple[str, ...]:
        s = fill_template(raw)
        if not s.isascii():
            s = fold(s)
        if self._cs_rx is not None and self._cs_pre is not None and self._cs_pre.search(s) is not None:
            s = self._cs_rx.sub(self._sub_cs, s)
        s = _CLAUSE_RX.sub(" | ", s.lower())
        if ";" in s or "\n" in s or "!" in s or "?" in s or "\r" in s:
            s = _SENTENCE_RX.sub(" | | ", s)
        if "." in s:
            s = _PERIOD.sub(" | | ", s)
        if "-" in s:
            s = _DASH.sub(" | ", s)
        # no token spans whitespace (_CHUNK has no space in it), so a note's tokens are its words' tokens
        words = s.split()
        out: list[str] = []
        cache = self._word_exp
        get = cache.get
        for w in words:
            exp = get(w)
            if exp is None:
                if w in cache:
                    return self._ngram_tokens(words)
                exp = self._learn(w)
                if exp is None:
                    return self._ngram_tokens(words)
            out += exp
        return tuple(out)

    def _learn(self, word: str) -> tuple[str, ...] | None:
        base = self._base(word)
        exp: tuple[str, ...] | None
        if self._multi_first.isdisjoint(base):
            get = self._uni.get
            out: list[str] = []
            for t in base:
                e = get(t)
                if e is None:
                    out.append(t)
                else:
                    out += e
            exp = tuple(out)
        else:
            exp = None
        if len(self._word_exp) < _CACHE_MAX:
            self._word_exp[word] = exp
        return exp

    def _base(self, word: str) -> tuple[str, ...]:
        """Base tokens of one word: its chunks' symbolic-abbreviation expansions or letter and digit runs."""
        base = self._word_base.get(word)
        if base is None:
            parts: list[str] = []
            for chunk in _CHUNK.findall(word):
                parts += self._chunk(chunk)
            base = tuple(parts)
            if len(self._word_base) < _CACHE_MAX:
                self._word_base[word] = base
        return base

    def _ngram_tokens(self, words: list[str]) -> tuple[str, ...]:
        """Tokens when multi-token abbreviations may occur: longest n-gram first, then single tokens."""
        toks: list[str] = []
        for w in words:
            toks += self._base(w)
        out: list[str] = []
        words_map, multi_first, lens_of, uni = self._words, self._multi_first, self._ngram_lens, self._uni
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            if t in multi_first:
                for k in lens_of[t]:
                    if k > n - i:
                        continue
                    exp = words_map.get(tuple(toks[i : i + k]))
                    if exp is not None:
                        out += exp
                        i += k
                        break
                else:
                    exp1 = uni.get(t)
                    if exp1 is None:
                        out.append(t)
                    else:
                        out += exp1
                    i += 1
                continue
            exp1 = uni.get(t)
            if exp1 is None:
                out.append(t)
            else:
                out += exp1
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
    not_after: tuple[str, ...] = ()  # signal prefixes: a hit right after a hit with one of these is dropped

    @staticmethod
    def parse(
        text: str, signals: tuple[str, ...], weight: float, row_id: str, not_after: tuple[str, ...] = ()
    ) -> Phrase:
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
        return Phrase(
            text, tuple(pat), signals, weight, row_id, (-solid, -exact, -len(text)), words, tuple(not_after)
        )


@dataclass(slots=True)
class Hit:
    start: int
    end: int  # exclusive
    phrase: Phrase
    text: str  # the matched tokens joined
    clause: int = 0  # number of clause breaks before the hit (hits never contain a break)


# A candidate phrase at a token: (phrase, how, length, tail) where how is _NOW (the first token, and the
# second when the candidate list was picked by it, are all there is to check), _TAIL (exact words: compare
# toks[i+2:i+length] with tail) or _FULL (general pattern: _match from the first token).
_NOW, _TAIL, _FULL = 0, 1, 2
_Cand = tuple[Phrase, int, int, tuple[str, ...]]
_Cands = tuple[_Cand, ...]
_NO_CANDS: dict[str | None, _Cands] = {None: ()}


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
        self._max_stem = max((len(s) for s in stems), default=0)
        # token -> {second token: candidates in rank order; None: candidates that do not need a fixed second}
        self._cand_cache: dict[str, dict[str | None, _Cands]] = {}

    def _candidates(self, tok: str) -> dict[str | None, _Cands]:
        """Phrases that may start at ``tok``, most specific first, split by the exact second token they need.

        Picking the list by the next token only drops candidates whose fixed second word differs, so the first
        match in the picked list is the first match in the full rank order."""
        c = self._cand_cache.get(tok)
        if c is not None:
            return c
        keys: list[str] = [tok]
        if tok.isdigit():
            keys.append("#")
        for n in range(self._min_stem, min(len(tok), self._max_stem) + 1):  # bounded: long tokens stay linear
            if tok[:n] in self._stems:
                keys.append(tok[:n] + "*")
        found: list[Phrase] = []
        for key in keys:
            found.extend(self._by_first.get(key, ()))
        found.sort(key=lambda p: p.rank)
        seconds = {s for p in found if (s := _second(p)) is not None}
        res: dict[str | None, _Cands]
        if not found:
            res = _NO_CANDS
        else:
            res = {}
            for nxt in (None, *sorted(seconds)):
                picked: list[_Cand] = []
                for p in found:
                    second = _second(p)
                    if second is not None and second != nxt:
                        continue
                    if p.exact is not None:
                        ln = len(p.exact)
                        picked.append((p, _NOW, ln, ()) if ln <= 2 else (p, _TAIL, ln, p.exact[2:]))
                    elif len(p.pattern) == 1:
                        picked.append((p, _NOW, 1, ()))
                    else:
                        picked.append((p, _FULL, 0, ()))
                res[nxt] = tuple(picked)
        if len(self._cand_cache) < _CACHE_MAX:
            self._cand_cache[tok] = res
        return res

    def scan(self, tokens: Sequence[str]) -> list[Hit]:
        toks = tuple(tokens)
        hits: list[Hit] = []
        i, n = 0, len(toks)
        clause = 0
        cache, compute = self._cand_cache, self._candidates
        while i < n:
            tok = toks[i]
            by_next = cache.get(tok)
            if by_next is None:
                by_next = compute(tok)
            if by_next is _NO_CANDS:
                if tok == BREAK:
                    clause += 1
                i += 1
                continue
            cands = by_next.get(toks[i + 1]) if i + 1 < n else None
            if cands is None:
                cands = by_next[None]
            end = -1
            for ph, how, ln, tail in cands:
                if how == _NOW:
                    end = i + ln
                elif how == _TAIL:
                    if toks[i + 2 : i + ln] != tail:
                        continue
                    end = i + ln
                else:
                    end = _match(ph.pattern, 0, toks, i)
                    if end < 0:
                        continue
                hits.append(Hit(i, end, ph, " ".join(toks[i:end]), clause))
                break
            if end > i:
                i = end
            else:
                i += 1
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
