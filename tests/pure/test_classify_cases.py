"""Table-driven classifier cases: every code, LABELING.md traps, negations, abbreviations, intent flips,
SNOMED-only and CPT-conflict inputs. Each row: (text, expected code, extra acceptable codes)."""

from __future__ import annotations

import pytest

from integration.classify import classify
from integration.model import CPT, HCPCS_SYSTEMS, SNOMED, Coding, Intervention
from mappings.loader import Tables, default_tables

CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # --- 97110: isolated exercise, impairment intent -----------------------------------------------
    ("SLR 4x10 R LE, quad sets 2x15", "97110", ()),
    ("LAQ 3x10 w/ 3# AW B, SAQ 2x15", "97110", ()),
    ("Clamshells w/ red TB 3x15 L hip for glute med strengthening", "97110", ()),
    ("Bridges 3x10, hip abd in sidelying 2x15", "97110", ()),
    ("AAROM L shoulder flexion w/ pulleys x5 min, wand ER 2x10", "97110", ()),
    ("AROM cervical rotation and SB 2x10 each direction", "97110", ()),
    ("PROM R knee flexion 0-110 deg, pt supine", "97110", ("97140",)),
    ("Passive stretch R hamstring by PT 3x30s", "97110", ("97140",)),
    ("Gastroc/soleus stretch on slant board 3x30s B", "97110", ()),
    ("UBE 6 min fwd/back for UE endurance", "97110", ()),
    ("Recumbent bike 10 min L3 for warm-up and knee ROM", "97110", ()),
    ("Treadmill 2.0 mph x10 min for cardiovascular endurance", "97110", ()),
    ("Leg press 3x12 70# B LE for quad strength", "97110", ()),
    ("Sit to stand 3x10 for quad strength, no UE", "97110", ("97530",)),
    ("Goblet squat to box 3x8 for LE strengthening", "97110", ("97530",)),
    ("Step ups 8in step 3x10 L LE for quad strength", "97110", ()),
    ("4-way SLR 2x10 R LE; goal is for pt to go up stairs w/o rail", "97110", ()),
    ("Prone T/Y 2x10, ER w/ yellow TB; goal: overhead reaching to cabinets", "97110", ()),
    ("HEP instruction: heel slides, SAQ, ankle pumps; pt return demo", "97110", ()),
    ("Isometric quad and hip adduction ball squeeze 10x5s hold", "97110", ()),
    ("Manually resisted isometrics against PT's hand, shoulder ER/IR 10x5s", "97110", ()),
    ("Chin tucks 2x10, scapular retraction 2x15 for postural endurance", "97110", ()),
    ("Wall slides 2x10 R shoulder to incr flexion ROM", "97110", ()),
    ("Theraputty squeezes 3 min R hand for grip strength", "97110", ()),
    ("Amb 500 ft x2 w/ SPC for endurance, no gait deviations noted", "97110", ("97116",)),
    ("NuStep L5 x12 min, HR 98-110, RPE 13", "97110", ()),
    ("Heel raises 3x15, toe raises 3x15 B", "97110", ()),
    ("AAROM R elbow flex/ext 2x15 post CVA", "97110", ()),
    ("Hamstring curls w/ 5# AW 3x10, hip ext prone 2x10", "97110", ()),
    ("Contract-relax hamstring stretch by PT R LE 3 reps", "97110", ("97140",)),
    ("Dead bug 2x10, bird dog 2x10 each, plank 3x20s", "97110", ("97112",)),
    ("Muscle strengthening exercise (regime/therapy)", "97110", ()),
    ("Strenghtening excercises: SLR, bridges x10", "97110", ()),
    ("slr 3X10 b le, laq 3x10", "97110", ()),
    ("Pt performed SLR 3x10; no functional training today", "97110", ()),
    ("Pt declined balance work; performed heel slides 2x15 and quad sets 2x10", "97110", ()),
    # --- 97530: functional activity, task intent ----------------------------------------------------
    ("Transfer training", "97530", ()),
    ("Squats to practice lowering to toilet 3x8, CGA", "97530", ("97535",)),
    ("Lunges to get down to floor to play w/ grandkids 2x5", "97530", ()),
    ("Squat to retrieve items from bottom shelf of fridge x10", "97530", ()),
    ("Lifted 10# crate from floor to counter x10 w/ cues for body mechanics", "97530", ()),
    ("Carrying 15# box 40 ft x4 for return to work", "97530", ("97116",)),
    ("Bed mobility training: rolling, supine to sit w/ min A", "97530", ("97535",)),
    ("Sit<>stand from low couch x10, mod A, cues for nose over toes", "97530", ()),
    ("Stand pivot transfer w/c<>mat x5, CGA", "97530", ("97542",)),
    ("Toilet transfers w/ grab bar x4, min A", "97530", ("97535",)),
    ("Car transfer practice w/ car simulator, SBA", "97530", ("97535",)),
    ("Floor recovery: floor to stand via half kneel x3, CGA", "97530", ("97535",)),
    ("Overhead reaching to place cans on high shelf x20, standing", "97530", ()),
    ("Ball toss and catch w/ PT 2 min x3 in standing", "97530", ()),
    ("Pushing and pulling weighted cart 50 ft x4", "97530", ()),
    ("Sled push 30# 3 laps for return to work as mover", "97530", ()),
    ("Simulated work task: overhead bolt tightening x5 min for mechanic", "97530", ()),
    ("Laundry task: loading/unloading washer, carrying basket 20 ft", "97530", ("97535",)),
    ("Putty tools: cutting with plastic knife, rolling, pinching, R hand", "97530", ("97110",)),
    ("Plyometric box jumps 3x5 and lateral hops for return to soccer", "97530", ("97110",)),
    ("Farmer carry 20# each hand 100 ft x3", "97530", ("97110",)),
    ("Pt pushed spouse's wheelchair 100 ft through doorways w/ SBA", "97530", ()),
    ("Walking while carrying a mug of water 30 ft x3, SBA", "97530", ("97116",)),
    ("Stairs x12 carrying laundry basket, 1 rail, SBA", "97530", ("97116",)),
    ("Kneel to floor and rise using couch for support x5 to simulate gardening", "97530", ()),
    ("Squats to pick up objects from the floor x10", "97530", ()),
    ("Therapeutic activities: lifting, carrying, pushing", "97530", ()),
    ("Med ball chest pass 3x10 w/ PT standing", "97530", ()),
    ("Dishwasher loading and unloading in clinic kitchen, standing tolerance", "97530", ("97535",)),
    ("Grocery put-away from counter to upper cabinets x10 items", "97530", ("97535",)),
    # --- 97112 ----------------------------------------------------------------------------------------
    ("Tandem stance 3x30s EO/EC on firm surface, CGA", "97112", ()),
    ("SLS on foam 3x20s each LE", "97112", ()),
    ("Romberg on airex EC 3x30s", "97112", ()),
    ("BAPS board CW/CCW x2 min R ankle for proprioception", "97112", ()),
    ("Gaze stabilization VOR x1 horizontal 2x1 min, seated", "97112", ()),
    ("Perturbation training in standing, ankle and hip strategies", "97112", ()),
    ("PNF D1/D2 patterns R UE w/ manual facilitation for motor control", "97112", ("97110",)),
    ("Rhythmic stabilization in quadruped for trunk control", "97112", ("97110",)),
    ("Joint position sense training R knee w/ eyes closed", "97112", ()),
    ("Weight shifting onto hemiparetic L LE w/ mirror feedback", "97112", ()),
    ("BOSU mini squats 2x10 for balance", "97112", ("97530",)),
    ("Standing balance on foam w/ reaching outside BOS x5 min", "97112", ("97530",)),
    ("Finger to nose and heel to shin coordination exercises for ataxia", "97112", ()),
    ("Desensitization of R hand w/ graded textures x8 min", "97112", ()),
    ("Balance retraining", "97112", ()),
    ("Postural re-education w/ tactile cues and mirror for upright sitting", "97112", ()),
    # --- 97116 --------------------------------------------------------------------------------------
    ("Gait training (regime/therapy)", "97116", ()),
    ("Gait training w/ RW 100 ft x3, cues for heel strike and step length, CGA", "97116", ()),
    ("Amb w/ SPC 150 ft, cues for reciprocal arm swing and upright posture", "97116", ()),
    ("Stair training 6 steps w/ B rails, step-to pattern, min A", "97116", ("97530",)),
    ("Curb negotiation w/ walker x4, SBA", "97116", ("97530",)),
    ("Treadmill 1.2 mph w/ cues for incr L step length and heel strike", "97116", ()),
    ("Gait w/ axillary crutches, TTWB L LE, 3-point pattern 50 ft", "97116", ()),
    (
        "Gait w/ new transtibial prosthesis 100 ft in parallel bars, cues for equal step length",
        "97116",
        ("97761",),
    ),
    ("Amb on uneven grass and gravel outdoors w/ SBA, cues for foot clearance", "97116", ("97112",)),
    # --- 97140 / 97124 --------------------------------------------------------------------------------
    ("Grade III PA mobs T4-T8", "97140", ()),
    ("STM R upper trap and levator x8 min", "97140", ()),
    ("MFR to lumbar paraspinals", "97140", ()),
    ("IASTM to R ITB and lateral quad", "97140", ()),
    ("Manual lymphatic drainage L LE, 25 min", "97140", ()),
    ("Cross friction massage R supraspinatus tendon x6 min", "97140", ("97124",)),
    ("Scar mobilization L knee incision x5 min", "97140", ()),
    ("Manual cervical traction 3x60s", "97140", ()),
    ("Patellar mobs sup/inf/med/lat R knee", "97140", ()),
    ("Effleurage and petrissage to B calves", "97124", ("97140",)),
    # --- 97535 --------------------------------------------------------------------------------------
    ("UB dressing training w/ hemi technique, min A", "97535", ()),
    ("Instructed pt in use of reacher and sock aid; pt return demo", "97535", ()),
    ("Meal prep training in clinic kitchen, seated w/ adaptive equipment", "97535", ()),
    ("Home safety education: remove rugs, install grab bars", "97535", ()),
    ("Toileting hygiene training w/ long-handled wiping aid", "97535", ()),
    # --- group / wheelchair / orthotics / evals / modalities ----------------------------------------
    ("Group ther ex w/ 3 pts: marching, heel raises, seated rows", "97150", ()),
    ("Balance class, 4 patients, PT rotating between stations", "97150", ()),
    ("W/C propulsion 200 ft w/ cues for long push strokes", "97542", ()),
    ("Wheelchair seating assessment: seat depth, cushion trial", "97542", ()),
    ("Initial R AFO fitting and donning/doffing training", "97760", ()),
    ("Resting hand splint fabricated and fitted R hand; wear schedule reviewed", "97760", ()),
    ("AFO adjusted, follow up fit check and skin check", "97763", ("97760",)),
    ("Prosthetic training: donning liner and socket, ply sock management", "97761", ()),
    ("PT evaluation, moderate complexity", "97162", ()),
    ("Re-evaluation of plan of care", "97164", ()),
    ("Moist hot pack to L shoulder x10 min", "97010", ()),
    ("CP to R knee x10 min post ex", "97010", ()),
    ("US 1 MHz 1.0 W/cm2 R lateral epicondyle x8 min", "97035", ()),
    ("Iontophoresis w/ dexamethasone R elbow", "97033", ()),
    ("Unattended IFC to lumbar spine x15 min", "G0283", ("97014",)),
    ("TENS to cervical spine x15 min, pt seated", "G0283", ("97014",)),
    ("NMES to R quad w/ active quad sets, PT adjusting parameters", "97032", ()),
    ("Mechanical lumbar traction 30% BW x12 min", "97012", ()),
    ("Vasopneumatic compression R knee x15 min", "97016", ()),
    ("Paraffin bath B hands x10 min", "97018", ()),
    ("Whirlpool R ankle x10 min", "97022", ()),
    ("Aquatic therapy: water walking and LE exercises in pool", "97113", ()),
    ("Functional capacity evaluation w/ written report", "97750", ()),
    # --- UNSUPPORTED --------------------------------------------------------------------------------
    ("Ther ex as tolerated", "UNSUPPORTED", ()),
    ("see flowsheet", "UNSUPPORTED", ()),
    ("Tx as indicated", "UNSUPPORTED", ()),
    ("worked on goals, pt tolerated well", "UNSUPPORTED", ()),
    ("Continue POC, pt tolerated tx well", "UNSUPPORTED", ()),
    ("HEP in waiting room prior to appt", "UNSUPPORTED", ()),
    ("Walked laps in hallway with aide", "UNSUPPORTED", ()),
    ("Bike 10 min alone while PT treated another pt", "UNSUPPORTED", ()),
    ("Physical therapy procedure", "UNSUPPORTED", ()),
    ("Pt seen", "UNSUPPORTED", ()),
    ("", "UNSUPPORTED", ()),
    ("Cold laser to R knee x5 min", "UNSUPPORTED", ()),
]


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


