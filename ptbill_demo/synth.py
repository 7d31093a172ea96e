"""A deterministic synthetic outpatient physical-therapy clinic, as FHIR R4 transaction Bundles.

    generate_clinic(*, patients: int, seed: int = 0, start: date = date(2026, 1, 5),
                    visits_per_patient: tuple[int, int] = (4, 12)) -> list[dict]
    clinic_summary(bundles: Iterable[dict]) -> dict[str, int]

``generate_clinic`` returns ``[master bundle, patient bundle 1, ..., patient bundle N]``. Load them in
that order (each one is a ``transaction``). Everything is idempotent on any server that supports
conditional update and conditional references in transactions (FHIR R4 3.1.0.11.2 / 3.1.0.8.5):

* every resource carries a deterministic identifier under ``https://ptbill.dev/synthetic/<type>`` and
  is written with ``PUT <Type>?identifier=<system>|<value>`` (create once, update afterwards);
* inside a bundle, resources refer to each other through their ``urn:uuid:`` fullUrls (uuid5 of the
  identifier, so stable too);
* across bundles (patient data -> clinic, staff, payers) they use conditional references
  ``<Type>?identifier=<system>|<value>``, which the server resolves at transaction time.

Patient identifier values include the seed (``s<seed>-p0001``), so clinics made from different seeds can
share one server; the master data (clinic, staff, payers) is the same for every seed.

The documentation imitates real PT charting: several text styles, abbreviations, typos, several
exercises in one line, missing fields, CPT-coded, SNOMED-only and text-only Procedures, codes that
conflict with the text, vague entries, group sessions, PT and PTA (and one OT) performers. Each
Procedure carries ``meta.tag`` ``https://ptbill.dev/synthetic/intended-code`` with the code the generator
meant (for evaluation only -- extraction does not read meta.tag; never present in real data).

About a third of the Medicare patients had an earlier, already billed episode this calendar year:
``billed`` ChargeItems (CPT code, units, dated before this episode) that bring the year-to-date spend
near or past the Medicare KX threshold (so KX Flags and ATTEST-KX Tasks appear).

Some Encounters carry the ptbill extensions documented in ``integration.fhir.extract`` (visit number,
total timed / treatment minutes, group size, last progress report visit, POC certified date).

All randomness comes from one ``random.Random(seed)``: same arguments -> identical output.
Names are clearly fake. No network, no global state.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from integration.fhir.extract import (
    EXT_GROUP_SIZE,
    EXT_LAST_PROGRESS_REPORT_VISIT,
    EXT_POC_CERTIFIED_DATE,
    EXT_TOTAL_TIMED_MINUTES,
    EXT_TOTAL_TREATMENT_MINUTES,
    EXT_VISIT_NUMBER,
)
from integration.model import CPT, HCPCS, NUCC, SNOMED, SOPT_SYSTEMS

SYNTH = "https://ptbill.dev/synthetic"
TRUTH_TAG = f"{SYNTH}/intended-code"
NPI = "http://hl7.org/fhir/sid/us-npi"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"
_NS = uuid.UUID("6f0c6a52-3c1e-4b7e-9d55-2b1f8e2d7a10")  # namespace of the urn:uuid fullUrls
_TZ = timezone(timedelta(hours=-7))  # the clinic is in Arizona (no daylight saving time)


def _sys(rtype: str) -> str:
    return f"{SYNTH}/{rtype.lower()}"


def _cond(rtype: str, value: str) -> str:
    return f"{rtype}?identifier={_sys(rtype)}|{value}"


def _full_url(rtype: str, value: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{rtype}|{value}')}"


def _entry(rtype: str, value: str, resource: dict[str, Any]) -> dict[str, Any]:
    body = {"resourceType": rtype, "identifier": [{"system": _sys(rtype), "value": value}], **resource}
    return {
        "fullUrl": _full_url(rtype, value),
        "resource": body,
        "request": {"method": "PUT", "url": _cond(rtype, value)},
    }


def _bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# --- master data (the same for every seed) -----------------------------------------------------

CLINIC = ("clinic-1", "Sample Valley Physical Therapy (synthetic)")


@dataclass(frozen=True)
class _Staff:
    key: str
    given: str
    family: str
    npi: str
    taxonomy: str
    taxonomy_display: str
    credential: str  # v2-0360 degree/credential code

    @property
    def role(self) -> str:
        return f"role-{self.key}"


STAFF = (
    _Staff("pt-1", "Morgan", "Exampleton", "9990000011", "225100000X", "Physical Therapist", "PT"),
    _Staff("pt-2", "Riley", "Fictionaire", "9990000029", "225100000X", "Physical Therapist", "PT"),
    _Staff("pta-1", "Casey", "Mockwell", "9990000037", "225200000X", "Physical Therapy Assistant", "PTA"),
    _Staff("pta-2", "Jordan", "Placeholder", "9990000045", "225200000X", "Physical Therapy Assistant", "PTA"),
    _Staff("ot-1", "Avery", "Notreal", "9990000052", "225X00000X", "Occupational Therapist", "OT"),
)
_PTS = [s for s in STAFF if s.credential == "PT"]
_PTAS = [s for s in STAFF if s.credential == "PTA"]
_OT = next(s for s in STAFF if s.credential == "OT")


@dataclass(frozen=True)
class _Payer:
    key: str
    name: str
    sopt: str
    sopt_display: str


PAYERS = (
    _Payer("payer-medicare", "Medicare Part B (synthetic MAC)", "1", "MEDICARE"),
    _Payer("payer-medicaid", "State Medicaid Plan (synthetic)", "2", "MEDICAID"),
    _Payer("payer-commercial", "Acme Commercial Health (synthetic)", "5", "PRIVATE HEALTH INSURANCE"),
    _Payer("payer-bcbs", "Blue Plan of Nowhere (synthetic)", "6", "BLUE CROSS/BLUE SHIELD"),
)


def _master_bundle() -> dict[str, Any]:
    entries = [
        _entry(
            "Organization",
            CLINIC[0],
            {
                "active": True,
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                "code": "prov",
                                "display": "Healthcare Provider",
                            }
                        ]
                    }
                ],
                "name": CLINIC[1],
            },
        )
    ]
    for p in PAYERS:
        entries.append(
            _entry(
                "Organization",
                p.key,
                {
                    "active": True,
                    "type": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                    "code": "pay",
                                    "display": "Payer",
                                }
                            ]
                        }
                    ],
                    "name": p.name,
                },
            )
        )
    for s in STAFF:
        pract = _entry(
            "Practitioner",
            s.key,
            {
                "active": True,
                "name": [{"family": s.family, "given": [s.given], "suffix": [s.credential]}],
                "qualification": [
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0360",
                                    "code": s.credential,
                                }
                            ],
                            "text": s.credential,
                        }
                    }
                ],
            },
        )
        pract["resource"]["identifier"].append({"system": NPI, "value": s.npi})
        entries.append(pract)
        entries.append(
            _entry(
                "PractitionerRole",
                s.role,
                {
                    "active": True,
                    "practitioner": {"reference": _full_url("Practitioner", s.key)},
                    "organization": {"reference": _full_url("Organization", CLINIC[0])},
                    "code": [
                        {"coding": [{"system": NUCC, "code": s.taxonomy, "display": s.taxonomy_display}]}
                    ],
                    "specialty": [
                        {"coding": [{"system": NUCC, "code": s.taxonomy, "display": s.taxonomy_display}]}
                    ],
                },
            )
        )
    return _bundle(entries)


# --- documentation templates ---------------------------------------------------------------------

EXERCISES = [
    "SLR",
    "quad sets",
    "heel slides",
    "bridges",
    "clamshells",
    "wall slides",
    "scap retraction",
    "SAQ",
    "LAQ",
    "mini squats",
    "calf raises",
    "TKE w/ band",
    "bicep curls",
    "shoulder ER/IR w/ band",
    "pendulums",
    "hamstring curls",
    "hip abd sidelying",
    "rows w/ green tband",
    "chin tucks",
    "prone press ups",
]
WARMUPS = ["nustep 8 min", "recumbent bike 10'", "UBE 6 min", "treadmill 5 min"]
PARTS = [
    "R knee",
    "L knee",
    "R shoulder",
    "L shoulder",
    "low back",
    "lumbar spine",
    "cervical spine",
    "L hip",
    "R ankle",
    "R hip",
    "L wrist",
]
BANDS = ["red", "green", "blue", "yellow"]


@dataclass(frozen=True)
class _Template:
    code: str  # intended CPT/HCPCS code
    display: str  # short descriptor written into Coding.display
    texts: tuple[str, ...]
    minutes: tuple[int, int]
    timed: bool = True
    snomed: tuple[str, str] | None = None
    pta_ok: bool = True
    body_site: bool = True


TEMPLATES: dict[str, _Template] = {
    t.code: t
    for t in (
        _Template(
            "97110",
            "Therapeutic exercise",
            (
                "Ther ex: {ex1} 3x10, {ex2} 2x15",
                "TherEx - {ex1}, {ex2}, {ex3} for {part} strengthening",
                "Therapeutic exercise {ex1} 3 sets of 10 reps; {ex2} 2x12 w/ {band} theraband",
                "pt performed {ex1} and {ex2} to incr {part} ROM",
                "thera ex {warm}, {ex1} 3x10 {ex2} 3x10 {ex3} 2x15",
                "therapuetic excercise: {ex1}, {ex2}",
                "strengthening {part}: {ex1} 3x10, {ex2} 3x10",
                "HEP review + progression: {ex1}, {ex2}",
            ),
            (8, 30),
            snomed=("229065009", "Exercise therapy"),
        ),
        _Template(
            "97530",
            "Therapeutic activities",
            (
                "sit to stand transfers x10 from low mat",
                "Functional activities: lifting box 10# floor to waist x8, carrying 20 ft",
                "ther act - dynamic functional tasks, reaching overhead to cabinet, squat to pick up objects",
                "Therapeutic activities: bed mobility and transfer training",
                "TA: step ups 6in x10 ea, lateral stepping w/ band",
                "functional training - simulated car transfer, curb negotiation",
            ),
            (8, 25),
        ),
        _Template(
            "97112",
            "Neuromuscular re-education",
            (
                "NMR: SLS balance on foam 3x30s, tandem stance",
                "neuromuscular re-ed for balance/proprioception - BOSU, perturbations",
                "balance training: SLS eyes closed, weight shifting",
                "Neuro re-ed: PNF D2 flexion patterns UE",
                "NMES-free NMRE: postural control, core stab on therapy ball",
            ),
            (8, 20),
        ),
        _Template(
            "97116",
            "Gait training",
            (
                "Gait training w/ SPC 150 ft x3, cues for heel strike",
                "gait trng on level surfaces and stairs (4 steps w/ rail), CGA",
                "ambulation training w/ RW 200ft, verbal cues for upright posture",
                "gait: stair training reciprocal pattern 12 steps x2",
            ),
            (8, 20),
            body_site=False,
        ),
        _Template(
            "97140",
            "Manual therapy",
            (
                "Manual: STM to {part} musculature",
                "joint mobs grade III {part} AP glides",
                "manual therapy - MFR to lumbar paraspinals, PA mobs L3-L5",
                "IASTM + STM to {part}",
                "MT: {part} distraction + mobs, gr II-III",
            ),
            (8, 20),
        ),
        _Template(
            "97535",
            "Self-care/home management training",
            (
                "Self-care training: LB dressing w/ sock aid and reacher",
                "ADL training - tub transfer bench, toileting",
                "home mgmt: instructed in energy conservation, kitchen tasks",
                "self care trng: joint protection, donning brace",
            ),
            (8, 20),
            body_site=False,
        ),
        _Template(
            "97150",
            "Therapeutic procedure, group",
            (
                "Group therapy - {group} pts, balance class",
                "group ex class ({group} pts) - LE strengthening",
                "Pt participated in group ther ex session",
            ),
            (30, 45),
            timed=False,
            body_site=False,
        ),
        _Template(
            "G0283",
            "Electrical stimulation, unattended",
            (
                "E-stim unattended (IFC) to {part} x15 min",
                "IFC to lumbar w/ MHP",
                "Electrical stim, unattended, premod 80-150Hz",
            ),
            (10, 15),
            timed=False,
        ),
        _Template(
            "97010",
            "Hot or cold packs",
            ("MHP to {part} x10 min", "Hot pack to low back", "cold pack post tx"),
            (8, 15),
            timed=False,
        ),
        _Template(
            "97035",
            "Ultrasound",
            ("US 1 MHz 1.0 W/cm2 to {part} 8 min", "ultrasound to {part}, continuous"),
            (8, 12),
        ),
        _Template(
            "97161",
            "PT evaluation, low complexity",
            ("PT eval - low complexity", "Initial evaluation: low cx"),
            (20, 30),
            timed=False,
            pta_ok=False,
            body_site=False,
        ),
        _Template(
            "97162",
            "PT evaluation, moderate complexity",
            (
                "Initial evaluation: hx, systems review, tests & measures; POC established",
                "Moderate complexity PT evaluation",
            ),
            (30, 45),
            timed=False,
            pta_ok=False,
            body_site=False,
        ),
        _Template(
            "97163",
            "PT evaluation, high complexity",
            ("PT Eval (high complexity) + POC",),
            (45, 60),
            timed=False,
            pta_ok=False,
            body_site=False,
        ),
        _Template(
            "97164",
            "PT re-evaluation",
            ("Re-eval: progress toward goals, POC updated", "PT re-evaluation"),
            (20, 30),
            timed=False,
            pta_ok=False,
            body_site=False,
        ),
    )
}
_TREATMENT = ["97110", "97530", "97112", "97116", "97140", "97535", "G0283", "97010", "97035"]
_TREATMENT_WEIGHTS = [30, 18, 10, 7, 12, 5, 7, 6, 5]
# Plausible wrong codes a chart might carry (conflict between the coding and the text).
_CONFLICTS = {
    "97530": "97110",
    "97110": "97530",
    "97112": "97110",
    "97116": "97530",
    "97140": "97110",
    "97535": "97530",
    "97035": "97140",
    "G0283": "97014",
    "97010": "97110",
}
VAGUE = (
    "ther ex as tolerated",
    "tx per POC",
    "exercises per flowsheet",
    "continued w/ program, pt tolerated well",
    "see flowsheet",
)
NOTES = (
    "pt tolerated well, no incr in pain",
    "min c/o pain 3/10 after",
    "VC and TC for form",
    "progressed reps today",
    "rest breaks needed",
    "pt reports HEP compliance",
)

_SOPT_DEPRECATED = SOPT_SYSTEMS[1]

# Prior billed episode this year (some Medicare patients): share of Medicare patients, number of
# visits, and what one prior visit billed (CPT, units). About $90-$160 a visit with the shipped example
# fee schedule, so 18-26 visits put the year-to-date spend around the KX threshold.
PRIOR_EPISODE_SHARE = 0.35
PRIOR_EPISODE_VISITS = (18, 26)
PRIOR_VISIT_CHARGES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("97110", 2), ("97140", 1)),
    (("97110", 2), ("97530", 1)),
    (("97110", 1), ("97112", 1), ("97140", 1)),
    (("97530", 2), ("97116", 1)),
    (("97110", 2), ("97112", 1), ("97140", 1)),
)


# --- patient data ------------------------------------------------------------------------------

GIVEN = ["Alex", "Sam", "Pat", "Chris", "Robin", "Terry", "Jamie", "Dana", "Lee", "Kim", "Jesse", "Drew"]
FAMILY = [
    "Testperson",
    "Synthetic",
    "Fakerton",
    "Sampleton",
    "Dummyfield",
    "Notarealname",
    "Mockington",
    "Examplesen",
    "Fixtureson",
    "Phantomly",
]


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def _ext(url: str, key: str, value: Any) -> dict[str, Any]:
    return {"url": url, key: value}


def _pick_weighted(rng: random.Random, items: Sequence[str], weights: Sequence[int]) -> str:
    return rng.choices(list(items), weights=list(weights), k=1)[0]


class _PatientGen:
    def __init__(self, rng: random.Random, seed: int, n: int, start: date, visits: tuple[int, int]):
        self.rng = rng
        self.pid = f"s{seed}-p{n:04d}"
        self.n = n
        self.start = start
        self.visits = visits
        self.seed = seed
        self.shift = 0  # days this patient's episode starts after ``start`` (prior episode first)
        self.entries: list[dict[str, Any]] = []
        self.patient_url = _full_url("Patient", self.pid)

    def build(self) -> dict[str, Any]:
        rng = self.rng
        payer = _pick_weighted(rng, [p.key for p in PAYERS], [45, 15, 25, 15])
        medicare = payer == "payer-medicare"
        year = rng.randint(1938, 1960) if medicare else rng.randint(1958, 2006)
        birth = date(year, rng.randint(1, 12), rng.randint(1, 28))
        self.entries.append(
            _entry(
                "Patient",
                self.pid,
                {
                    "active": True,
                    "name": [
                        {
                            "use": "official",
                            "family": rng.choice(FAMILY),
                            "given": [rng.choice(GIVEN)],
                            "text": "synthetic test patient",
                        }
                    ],
                    "gender": rng.choice(["female", "male", "other", "unknown"]),
                    "birthDate": birth.isoformat(),
                    "managingOrganization": {"reference": _cond("Organization", CLINIC[0])},
                },
            )
        )
        self._coverage(payer, "cov-1", 1)
        if medicare and rng.random() < 0.15:
            self._coverage("payer-medicaid", "cov-2", 2)  # dual eligible
        if medicare:
            self._prior_charges()
        self._episode_and_visits()
        return _bundle(self.entries)

    def _prior_charges(self) -> None:
        """Some Medicare patients had an earlier episode this calendar year, already billed.

        Its ChargeItems (status ``billed``, CPT code and units, dated before this episode) make the
        year-to-date therapy spend approach or pass the Medicare KX threshold, so the engine's KX
        Flags and ATTEST-KX Tasks show up. A separate ``random.Random`` keyed by seed and patient
        number is used, so the main stream (and every other patient) is unchanged.
        """
        kx = random.Random(f"ptbill-synth-prior|{self.seed}|{self.n}")  # noqa: S311 - test data
        if kx.random() >= PRIOR_EPISODE_SHARE:
            return
        visits = kx.randint(*PRIOR_EPISODE_VISITS)
        day = date(self.start.year, 1, 2)
        for v in range(1, visits + 1):
            while day.weekday() >= 5:
                day += timedelta(days=1)
            for code, units in PRIOR_VISIT_CHARGES[kx.randrange(len(PRIOR_VISIT_CHARGES))]:
                tpl = TEMPLATES[code]
                self.entries.append(
                    _entry(
                        "ChargeItem",
                        f"{self.pid}-prior-{v:02d}-{code}",
                        {
                            "status": "billed",
                            "code": {"coding": [{"system": CPT, "code": code, "display": tpl.display}]},
                            "subject": {"reference": self.patient_url},
                            "occurrenceDateTime": day.isoformat(),
                            "quantity": {"value": units},
                            "performingOrganization": {"reference": _cond("Organization", CLINIC[0])},
                            "enteredDate": _iso(
                                datetime(day.year, day.month, day.day, 18, 0, tzinfo=_TZ) + timedelta(days=1)
                            ),
                        },
                    )
                )
            day += timedelta(days=kx.choice([1, 2, 2, 3]))
        # this episode starts after the earlier one ended
        self.shift = max(self.shift, (day - self.start).days + kx.randint(3, 10))

    def _coverage(self, payer_key: str, suffix: str, order: int) -> None:
        rng = self.rng
        payer = next(p for p in PAYERS if p.key == payer_key)
        system = _SOPT_DEPRECATED if rng.random() < 0.3 else SOPT_SYSTEMS[0]
        cov: dict[str, Any] = {
            "status": "active",
            "type": {"coding": [{"system": system, "code": payer.sopt, "display": payer.sopt_display}]},
            "subscriberId": f"SYN{self.n:06d}{order}",
            "beneficiary": {"reference": self.patient_url},
            "relationship": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                        "code": "self",
                    }
                ]
            },
            "period": {"start": date(self.start.year, 1, 1).isoformat()},
            "payor": [{"reference": _cond("Organization", payer.key), "display": payer.name}],
            "order": order,
        }
        if rng.random() < 0.1:
            del cov["type"]["coding"][0]["display"]
        self.entries.append(_entry("Coverage", f"{self.pid}-{suffix}", cov))

    def _episode_and_visits(self) -> None:
        rng = self.rng
        n_visits = rng.randint(*self.visits)
        first = self.start + timedelta(days=self.shift + rng.randint(0, 20))
        while first.weekday() >= 5:
            first += timedelta(days=1)
        pt = rng.choice(_PTS)
        eoc_id = f"{self.pid}-eoc"
        eoc_url = _full_url("EpisodeOfCare", eoc_id)
        certified = first + timedelta(days=rng.randint(1, 6))
        eoc: dict[str, Any] = {
            "status": "active",
            "type": [{"text": "Outpatient physical therapy"}],
            "patient": {"reference": self.patient_url},
            "managingOrganization": {"reference": _cond("Organization", CLINIC[0])},
            "period": {"start": first.isoformat()},
            "careManager": {"reference": _cond("Practitioner", pt.key)},
        }
        if rng.random() < 0.8:
            eoc["extension"] = [_ext(EXT_POC_CERTIFIED_DATE, "valueDate", certified.isoformat())]
        self.entries.append(_entry("EpisodeOfCare", eoc_id, eoc))

        day = first
        visit_no = 0
        last_pr = 1
        for k in range(1, n_visits + 1):
            r = rng.random()
            status = (
                "cancelled"
                if (k > 1 and r < 0.05)
                else "in-progress"
                if (k == n_visits and r < 0.3)
                else ("finished")
            )
            if status != "cancelled":
                visit_no += 1
            kind = (
                "eval"
                if k == 1
                else "reeval"
                if (visit_no > 0 and visit_no % 10 == 0)
                else ("group" if rng.random() < 0.06 else "treat")
            )
            self._visit(k, day, status, kind, visit_no, last_pr, pt, eoc_url)
            if kind in ("eval", "reeval") and status != "cancelled":
                last_pr = visit_no
            day += timedelta(days=rng.choice([2, 2, 3, 4]))
            while day.weekday() >= 5:
                day += timedelta(days=1)

    def _visit(
        self, k: int, day: date, status: str, kind: str, visit_no: int, last_pr: int, pt: _Staff, eoc_url: str
    ) -> None:
        rng = self.rng
        enc_id = f"{self.pid}-v{k:02d}"
        enc_url = _full_url("Encounter", enc_id)
        begin = datetime(
            day.year, day.month, day.day, rng.randint(7, 16), rng.choice([0, 15, 30, 45]), tzinfo=_TZ
        )
        treating = pt if kind in ("eval", "reeval") or rng.random() < 0.55 else rng.choice(_PTAS)
        group_size = rng.randint(2, 6) if kind == "group" else None

        if kind == "eval":
            plan = [rng.choice(["97161", "97162", "97162", "97163"])]
            plan += rng.sample(["97110", "97140", "97530"], rng.randint(0, 2))
        elif kind == "reeval":
            plan = ["97164", *rng.sample(["97110", "97112", "97530"], rng.randint(1, 2))]
        elif kind == "group":
            plan = ["97150"] + (["97010"] if rng.random() < 0.3 else [])
        else:
            count = rng.randint(1, 5)
            plan = []
            while len(plan) < count:
                c = _pick_weighted(rng, _TREATMENT, _TREATMENT_WEIGHTS)
                if c not in plan or rng.random() < 0.1:
                    plan.append(c)

        t = begin + timedelta(minutes=rng.randint(0, 5))
        timed_total = 0
        treatment_total = 0
        procs: list[dict[str, Any]] = []
        if status != "cancelled":
            for j, code in enumerate(plan, start=1):
                performer = treating
                tpl = TEMPLATES[code]
                if not tpl.pta_ok:
                    performer = pt
                elif code == "97535" and rng.random() < 0.15:
                    performer = _OT
                minutes = rng.randint(*tpl.minutes)
                last = j == len(plan)
                proc = self._procedure(
                    enc_id,
                    j,
                    enc_url,
                    tpl,
                    performer,
                    t,
                    minutes,
                    group_size,
                    in_progress=(status == "in-progress" and last),
                )
                procs.append(proc)
                treatment_total += minutes
                if tpl.timed:
                    timed_total += minutes
                t += timedelta(minutes=minutes + rng.choice([0, 0, 1, 2]))
        end = t + timedelta(minutes=rng.randint(0, 5))

        enc: dict[str, Any] = {
            "status": status,
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "serviceType": {
                "coding": [{"system": SNOMED, "code": "91251008", "display": "Physical therapy procedure"}],
                "text": "Physical therapy",
            },
            "subject": {"reference": self.patient_url},
            "episodeOfCare": [{"reference": eoc_url}],
            "participant": [{"individual": {"reference": _cond("PractitionerRole", treating.role)}}],
            "period": {"start": _iso(begin)}
            if status == "in-progress"
            else {"start": _iso(begin), "end": _iso(end)},
            "serviceProvider": {"reference": _cond("Organization", CLINIC[0])},
        }
        if kind in ("eval", "reeval"):
            enc["type"] = [{"text": "PT evaluation" if kind == "eval" else "PT re-evaluation"}]
        ext: list[dict[str, Any]] = []
        if status != "cancelled" and rng.random() < 0.85:
            ext.append(_ext(EXT_VISIT_NUMBER, "valuePositiveInt", visit_no))
            if visit_no > 1 and rng.random() < 0.6:
                ext.append(_ext(EXT_LAST_PROGRESS_REPORT_VISIT, "valuePositiveInt", last_pr))
        if status == "finished" and rng.random() < 0.3:
            drift = rng.choice([0, 0, 0, -2, 3])  # documented totals do not always match the Procedures
            ext.append(_ext(EXT_TOTAL_TIMED_MINUTES, "valueInteger", max(0, timed_total + drift)))
            ext.append(_ext(EXT_TOTAL_TREATMENT_MINUTES, "valueInteger", max(0, treatment_total + drift)))
        if group_size is not None:
            ext.append(_ext(EXT_GROUP_SIZE, "valuePositiveInt", group_size))
        if ext:
            enc["extension"] = ext
        if status == "finished" and rng.random() < 0.2:
            enc["length"] = {
                "value": int((end - begin).total_seconds() // 60),
                "unit": "min",
                "system": UCUM,
                "code": "min",
            }
        self.entries.append(_entry("Encounter", enc_id, enc))
        self.entries.extend(procs)

    def _procedure(
        self,
        enc_id: str,
        j: int,
        enc_url: str,
        tpl: _Template,
        performer: _Staff,
        t: datetime,
        minutes: int,
        group_size: int | None,
        *,
        in_progress: bool,
    ) -> dict[str, Any]:
        rng = self.rng
        part = rng.choice(PARTS)
        ex = rng.sample(EXERCISES, 3)
        text = rng.choice(tpl.texts).format(
            ex1=ex[0],
            ex2=ex[1],
            ex3=ex[2],
            part=part,
            band=rng.choice(BANDS),
            warm=rng.choice(WARMUPS),
            group=group_size or rng.randint(2, 4),
        )
        if tpl.code == "97110" and rng.random() < 0.08:
            text = rng.choice(VAGUE)
        style = rng.choices(
            ["cpt+text", "text", "snomed", "cpt-only", "conflict", "cpt+snomed"],
            weights=[38, 25, 8, 10, 7, 12],
        )[0]
        if style == "snomed" and tpl.snomed is None:
            style = "text"
        code: dict[str, Any] = {}
        system = HCPCS if tpl.code.startswith("G") else CPT
        cpt_coding = {"system": system, "code": tpl.code, "display": tpl.display}
        if style in ("cpt+text", "cpt+snomed"):
            code = {"coding": [cpt_coding], "text": text}
            if style == "cpt+snomed" and tpl.snomed:
                code["coding"].append({"system": SNOMED, "code": tpl.snomed[0], "display": tpl.snomed[1]})
        elif style == "text":
            code = {"text": text}
        elif style == "snomed" and tpl.snomed:
            code = {
                "coding": [{"system": SNOMED, "code": tpl.snomed[0], "display": tpl.snomed[1]}],
                "text": text,
            }
            if rng.random() < 0.4:  # SNOMED title only; the details live in the note
                code = {"coding": [{"system": SNOMED, "code": tpl.snomed[0], "display": tpl.snomed[1]}]}
        elif style == "cpt-only":
            code = {"coding": [cpt_coding]}
        else:  # conflict: the coding says one thing, the text another
            wrong = _CONFLICTS.get(tpl.code, "97110")
            wrong_system = HCPCS if wrong.startswith("G") else CPT
            code = {"coding": [{"system": wrong_system, "code": wrong}], "text": text}

        proc: dict[str, Any] = {
            "meta": {"tag": [{"system": TRUTH_TAG, "code": tpl.code}]},
            "status": "in-progress" if in_progress else ("not-done" if rng.random() < 0.015 else "completed"),
            "code": code,
            "subject": {"reference": self.patient_url},
            "encounter": {"reference": enc_url},
        }
        if proc["status"] == "not-done":
            proc["statusReason"] = {"text": "pt declined"}
        end = t + timedelta(minutes=minutes, seconds=rng.choice([0, 0, 0, 30]))
        r = rng.random()
        if in_progress or r < 0.06:
            proc["performedPeriod"] = {"start": _iso(t)}
        elif r < 0.10:
            proc["performedDateTime"] = _iso(t)
        elif r < 0.12:
            pass  # nothing documented about when
        else:
            proc["performedPeriod"] = {"start": _iso(t), "end": _iso(end)}
        ref_type = "PractitionerRole" if rng.random() < 0.8 else "Practitioner"
        actor: dict[str, Any] = {
            "reference": _cond(ref_type, performer.role if ref_type == "PractitionerRole" else performer.key)
        }
        if rng.random() < 0.3:
            actor["display"] = f"{performer.given} {performer.family}, {performer.credential}"
        proc["performer"] = [{"actor": actor}]
        if rng.random() < 0.3:
            proc["performer"][0]["function"] = {
                "coding": [
                    {"system": NUCC, "code": performer.taxonomy, "display": performer.taxonomy_display}
                ]
            }
        if tpl.body_site and rng.random() < 0.4:
            proc["bodySite"] = [{"text": part}]
        notes = []
        if style == "snomed" and "text" not in code:
            notes.append(text)
        if rng.random() < 0.3:
            notes.append(rng.choice(NOTES))
        if tpl.code == "97110" and rng.random() < 0.15:
            extra = rng.sample(EXERCISES, 4)
            notes.append(", ".join(f"{e} {rng.choice(['3x10', '2x15', '2x12', 'x20'])}" for e in extra))
        if notes:
            proc["note"] = [{"text": n} for n in notes]
        if group_size is not None and rng.random() < 0.5:
            proc["extension"] = [_ext(EXT_GROUP_SIZE, "valuePositiveInt", group_size)]
        return _entry("Procedure", f"{enc_id}-x{j}", proc)


def generate_clinic(
    *,
    patients: int,
    seed: int = 0,
    start: date = date(2026, 1, 5),
    visits_per_patient: tuple[int, int] = (4, 12),
) -> list[dict[str, Any]]:
    """``[master bundle] + [one transaction Bundle per patient]``; same arguments -> same output."""
    if patients < 0:
        raise ValueError("patients must be >= 0")
    lo, hi = visits_per_patient
    if lo < 1 or hi < lo:
        raise ValueError("visits_per_patient must be (min >= 1, max >= min)")
    rng = random.Random(seed)  # noqa: S311 - synthetic test data, not security
    bundles = [_master_bundle()]
    for n in range(1, patients + 1):
        bundles.append(_PatientGen(rng, seed, n, start, (lo, hi)).build())
    return bundles


def clinic_summary(bundles: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Counts of what ``generate_clinic`` produced: patients, encounters, procedures, and every type."""
    counts: dict[str, int] = {}
    n_bundles = 0
    for b in bundles:
        n_bundles += 1
        for e in b.get("entry") or []:
            rt = (e.get("resource") or {}).get("resourceType")
            if isinstance(rt, str):
                counts[rt] = counts.get(rt, 0) + 1
    return {
        "bundles": n_bundles,
        "patients": counts.get("Patient", 0),
        "encounters": counts.get("Encounter", 0),
        "procedures": counts.get("Procedure", 0),
        **{f"resources.{k}": v for k, v in sorted(counts.items())},
    }
