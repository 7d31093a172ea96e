"""Copy-forward ("cloned") documentation: the same text for the same patient on consecutive visits.

Auditors treat documentation copied from the previous visit as a red flag: it does not show what was done
and why on the date billed. Only hashes of normalised text travel with the encounter (PHI-minimal): the
extraction hashes the patient's earlier visits (``PriorVisit.text_hashes``); the billing step
``integration/billing/steps/cloned.py`` hashes today's and compares with the most recent earlier visit.

Normalisation: Unicode NFKC, lowercase, every run of characters other than letters and digits becomes one
space. So case, punctuation and spacing changes do not hide a copy; any change of a word or a number does.
Text shorter than the documentation rule ``cloned_min_words`` is not compared (a repeated one-line title is
thin documentation, not a copied note). Pure.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from datetime import date

from integration.model import PriorVisit

_NON_WORD = re.compile(r"[^0-9a-z]+")
_MAX_CHARS = 200_000  # hashing reads at most this much of a note (linear, bounded)


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text[:_MAX_CHARS]).lower()
    return _NON_WORD.sub(" ", t).strip()


def text_hash(text: str) -> tuple[str, int]:
    """(hash of the normalised text, its number of words); the hash is "" for text without words."""
    norm = normalize(text)
    if not norm:
        return "", 0
    return hashlib.sha256(norm.encode()).hexdigest()[:24], norm.count(" ") + 1


def previous_visit(visits: Iterable[PriorVisit], before: date | None) -> tuple[PriorVisit, ...]:
    """The patient's most recent visits before ``before`` (every encounter of that day)."""
    dated = [v for v in visits if v.date is not None and (before is None or v.date < before)]
    if not dated:
        return ()
    last = max(v.date for v in dated if v.date is not None)
    return tuple(v for v in dated if v.date == last)


def hashed_words(text: str, min_words: int) -> str | None:
    """The hash of ``text`` when it has at least ``min_words`` words, else None (not compared)."""
    h, words = text_hash(text)
    return h if h and words >= min_words else None