@pytest.mark.parametrize(("text", "expected", "also_ok"), CASES, ids=[f"{i:03d}" for i in range(len(CASES))])
def test_case(tables: Tables, text: str, expected: str, also_ok: tuple[str, ...]) -> None:
    c = classify(Intervention(id="p1", text=text), tables)
    assert c.code == expected, (text, c.code, c.alternatives, c.rule_ids)
    assert 0.0 <= c.confidence <= 1.0
    for alt in also_ok:
        assert alt in c.alternatives, (text, alt, c.alternatives)


def test_case_table_is_large_and_covers_every_code() -> None:
    codes = {e for _, e, _ in CASES}
    assert len(CASES) >= 120
    for code in (
        "97110",
        "97530",
        "97112",
        "97116",
        "97140",
        "97535",
        "97150",
        "97542",
        "97760",
        "97763",
        "97761",
        "97750",
        "97113",
        "97124",
        "97010",
        "97012",
        "97016",
        "97018",
        "97022",
        "97032",
        "97033",
        "97035",
        "G0283",
        "97162",
        "97164",
        "UNSUPPORTED",
    ):
        assert code in codes, code


# --- codings: SNOMED-only, CPT conflict, bare CPT, HCPCS system variants ----------------------------


def test_snomed_only_title_uses_display(tables: Tables) -> None:
    itv = Intervention(id="s1", codings=(Coding(SNOMED, "229065009", "Gait training (regime/therapy)"),))
    assert classify(itv, tables).code == "97116"


