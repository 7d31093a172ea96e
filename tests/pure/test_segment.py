"""Segmentation of documentation into items (integration.classify.segment): table-driven, one row per
pattern, written for these tests (not taken from any evaluation file)."""

from __future__ import annotations

import time

import pytest

from integration.classify.segment import MAX_SEGMENTS, minutes_in, segment

# (pattern, text, expected item texts)
CASES = [
    (
        "semicolons",
        "Clamshells 2x15 L hip; prone hip ext 2x10",
        ["Clamshells 2x15 L hip", "prone hip ext 2x10"],
    ),
    ("then", "Bike 6 min then lateral step-downs 3x8", ["Bike 6 min", "lateral step-downs 3x8"]),
    (
        "followed by",
        "Prone press-ups x10 followed by bird dogs 2x10",
        ["Prone press-ups x10", "bird dogs 2x10"],
    ),
    ("newlines", "Wall slides 2x10\nBand pull-aparts 2x15\n", ["Wall slides 2x10", "Band pull-aparts 2x15"]),
    ("bullets", "- heel raises 3x15\n- toe walking 4 laps", ["heel raises 3x15", "toe walking 4 laps"]),
    (
        "numbered with parentheses",
        "1) quad sets 2x10 2) SAQ 2x10 3) ankle pumps x20",
        ["quad sets 2x10", "SAQ 2x10", "ankle pumps x20"],
    ),
    ("numbered with periods", "1. Nustep 8 min 2. mini squats 2x12", ["Nustep 8 min", "mini squats 2x12"]),
    (
        "a lone number is no list",
        "Hip abd level 2. rest between sets",
        ["Hip abd level 2. rest between sets"],
    ),
    (
        "sentences",
        "Seated rows with red band 3x12. Standing marches at counter x20.",
        ["Seated rows with red band 3x12", "Standing marches at counter x20."],
    ),
    ("decimal is no sentence end", "Treadmill 1.5 mph x 8 min", ["Treadmill 1.5 mph x 8 min"]),
    (
        "abbreviation is no sentence end",
        "Box lift approx. 8 kg from floor x5",
        ["Box lift approx. 8 kg from floor x5"],
    ),
    ("inches before a lower-case word", "Step-ups onto 6 in. step x10", ["Step-ups onto 6 in. step x10"]),
    ("dotted initials", "Mobs to the M.C.P. joints x 3 min", ["Mobs to the M.C.P. joints x 3 min"]),
    # commas: one intervention with its parameters stays one item
    ("parameters after commas", "Bridges 2x15, glutes, blue TB", ["Bridges 2x15, glutes, blue TB"]),
    (
        "cues and assistance after commas",
        "Gait 200 ft w/ RW, cues for upright posture, CGA",
        ["Gait 200 ft w/ RW, cues for upright posture, CGA"],
    ),
    (
        "undosed comma list is one item",
        "Seated marching, LAQ, toe taps",
        ["Seated marching, LAQ, toe taps"],
    ),
    (
        "dosed comma list",
        "Recumbent bike 7 min, wall sits 3x30 s, side planks 3x20 s",
        ["Recumbent bike 7 min", "wall sits 3x30 s", "side planks 3x20 s"],
    ),
    (
        "a new step after a comma",
        "Massage to the calf with the hands, and at the end we practise to climb in the car",
        ["Massage to the calf with the hands", "at the end we practise to climb in the car"],
    ),
    ("a remark after then stays with its item", "Hamstring curls 2x12; pt then tolerated well", None),
    # headings
    (
        "heading over items",
        "Ther act: SAQ 2x10; heel slides 2x10",
        ["SAQ 2x10", "heel slides 2x10"],
    ),
    (
        "SOAP: only O documents a service",
        "S: knee stiff in am. O: quad sets 2x10; SLR 2x10. A: tolerated. P: add step-ups next visit",
        ["quad sets 2x10", "SLR 2x10"],
    ),
    ("goal line holds no item", "Sidelying abd 2x12\nGoal: climb bus steps", ["Sidelying abd 2x12"]),
    ("ratio is no heading", "1:1 with PT, hip hikes 2x10", ["1:1 with PT, hip hikes 2x10"]),
    # flowsheets and templates
    (
        "flowsheet with header",
        "Exercise | Sets | Load\nLeg press | 3x10 | 40 lb\nCable rows | 3x12 | 15 lb",
        ["Leg press | 3x10 | 40 lb", "Cable rows | 3x12 | 15 lb"],
    ),
    (
        "tab-separated rows",
        "Activity\tTime\nStep-ups\t5\nLunges\t6",
        ["Step-ups\t5", "Lunges\t6"],
    ),
    (
        "one row without header is one item",
        "Goblet squat | 3 x 8 | 20 lb | to box",
        ["Goblet squat | 3 x 8 | 20 lb | to box"],
    ),
    (
        "template sections; unchecked and blank ones document nothing",
        "Ther Ex [x] 12 min: wall push-ups 2x10 | Manual [ ] ___ min | Gait: ____",
        ["wall push-ups 2x10"],
    ),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_items(pattern: str, text: str, expected: list[str] | None) -> None:
    seg = segment(text)
    if expected is None:  # "pt then tolerated well" joins the item before it
        assert len(seg.segments) == 1, [s.text for s in seg.segments]
        return
    assert [s.text for s in seg.segments] == expected
    for s in seg.segments:  # spans point at what was written
        assert text[s.start : s.end] == s.text


def test_heading_is_kept_with_its_items() -> None:
    seg = segment("Neuro re-ed: tandem walk 4 laps; SLS 3x20 s")
    assert [s.heading for s in seg.segments] == ["Neuro re-ed", "Neuro re-ed"]
    assert [h.label for h in seg.headings] == ["Neuro re-ed"]


def test_a_template_category_label_heads_the_sections_after_it() -> None:
    seg = segment("THER ACT (97530) [X] | Performed: clamshells 2x10; bridges 2x10 | Task trained: ___")
    assert [s.text for s in seg.segments] == ["clamshells 2x10", "bridges 2x10"]
    assert {s.heading for s in seg.segments} == {"THER ACT (97530) [X]"}


@pytest.mark.parametrize(
    "text",
    [
        "Step-ups 3x10, lunges 3x8, for getting on the bus",
        "Step-ups 3x10, lunges 3x8 to improve hip strength for stairs",
    ],
)
def test_a_purpose_written_once_for_a_list_makes_it_one_item(text: str) -> None:
    assert [s.text for s in segment(text).segments] == [text]


def test_flowsheet_time_column_gives_minutes() -> None:
    seg = segment("Exercise | Time | Notes\nElliptical | 9 | warm-up\nSplit squats | 6 min | 3x8")
    assert [s.minutes for s in seg.segments] == [9, 6]


def test_heading_minutes_belong_to_the_whole_section() -> None:
    seg = segment("Ther Ex [x] 14 min: prone Y's 2x10, rows 2x10 | Manual [x] 8 min: GH post glides")
    assert [(s.text, s.minutes) for s in seg.segments] == [
        ("prone Y's 2x10, rows 2x10", 14),
        ("GH post glides", 8),
    ]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("Arm bike 9 min", 9),
        ("Arm bike 9 mins", 9),
        ("stretching 12-minute block", 12),
        ("paraffin to the left hand seven minutes", 7),
        ("standing balance 5'", 5),
        ("sit to stand x10 min A", None),  # minimal assistance, not minutes
        ("SLS 3x30 s", None),  # seconds
        ("bike 4 min, then intervals 10 min", 10),  # the last one named
        ("no time written", None),
    ],
)
def test_minutes_in(text: str, minutes: int | None) -> None:
    assert minutes_in(text) == minutes


