"""Tolerant reading: tokens as clinicians really type or dictate them -> the lexicons' words.

Applied to the normalised tokens of a note (after abbreviations), token by token, before phrase matching:

1. a token the lexicons know (an exact phrase word, or a word starting with a lexicon stem) stays as it is;
2. British/Australian spelling (``mobilisation``, ``practised``, ``programme``, ``haemo``): the respellings of
   ``BRITISH_RULES`` are tried, and one the lexicons know is taken;
3. speech-to-text splits a word in two (``quadra ped``, ``dumb bells``, ``tread mill``): two neighbouring
   tokens whose concatenation is (or is one edit from) a lexicon word are read as that word, unless both are
   lexicon words already;
4. a misspelling (``strech``, ``sholders``, ``balence``): a token that is neither a lexicon word nor an
   English word (symspellpy's frequency dictionary) is looked up in the lexicon vocabulary with symspellpy
   (edit distance 1 for 4-5 letters, 2 for longer, same first letter); the closest, most common word wins.

Every change is kept as a ``Reading`` (what was written, what it was read as) so the evidence can show it.
Tokens longer than ``MAX_TOKEN`` or with digits are never looked up (bounded work per token: time stays
linear in the length of the note); per-token results are cached (bounded).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from symspellpy import SymSpell, Verbosity

MAX_TOKEN = 24  # longer tokens are not corrected (no real word is longer; bounded lookup cost)
MIN_TOKEN = 4  # shorter tokens are too ambiguous to correct ("hp", "ot", "sl")
_CACHE_MAX = 100_000
_PART_MIN = 3  # each part of a dictation split is at least this long ("tread mill", "quadra ped")
# a stem "knows" a word only up to this many letters after it ("mob*" does not know "mobilise")
_STEM_ENDING = 5
BREAK = "|"

# British/Australian -> American respellings tried on a token the lexicons do not know (suffix first, then
# infix). Source: Merriam-Webster / Oxford "British and American spelling" conventions (-ise/-ize, -our/-or,
# -tre/-ter, -mme/-m, ae/oe -> e, -yse/-yze, doubled l before a suffix, practise (verb) -> practice).
BRITISH_RULES: tuple[tuple[str, str], ...] = (
    ("isation", "ization"),
    ("isations", "izations"),
    ("ised", "ized"),
    ("ises", "izes"),
    ("ising", "izing"),
    ("iser", "izer"),
    ("ise", "ize"),
    ("yse", "yze"),
    ("ysed", "yzed"),
    ("ysing", "yzing"),
    ("our", "or"),
    ("ours", "ors"),
    ("oured", "ored"),
    ("tre", "ter"),
    ("tres", "ters"),
    ("mme", "m"),
    ("mmes", "ms"),
    ("lled", "led"),
    ("lling", "ling"),
    ("ise", "ice"),
    ("ised", "iced"),
    ("ising", "icing"),
    ("ogue", "og"),
    ("ence", "ense"),
)
BRITISH_INFIX: tuple[tuple[str, str], ...] = (("ae", "e"), ("oe", "e"), ("our", "or"))


@dataclass(frozen=True)
class Reading:
    """One tolerant-reading change: tokens ``start``..``end`` (exclusive, in the read tokens) were written as
    ``written``."""

    start: int
    end: int
    written: str
    read: str
    how: str  # "spelling" (British/Australian), "joined" (speech-to-text split), "typo"


_ENGLISH: frozenset[str] | None = None
_ENGLISH_COUNT: dict[str, int] = {}
_ENGLISH_LOCK = threading.Lock()


def english_words() -> tuple[frozenset[str], dict[str, int]]:
    """symspellpy's English frequency dictionary (82,765 words): words that are not misspellings."""
    global _ENGLISH
    if _ENGLISH is None:
        with _ENGLISH_LOCK:
            if _ENGLISH is None:
                text = (
                    resources.files("symspellpy")
                    .joinpath("frequency_dictionary_en_82_765.txt")
                    .read_text(encoding="utf-8")
                )
                counts: dict[str, int] = {}
                for line in text.splitlines():
                    w, _, c = line.partition(" ")
                    if w.isalpha():
                        counts[w] = int(c) if c.isdigit() else 1
                _ENGLISH_COUNT.update(counts)
                _ENGLISH = frozenset(counts)
    return _ENGLISH, _ENGLISH_COUNT