def test_snomed_stretching_code_without_text(tables: Tables) -> None:
    itv = Intervention(id="s2", codings=(Coding(SNOMED, "229070002", None),))
    assert classify(itv, tables).code == "97110"


def test_cpt_conflict_suggests_supported_code_and_flags(tables: Tables) -> None:
    itv = Intervention(
        id="c1", text="SLR 3x10, LAQ 3x10 for quad strength", codings=(Coding(CPT, "97530", None),)
    )
    c = classify(itv, tables)
    assert c.code == "97110"
    conflict = [f for f in c.findings if f.code == "CODE-CONFLICT"]
    assert conflict and "97530" in conflict[0].message and conflict[0].procedure_ids == ("c1",)


def test_cpt_agreeing_raises_confidence(tables: Tables) -> None:
    text = "SLR 3x10, LAQ 3x10 R knee for quad strength"
    plain = classify(Intervention(id="a", text=text), tables)
    coded = classify(Intervention(id="a", text=text, codings=(Coding(CPT, "97110", None),)), tables)
    assert coded.code == plain.code == "97110"
    assert coded.confidence > plain.confidence
    assert any(e.kind == "coding" for e in coded.evidence)


def test_defensible_clinician_choice_is_kept(tables: Tables) -> None:
    itv = Intervention(
        id="d", text="Stair training 4 steps w/ B rails, step-to", codings=(Coding(CPT, "97530", None),)
    )
    c = classify(itv, tables)
    assert c.code == "97530" and "97116" in c.alternatives
    assert not any(f.code == "CODE-CONFLICT" for f in c.findings)


