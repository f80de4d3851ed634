"""The detector on simulated hall weeks (recall, false openings, evidence, fingerprints) and
its pieces on plain values."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random

import pytest

from central.gaming.config import GamingConfig
from central.gaming.context import HallView
from central.gaming.detector import detect, detect_many
from central.gaming.malicious import contradicts
from central.gaming.model import (
    Baseline,
    CaseFact,
    Facts,
    Pattern,
    Period,
    PressFact,
    SessionFact,
)
from central.gaming.shift import tolerant
from tests.central.gaming.hallweek import BUSY, HallSpec, Seed, Truth, hall_week
from tests.central.gaming.scenario import MONDAY, baselines, province, run

HALL = HallSpec("B9", *BUSY)


@functools.cache
def _baseline() -> Baseline:
    return baselines([HALL])[HALL.hall_id]


def _week(seeds: tuple[Seed, ...], truth: Truth | None = None, seed: int = 4242) -> Facts:
    return dataclasses.replace(hall_week(HALL, MONDAY, seed, seeds, truth), baseline=_baseline())


def test_recall_and_false_openings_over_simulated_province_weeks() -> None:
    """Two busy and three quiet halls over eight weeks, every pattern at the strengths the
    README holds the detector to: ≥ 95 % of the seeded gaming found, ≤ 1 % of the clean
    window-weeks given any case (the benchmark runs a province ten times the size)."""
    score = run(province(2, 3), weeks=8, seed=7)
    assert sum(score.seeded.values()) >= 60 and score.clean >= 150
    missed = {k: (score.found[k], n) for k, n in score.seeded.items() if score.found[k] < n}
    assert score.recall >= 0.95, missed
    assert score.false_rate <= 0.01, [a.summary for a in score.falsely]
    for a in score.anomalies:  # every case carries its evidence and its test
        refs = [a.evidence.get(k) for k in ("presses", "sessions", "cases")]
        assert any(refs), a
        assert a.p_value is not None and a.q_value is not None and a.q_value <= 0.01
        assert a.method and a.summary and a.effect_name
        assert a.staff is None or a.staff not in a.summary  # no personal data


STRONG_SEEDS = [
    Seed(Pattern.REGULAR_TIMING, 2, 1.0),
    Seed(Pattern.INSTANT_PRESS, 2, 0.4),
    Seed(Pattern.KEY_STREAK, 2, 130),
    Seed(Pattern.PRESS_WITHOUT_CITIZEN, 2, 10),
    Seed(Pattern.SELECTIVE_INVITING, 2, 1.0),
    Seed(Pattern.CANCELLED_INVITATIONS, 3, 0.8),
    Seed(Pattern.LOW_EVALUATION_RATE, 2, 0.7),
    Seed(Pattern.MALICIOUS_SAME_APPLICANT, 2, 4),
    Seed(Pattern.MALICIOUS_ABANDONED_CASES, 2, 8),
    Seed(Pattern.CONTRADICTS_RECORD, 2, 5),
    Seed(Pattern.DISTRIBUTION_SHIFT, 2, 0.4, "bad"),
    Seed(Pattern.DISTRIBUTION_SHIFT, 1, 1.0, "good"),
]


@pytest.mark.parametrize("seed", STRONG_SEEDS, ids=lambda s: f"{s.pattern.value}-{s.mode}")
def test_each_pattern_opens_on_its_window_only(seed: Seed) -> None:
    truth = Truth()
    opened = detect(_week((seed,), truth))
    mine = [a for a in opened if a.pattern is seed.pattern]
    assert mine, opened
    for a in mine:
        if seed.pattern is Pattern.CONTRADICTS_RECORD:
            assert a.window is None and str(a.evidence["applicant_digest"]) in truth.digests
            assert len(a.evidence["windows"]) >= 2  # type: ignore[arg-type]
        else:
            assert a.window == seed.window and a.staff == f"{seed.window:04d}"
    clean = {a.window for a in opened} - {w for _, w in truth.touched} - {None}
    assert not clean, [a.summary for a in opened if a.window in clean]


def test_fingerprints_are_stable_and_independent_of_the_order_of_facts() -> None:
    seeds = (Seed(Pattern.INSTANT_PRESS, 2, 0.5), Seed(Pattern.MALICIOUS_SAME_APPLICANT, 5, 4))
    facts = _week(seeds)
    rng = random.Random(3)
    other = dataclasses.replace(
        facts,
        presses=tuple(rng.sample(facts.presses, len(facts.presses))),
        sessions=tuple(rng.sample(facts.sessions, len(facts.sessions))),
        cases=tuple(rng.sample(facts.cases, len(facts.cases))),
    )
    first = detect(facts)
    assert {a.pattern for a in first} >= {Pattern.INSTANT_PRESS, Pattern.MALICIOUS_SAME_APPLICANT}
    assert [a.fingerprint for a in first] == [a.fingerprint for a in detect(other)]
    assert [a.fingerprint for a in first] == [a.fingerprint for a in detect(facts)]
    # a run over two halls adjusts q-values together, never what an anomaly is about
    twin = dataclasses.replace(facts, hall_id="X")
    both = detect_many([twin, facts])
    assert {a.fingerprint for a in both if a.hall_id == facts.hall_id} == {
        a.fingerprint for a in first
    }
    assert {a.fingerprint for a in both if a.hall_id == "X"}.isdisjoint(
        a.fingerprint for a in first
    )


def test_without_an_earlier_baseline_one_gaming_window_does_not_implicate_the_others() -> None:
    """The hall's own week as the baseline, one window pressing at once inside it."""
    facts = dataclasses.replace(_week((Seed(Pattern.INSTANT_PRESS, 2, 0.6),)), baseline=None)
    opened = detect(facts)
    assert Pattern.INSTANT_PRESS in {a.pattern for a in opened if a.window == 2}
    assert {a.window for a in opened} == {2}, [a.summary for a in opened]


