"""Regression guard on the blind intervention test set ``tests/data/eval/blind.jsonl``.

WRITTEN BLIND on 2026-11-26: the 160 cases and their labels were written by someone who never read the
classifier's rules, code, tables, tests or benchmarks. They were labelled only from
/work/shared/eval/LABELING.md (decision procedure §3, ambiguous patterns §4) and billing-rules.md §1/§5.

The floors below sit a little under what the classifier measured on that date
(strict 0.931, lenient 0.938, UNSUPPORTED precision 0.833 / recall 0.909, 97110 recall 0.885,
97530 recall 0.935, one 97110<->97530 cross-confusion; ``ptbill eval tests/data/eval/blind.jsonl``).
A drop below a floor is a regression. Raise the floors when the classifier improves; never relabel a case
to make a test pass (fix a label only if it breaks LABELING.md, and say so in the commit).

NO LONGER BLIND since 2026-11-26 (later that day): the error PATTERNS found on this set (negation scope,
wheelchair parts, muscle "group", goal clauses, unsupervised wording, work simulation, tub transfers) were
described, with paraphrased examples, to the engineer who then fixed them generally; the set now scores
1.000 on every figure. It is a regression set now, not an estimate of held-out accuracy; the figure to
quote for generalisation is the one measured before the fixes (strict 0.931, lenient 0.938). The floors
were raised to just under the new figures.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from integration.classify import classify
from integration.model import Intervention
from mappings.loader import default_tables

BLIND = Path(__file__).resolve().parents[1] / "data" / "eval" / "blind.jsonl"

TIMED = "97110 97530 97112 97116 97140 97535 97542 97760 97035 97761 97124"
LABELS = set(TIMED.split()) | {"97150", "97010", "G0283", "97014", "UNSUPPORTED"}
FIELDS = {"id", "text", "body_site", "minutes", "expected_code", "acceptable_codes", "rationale"}


def _load() -> list[dict]:
    with BLIND.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CASES = _load()


@pytest.fixture(scope="module")
def predictions() -> dict[str, str]:
    tables = default_tables()
    out: dict[str, str] = {}
    for c in CASES:
        itv = Intervention(
            id=c["id"],
            text=c["text"],
            body_sites=(c["body_site"],) if c["body_site"] else (),
            minutes=c["minutes"],
        )
        out[c["id"]] = classify(itv, tables, on=None).code
    return out


def _rate(hits: int, total: int) -> float:
    return hits / total if total else 0.0


# ------------------------------------------------------------------ the file itself


def test_blind_file_shape() -> None:
    assert len(CASES) == 160
    ids = [c["id"] for c in CASES]
    assert ids == [f"BLIND-{i:03d}" for i in range(1, 161)]
    assert len({c["text"] for c in CASES}) == len(CASES)
    for c in CASES:
        assert set(c) == FIELDS, c["id"]
        assert c["expected_code"] in c["acceptable_codes"], c["id"]
        assert set(c["acceptable_codes"]) <= LABELS, c["id"]
        assert c["body_site"] is None or isinstance(c["body_site"], str)
        assert c["minutes"] is None or isinstance(c["minutes"], int)
        assert "LABELING" in c["rationale"], c["id"]


def test_blind_label_mix_is_realistic() -> None:
    mix = Counter(c["expected_code"] for c in CASES)
    assert mix["97110"] == 52 and mix["97530"] == 46
    assert mix["97112"] == 16 and mix["97116"] == 13 and mix["97140"] == 13
    assert mix["UNSUPPORTED"] == 11
    borderline = sum(len(c["acceptable_codes"]) > 1 for c in CASES)
    assert 36 <= borderline <= 48  # about a quarter


# ------------------------------------------------- floors (measured 2026-11-26 minus a margin)

FLOORS = [
    # (name, floor)
    ("strict", 0.97),
    ("lenient", 0.97),
    ("unsupported_precision", 0.90),
    ("unsupported_recall", 0.90),
    ("recall_97110", 0.95),
    ("recall_97530", 0.95),
]


def _metrics(pred: dict[str, str]) -> dict[str, float]:
    n = len(CASES)
    strict = sum(pred[c["id"]] == c["expected_code"] for c in CASES)
    lenient = sum(pred[c["id"]] in c["acceptable_codes"] for c in CASES)
    gold_u = [c for c in CASES if c["expected_code"] == "UNSUPPORTED"]
    pred_u = [c for c in CASES if pred[c["id"]] == "UNSUPPORTED"]
    both_u = sum(c["expected_code"] == "UNSUPPORTED" for c in pred_u)
    out = {
        "strict": _rate(strict, n),
        "lenient": _rate(lenient, n),
        "unsupported_precision": _rate(both_u, len(pred_u)),
        "unsupported_recall": _rate(both_u, len(gold_u)),
    }
    for code in ("97110", "97530"):
        gold = [c for c in CASES if c["expected_code"] == code]
        out[f"recall_{code}"] = _rate(sum(pred[c["id"]] == code for c in gold), len(gold))
    return out


@pytest.mark.parametrize(("name", "floor"), FLOORS, ids=[f[0] for f in FLOORS])
def test_blind_floor(predictions: dict[str, str], name: str, floor: float) -> None:
    value = _metrics(predictions)[name]
    assert value >= floor, f"{name} {value:.3f} fell below the blind-set floor {floor}"


def test_blind_97110_97530_cross_confusion(predictions: dict[str, str]) -> None:
    crossed = [
        c["id"]
        for c in CASES
        if {c["expected_code"], predictions[c["id"]]} == {"97110", "97530"}
        and predictions[c["id"]] not in c["acceptable_codes"]
    ]
    assert len(crossed) <= 1, crossed  # measured: 1 before the pattern fixes, 0 after