def test_bare_cpt_is_accepted_with_lower_confidence(tables: Tables) -> None:
    c = classify(Intervention(id="b", codings=(Coding(CPT, "97140", None),)), tables)
    assert c.code == "97140" and c.confidence <= 0.5
    assert any(f.code == "DOC-TEXT-MISSING" for f in c.findings)


@pytest.mark.parametrize("system", HCPCS_SYSTEMS)
def test_hcpcs_system_variants(tables: Tables, system: str) -> None:
    c = classify(Intervention(id="h", codings=(Coding(system, "G0283", None),)), tables)
    assert c.code == "G0283" and "97014" in c.alternatives


def test_unskilled_text_with_cpt_is_a_conflict(tables: Tables) -> None:
    itv = Intervention(
        id="u",
        text="Bike 10 min independently while PT treated another pt",
        codings=(Coding(CPT, "97110", None),),
    )
    c = classify(itv, tables)
    assert c.code == "UNSUPPORTED"
    assert {f.code for f in c.findings} >= {"CODE-CONFLICT", "DOC-UNSUPPORTED-UNSKILLED"}


# --- findings -----------------------------------------------------------------------------------------


def _codes(c: object) -> set[str]:
    return {f.code for f in c.findings}  # type: ignore[attr-defined]


def test_97110_findings_body_part_and_purpose(tables: Tables) -> None:
    c = classify(Intervention(id="f", text="Bridges 3x10"), tables)
    assert c.code == "97110"
    assert {"DOC-97110-BODY-PART", "DOC-97110-PURPOSE"} <= _codes(c)
    full = classify(
        Intervention(id="f", text="Bridges 3x10 for glute strength", body_sites=("hips",)), tables
    )
    assert not {"DOC-97110-BODY-PART", "DOC-97110-PURPOSE", "DOC-97110-MUSCLE-JOINT"} & _codes(full)