class TolerantReader:
    """Compiled once per table set from the lexicons' words and stems."""

    def __init__(self, words: Iterable[str], stems: Iterable[str]) -> None:
        english, counts = english_words()
        self._words = frozenset(w for w in words if w.isalpha())
        self._stems = frozenset(stems)
        self._min_stem = min((len(s) for s in self._stems), default=3)
        self._english = english
        self._sym = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        for w in sorted(self._words | self._stems):
            if len(w) >= MIN_TOKEN:
                self._sym.create_dictionary_entry(w, counts.get(w, 1) + 1)
        self._fix: dict[str, str | None] = {}
        self._join: dict[tuple[str, str], str | None] = {}
        # parts a vocabulary word can be split into by dictation (exact joins: "dumb" + "bells")
        self._heads = frozenset(w[:k] for w in self._words for k in range(_PART_MIN, len(w) - _PART_MIN + 1))
        self._tails = frozenset(w[k:] for w in self._words for k in range(_PART_MIN, len(w) - _PART_MIN + 1))
        # tokens read as they are, whatever their neighbours: lexicon words, numbers, the clause break, and
        # English words that are no part of a vocabulary word (grown as notes are read, bounded)
        self._ok: set[str] = {*self._words, BREAK}

    def known(self, tok: str) -> bool:
        """A lexicon word, or a lexicon stem with a short ending ("strength*": "strengthening")."""
        if tok in self._words:
            return True
        for n in range(max(self._min_stem, len(tok) - _STEM_ENDING), len(tok) + 1):
            if tok[:n] in self._stems:
                return True
        return False

    def read(self, toks: Sequence[str]) -> tuple[tuple[str, ...], tuple[Reading, ...]]:
        """The tokens as read, and what was changed (empty when nothing was)."""
        ok = self._ok
        if ok.issuperset(toks):  # the usual note: nothing to look up
            return tuple(toks), ()
        out: list[str] = []
        readings: list[Reading] = []
        fix_cache, words = self._fix, self._words
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            if t in words or t == BREAK or not t.isalpha() or len(t) > MAX_TOKEN:
                out.append(t)
                if t.isdigit() and len(ok) < _CACHE_MAX:
                    ok.add(t)
                i += 1
                continue
            if i + 1 < n and len(t) >= _PART_MIN:
                nxt = toks[i + 1]
                if len(nxt) >= _PART_MIN and nxt.isalpha() and len(nxt) <= MAX_TOKEN:
                    j = self._joined(t, nxt)
                    if j is not None:
                        readings.append(Reading(len(out), len(out) + 1, f"{t} {nxt}", j, "joined"))
                        out.append(j)
                        i += 2
                        continue
            if t in fix_cache:
                f = fix_cache[t]
            else:
                f = self._correct(t)
                if len(fix_cache) < _CACHE_MAX:
                    fix_cache[t] = f
            if f is None:
                out.append(t)
                if len(ok) < _CACHE_MAX and (len(t) < _PART_MIN or self._inert(t)):
                    ok.add(t)
            else:
                how = "spelling" if t in self._english else "typo"
                readings.append(Reading(len(out), len(out) + 1, t, f, how))
                out.append(f)
            i += 1
        if not readings:
            return tuple(toks), ()
        return tuple(out), tuple(readings)

    def _inert(self, t: str) -> bool:
        """An English word that no dictation split of a vocabulary word starts or ends with."""
        return t in self._english and t not in self._heads and t not in self._tails

    def _joined(self, a: str, b: str) -> str | None:
        key = (a, b)
        if key in self._join:
            return self._join[key]
        res: str | None = None
        if not (self.known(a) and self.known(b)):
            cat = a + b
            if cat in self._words:
                res = cat
            elif len(cat) >= 8 and (a not in self._english or b not in self._english):
                res = self._lookup(cat, 1)
        if len(self._join) < _CACHE_MAX:
            self._join[key] = res
        return res

    def _correct(self, t: str) -> str | None:
        if len(t) < MIN_TOKEN:
            return None
        if self.known(t):
            # known through a stem only ("train*" knows "trainning"): a one-letter slip of a longer lexicon
            # word that starts with the same stem is still read as that word ("training")
            if t in self._words or len(t) < 7 or t in self._english:
                return None
            near = self._lookup(t, 1)
            return near if near is not None and near in self._words and near[:4] == t[:4] else None
        for suf, us in BRITISH_RULES:
            if t.endswith(suf):
                cand = t[: -len(suf)] + us
                if self.known(cand):
                    return cand
        for a, b in BRITISH_INFIX:
            if a in t:
                cand = t.replace(a, b)
                if self.known(cand):
                    return cand
        if t in self._english:
            return None
        return self._lookup(t, 1 if len(t) <= 5 else 2)

    def _lookup(self, t: str, dist: int) -> str | None:
        found = self._sym.lookup(t, Verbosity.CLOSEST, max_edit_distance=dist)
        if not found:
            return None
        best = found[0]
        if len(found) > 1 and found[1].distance == best.distance and found[1].count == best.count:
            return None  # two equally close, equally common words: not a reading we can defend
        # typing and dictation errors keep the first letter ("roundd" is not "pound")
        if best.term[0] != t[0]:
            return None
        return str(best.term)