T0 = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)


def _session(i: int, start_s: float, end_s: float) -> SessionFact:
    return SessionFact(
        session_id=f"s{i}",
        hall_id="H",
        business_day=T0.date(),
        window=1,
        staff="0001",
        service="A",
        called_at=T0 + dt.timedelta(seconds=start_s),
        started_at=T0 + dt.timedelta(seconds=start_s + 15),
        ended_at=T0 + dt.timedelta(seconds=end_s),
        next_call_at=None,
    )


@pytest.mark.parametrize(
    ("at_s", "citizen", "idle"),
    [
        (310.0, None, False),  # right after the service: its citizen
        (400.0, None, False),  # 100 s after: still within the grace
        (500.0, None, True),  # 200 s after, nobody called
        (700.0, None, False),  # the next citizen is being served
        (50.0, None, True),  # before anyone was called that day
        (310.0, "absent", True),  # the camera saw nobody
        (500.0, "present", False),  # the camera saw someone
    ],
)
def test_press_without_citizen_reads_the_queue_and_the_camera(
    at_s: float, citizen: str | None, idle: bool
) -> None:
    sessions = (_session(1, 100, 300), _session(2, 600, 900))
    press = PressFact(
        gateway_id="g",
        seq=1,
        hall_id="H",
        business_day=T0.date(),
        window=1,
        staff=None,
        key=1,
        at=T0 + dt.timedelta(seconds=at_s),
        session_id=None,
        invited=False,
        seconds_after_invitation=None,
        citizen=citizen,
    )
    view = HallView(Facts("H", Period.day(T0.date()), (press,), sessions), GamingConfig())
    assert view.is_idle(press) is idle
    assert view.subject_of(press) == (1, "0001" if at_s >= 100 else None)


def _case(**changes: object) -> CaseFact:
    base = CaseFact(
        case_no="C1",
        hall_id="H",
        item_code="i",
        department="d",
        window=1,
        staff="0001",
        applicant_digest="x",
        accepted_at=T0,
        completed_at=T0 + dt.timedelta(days=1),
        status="completed",
        legal_days=20,
        promised_days=10,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),  # completed in 1 of 10 promised days
        ({"completed_at": T0 + dt.timedelta(days=8)}, False),  # not early, not on the spot
        ({"completed_at": T0 + dt.timedelta(days=8), "on_site": True}, True),
        ({"overdue": True}, False),
        ({"complaint": True}, False),  # a founded complaint backs the review
        ({"status": "withdrawn", "completed_at": None}, False),
        ({"promised_days": None, "completed_at": T0 + dt.timedelta(days=9)}, True),  # legal 20
    ],
)
def test_what_contradicts_a_bad_review(changes: dict[str, object], expected: bool) -> None:
    assert contradicts(_case(**changes)) is expected


@pytest.mark.parametrize(
    ("observed", "moved"),
    [
        ([80, 10, 10], None),  # within the tolerated 0.05
        ([60, 10, 30], [0.75, 0.1, 0.15]),  # tvd 0.2: a quarter of the way
        ([100, 0, 0], [0.85, 0.075, 0.075]),
    ],
)
def test_tolerated_staff_difference(observed: list[int], moved: list[float] | None) -> None:
    got = tolerant([0.8, 0.1, 0.1], observed, 0.05)
    assert got == (None if moved is None else pytest.approx(moved))