def test_97530_one_on_one_finding(tables: Tables) -> None:
    c = classify(Intervention(id="f", text="Lifting 10# box floor to waist x10"), tables)
    assert c.code == "97530" and "DOC-97530-ONE-ON-ONE" in _codes(c)
    ok = classify(
        Intervention(id="f", text="Lifting 10# box floor to waist x10, CGA, cues for hip hinge"), tables
    )
    assert "DOC-97530-ONE-ON-ONE" not in _codes(ok)


def test_97140_area_and_technique(tables: Tables) -> None:
    c = classify(Intervention(id="f", text="Manual therapy x10 min"), tables)
    assert c.code == "97140" and {"DOC-97140-AREA", "DOC-97140-TECHNIQUE"} <= _codes(c)


def test_97150_participants(tables: Tables) -> None:
    c = classify(Intervention(id="f", text="Group therapy: seated exercises"), tables)
    assert c.code == "97150" and "DOC-97150-PARTICIPANTS" in _codes(c)
    c2 = classify(Intervention(id="f", text="Seated exercises with others", group_size=3), tables)
    assert c2.code == "97150" and "DOC-97150-PARTICIPANTS" not in _codes(c2)


def test_97116_gait_detail(tables: Tables) -> None:
    c = classify(Intervention(id="f", text="Gait training 200 ft"), tables)
    assert c.code == "97116" and "DOC-97116-GAIT-DETAIL" in _codes(c)


def test_unsupported_says_what_to_document(tables: Tables) -> None:
    c = classify(Intervention(id="f", text="exercises as tolerated"), tables)
    assert c.code == "UNSUPPORTED"
    f = next(f for f in c.findings if f.code == "DOC-UNSUPPORTED-VAGUE")
    assert "Document" in f.message and f.procedure_ids == ("f",) and f.rule_id == "R-ABSTAIN-VAGUE"


def test_evidence_names_phrases_and_rule(tables: Tables) -> None:
    c = classify(Intervention(id="e", text="Squats 3x10 for quad strengthening"), tables)
    assert c.code == "97110"
    assert c.rule_ids and c.evidence[0].kind == "rule"
    values = " ".join(e.value for e in c.evidence)
    assert "strength" in values
