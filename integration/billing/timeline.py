"""Clock time of performed periods: each second of one-on-one time counted once (pure interval arithmetic).

``count_once(blocks)`` takes timed blocks (one per Procedure: its performed period, the code(s) it
documents, whether a therapist took part) and returns the seconds each block keeps once every moment of
clock time is given to exactly one block. The total kept therefore never exceeds the clock time covered.

Who keeps a moment covered by several blocks (the stated rule, never price):

1. Blocks documenting the same code(s) are one service: their periods are merged (the union), and a
   moment goes to a block with a therapist when there is one (time the therapist and the assistant spend
   together is therapist time), then to the block that started first, then by Procedure id.
2. Blocks of different codes: the moment goes to the service whose current run (its merged period)
   started latest -- a service begun while another was under way interrupts it, so a period nested inside
   another keeps its time and, of two partly overlapping periods, the earlier one is taken to have ended
   when the later one began. Equal starts: the run that ends first (the nested one), then the lower code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise


@dataclass(frozen=True)
class Block:
    key: str  # Procedure id
    start: datetime
    end: datetime
    codes: tuple[str, ...]  # the timed code(s) the block documents, sorted
    therapist: bool  # a therapist (or a performer of unknown role) took part


def parse_period(start: str | None, end: str | None) -> tuple[datetime, datetime] | None:
    """A performed period with a time of day on both ends and end after start, else None."""
    if not start or not end or "T" not in start or "T" not in end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    if (a.tzinfo is None) != (b.tzinfo is None) or b <= a:
        return None
    return a, b


def overlaps(x: tuple[datetime, datetime], y: tuple[datetime, datetime]) -> bool | None:
    """Whether two periods overlap; None when they cannot be compared (one has a timezone, one not)."""
    if (x[0].tzinfo is None) != (y[0].tzinfo is None):
        return None
    return x[0] < y[1] and y[0] < x[1]


def overlap_seconds(x: tuple[datetime, datetime], y: tuple[datetime, datetime]) -> float:
    if overlaps(x, y) is not True:
        return 0.0
    return (min(x[1], y[1]) - max(x[0], y[0])).total_seconds()


def _runs(periods: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Merge periods into maximal runs (union)."""
    out: list[tuple[datetime, datetime]] = []
    for a, b in sorted(periods):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def count_once(blocks: Sequence[Block]) -> dict[str, float]:
    """Seconds kept by each block (by key) when every moment of clock time is counted once.

    Blocks must all be timezone-aware or all naive (compare like with like)."""
    runs = {c: _runs((b.start, b.end) for b in blocks if b.codes == c) for c in {b.codes for b in blocks}}
    kept = {b.key: 0.0 for b in blocks}
    bounds = sorted({t for b in blocks for t in (b.start, b.end)})
    for lo, hi in pairwise(bounds):
        covering = [b for b in blocks if b.start <= lo and hi <= b.end]
        if not covering:
            continue
        if len({b.codes for b in covering}) > 1:
            codes = _interrupting(runs, {b.codes for b in covering}, lo, hi)
            covering = [b for b in covering if b.codes == codes]
        winner = min(covering, key=lambda b: (not b.therapist, b.start, b.key))
        kept[winner.key] += (hi - lo).total_seconds()
    return kept


def _interrupting(
    runs: dict[tuple[str, ...], list[tuple[datetime, datetime]]],
    candidates: set[tuple[str, ...]],
    lo: datetime,
    hi: datetime,
) -> tuple[str, ...]:
    """Of several services covering [lo, hi): the run begun latest, then ending first, then lowest code."""
    run = {c: next(r for r in runs[c] if r[0] <= lo and hi <= r[1]) for c in candidates}
    latest = max(r[0] for r in run.values())
    tied = [c for c in candidates if run[c][0] == latest]
    first_end = min(run[c][1] for c in tied)
    return min(c for c in tied if run[c][1] == first_end)


def split_minutes(total: int, parts: Sequence[int]) -> list[int]:
    """Cut ``parts`` (documented minutes) down to ``total`` in proportion, whole minutes, largest remainders
    first (ties: the earlier part). Parts that already fit are returned unchanged."""
    if sum(parts) <= total:
        return list(parts)
    whole = sum(parts)
    exact = [p * total / whole for p in parts]
    out = [int(x) for x in exact]
    order = sorted(range(len(parts)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out
