"""Classification throughput on one core: `python bench/bench_classify.py [N]`.

Builds N interventions from varied synthetic phrasings (texts differ, so no cache of whole notes can help;
the per-token caches of the matcher do, as they would on real notes) and prints classifications/second.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integration.classify import classify
from integration.model import Intervention
from mappings.loader import load_tables

TEMPLATES = [
    "SLR 3x{n}, LAQ 3x{n} w/ {w}# AW, heel slides 2x15 R knee s/p TKA to improve quad strength",
    "Sit<>stand from {h} in chair x{n}, min A, cues for anterior wt shift",
    "Gait training w/ RW {d} ft x2, cues for step-through pattern and incr L step length, CGA",
    "Grade III PA mobs L{n}-5, STM lumbar paraspinals x{m} min",
    "SLS on airex 3x{m}s ea LE, EC, CGA - balance/proprioception",
    "Floor to waist lift {w}# box 2x{n}, cues for hip hinge to simulate warehouse job demands",
    "Treadmill {w}.5 mph x{m} min for endurance, HR monitored",
    "exercises as tolerated, pt seen {m} min",
    "Pt rode bike {m} min independently while PT treated another pt",
    "LB dressing training w/ reacher & sock aid, {n} reps, min A",
    "Red TB rows, ER, IR 2x{n} B for scapular stabilizer strength",
    "Carried {w} grocery bags {d} ft to counter and unpacked to shelves",
    "MHP to lumbar spine x{m} min, pt prone",
    "Group ther ex ({n} pts): seated marching, LAQ, heel raises",
]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    rnd = random.Random(7)
    tables = load_tables()
    itvs = [
        Intervention(
            id=str(i),
            text=rnd.choice(TEMPLATES).format(
                n=rnd.randint(5, 20),
                w=rnd.randint(1, 9),
                d=rnd.randint(20, 400),
                m=rnd.randint(5, 30),
                h=rnd.choice(["low couch", "mat", "chair", "bed"]),
            ),
        )
        for i in range(n)
    ]
    classify(itvs[0], tables)  # compile the tables once (not part of the figure)
    t0 = time.perf_counter()
    for itv in itvs:
        classify(itv, tables)
    dt = time.perf_counter() - t0
    print(f"{n} classifications in {dt:.2f}s: {n / dt:,.0f} classifications/second (one core)")


if __name__ == "__main__":
    main()