def test_empty_and_blank_text() -> None:
    assert segment("").segments == ()
    assert segment("   \n\t ").segments == ()


@pytest.mark.parametrize(
    "text",
    [
        "x" * 256_000,  # one 256 kB token
        "and " * 100_000,  # joining words only
        " " * 200_000 + "|" + " " * 200_000,  # a pipe between long runs of blanks
        "a, " * 200_000,  # more comma pieces than any note has
        "1) a " * 50_000,  # a very long numbered list
        "Ther ex: " * 50_000,
        "\u0000\u202e mixed \u4e2d\u6587 scripts \U0001f600; " * 5_000,
    ],
    ids=["token", "joins", "pipe-blanks", "commas", "numbered", "headings", "control-and-scripts"],
)
def test_pathological_text_is_linear(text: str) -> None:
    t0 = time.process_time()
    seg = segment(text)
    assert time.process_time() - t0 < 20  # linear: well under a second each on one core; a hang never ends
    assert len(seg.segments) <= MAX_SEGMENTS or seg.truncated
    for s in seg.segments:
        assert 0 <= s.start <= s.end <= len(text)


def test_too_many_pieces_is_one_item() -> None:
    seg = segment("; ".join(f"ex{i} 2x10" for i in range(MAX_SEGMENTS + 5)))
    assert seg.truncated
    assert len(seg.segments) == 1
