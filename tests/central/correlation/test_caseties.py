"""Case → service ties on hand-built windows (pure): a person's entry-lag habit, one applicant per
service, the item's queue category, and ambiguity made visible."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from central.correlation.caseties import CaseTie, entry_lag, tie_cases
from central.correlation.config import CorrelationConfig
from central.correlation.engine import Flag, correlate
from central.correlation.model import CaseInfo, InvitationInfo, InviteRecord, Press, TimeSource
from central.correlation.sessions import ServiceSession, build_sessions
from tests.central.correlation.test_sessions import Feed, at

STAFF = "000111"
CFG = CorrelationConfig()
NINE = at("09:00:00")


def hms(seconds: float) -> str:
    return (NINE + dt.timedelta(seconds=seconds)).strftime("%H:%M:%S")


class Window:
    """Window 1, back-to-back services: called every 300 s, seated 20 s later, finished 260 s
    after that; the staff call the next number 20 s after finishing."""

    def __init__(self, services: str = "AAAAAA") -> None:
        self.feed = Feed()
        self.feed(hms(-60), "LI", window=1, staff=STAFF)
        self.tickets = []
        for k, category in enumerate(services):
            ticket = f"{category}{k + 1:03d}"
            self.tickets.append(ticket)
            self.feed(hms(-50 + k), "TK", ticket=ticket, service=category)
        self.fn = {}
        for k, ticket in enumerate(self.tickets):
            self.feed(hms(300 * k), "CL", ticket=ticket, window=1)
            self.feed(hms(300 * k + 20), "ST", ticket=ticket, window=1, staff=STAFF)
            self.fn[ticket] = self.feed(
                hms(300 * k + 280), "FN", ticket=ticket, window=1, staff=STAFF
            )
        self.feed(hms(300 * len(services) + 900), "HB")
        self.sessions = build_sessions("H1", self.feed.records).sessions

    def ended(self, k: int) -> float:
        """Seconds after 09:00 the k-th (0-based) service ended."""
        return 300 * k + 280

    def ticket_of(self, ties: Mapping[str, CaseTie]) -> dict[str, str]:
        by_id = {s.session_id: s.ticket for s in self.sessions}
        return {n: by_id[t.session_id] for n, t in ties.items()}


def case(
    no: str, seconds: float, *, item: str | None = None, applicant: str | None = None
) -> CaseInfo:
    return CaseInfo(
        no, "H1", 1, STAFF, NINE + dt.timedelta(seconds=seconds), "市场监管局", item, applicant
    )


def test_a_person_who_enters_cases_two_minutes_late_is_learned_and_followed() -> None:
    w = Window()
    # each case accepted 120 s after its service ended: inside the next service
    lagged = [case(f"L{k}", w.ended(k) + 120 + (k % 3) * 5) for k in range(6)]
    intervals = [(s.service_start, s.ended_at) for s in w.sessions if s.service_start]
    learned = entry_lag([c.accepted_at for c in lagged], intervals, CFG)
    assert learned is not None and abs(learned - 125) <= 10
    ties = tie_cases("H1", w.sessions, lagged, CFG)
    assert w.ticket_of(ties) == {f"L{k}": w.tickets[k] for k in range(6)}
    assert {t.reason for t in ties.values()} == {"entry_lag"}
    assert not any(t.ambiguous for t in ties.values())

    # the same windows with cases entered during the service: no habit, tied inside
    prompt = [case(f"P{k}", 300 * k + 100 + (k % 3) * 40) for k in range(6)]
    # (a steady moment inside each service: a steady lag after the previous one's end explains
    # all but the first case, which no earlier service precedes, so inside wins)
    assert entry_lag([c.accepted_at for c in prompt], intervals, CFG) is None
    ties = tie_cases("H1", w.sessions, prompt, CFG)
    assert w.ticket_of(ties) == {f"P{k}": w.tickets[k] for k in range(6)}
    assert {t.reason for t in ties.values()} == {"inside"}


def test_one_service_holds_one_applicants_cases() -> None:
    w = Window("AAA")
    # two cases inside the second service: of two applicants, the first was the first
    # service's, entered late; of one applicant, both are the second's (一次办多件)
    two = [case("X", 330, applicant="x" * 64), case("Y", 450, applicant="y" * 64)]
    assert w.ticket_of(tie_cases("H1", w.sessions, two, CFG)) == {"X": "A001", "Y": "A002"}
    one = [case("X1", 330, applicant="x" * 64), case("X2", 450, applicant="x" * 64)]
    assert w.ticket_of(tie_cases("H1", w.sessions, one, CFG)) == {"X1": "A002", "X2": "A002"}


def test_the_items_queue_category_is_learned_and_kept_to() -> None:
    w = Window("ABABBA")
    cases = [
        case("a1", 100, item="A-1"),
        case("b1", 400, item="B-1"),
        case("a2", 700, item="A-1"),
        case("b2", 1000, item="B-1"),
        # the fifth service (B) has no case of its own; this B case was entered 50 s
        # after it, 30 s into the sixth service, which is category A
        case("b3", w.ended(4) + 50, item="B-1"),
    ]
    ties = tie_cases("H1", w.sessions, cases, CFG)
    assert w.ticket_of(ties)["b3"] == "B005"
    assert (ties["b3"].reason, ties["b3"].ambiguous) == ("entry_lag", False)
    # without an item the same acceptance is the sixth service's, and that is in doubt
    bare = [*cases[:4], case("b3", w.ended(4) + 50)]
    ties = tie_cases("H1", w.sessions, bare, CFG)
    assert w.ticket_of(ties)["b3"] == "A006" and ties["b3"].ambiguous


def _press(seq: int, ticket: str, w: Window, session: ServiceSession) -> tuple[Press, InviteRecord]:
    fn = w.fn[ticket]
    info = InvitationInfo(seq, ticket, STAFF, fn.mseq)
    assert session.ended_at is not None
    pressed = session.ended_at + dt.timedelta(seconds=8)
    mono = int((pressed - NINE).total_seconds() * 1e9)
    press = Press(
        "gw1",
        seq,
        pressed,
        TimeSource.SYNCED,
        "b" * 16,
        mono,
        1,
        0x81,
        seq,
        1,
        seq,
        info,
        frozenset(),
    )
    return press, InviteRecord("gw1", seq + 100, fn.at, 1, 0x81, info, 30, "ok")


def test_an_ambiguous_tie_is_flagged_on_both_services_evaluations() -> None:
    w = Window("AAA")
    # nothing was accepted during the first service; one case 50 s after it ended, 30 s into
    # the second: the second's own case, or the first's entered late?
    cases = [case("C", w.ended(0) + 50)]
    ties = tie_cases("H1", w.sessions, cases, CFG)
    by_ticket = {s.ticket: s for s in w.sessions}
    assert ties["C"].session_id == by_ticket["A002"].session_id
    assert ties["C"].ambiguous_with == (by_ticket["A001"].session_id,)
    presses, invites = zip(
        *(_press(k + 1, t, w, by_ticket[t]) for k, t in enumerate(("A001", "A002", "A003"))),
        strict=True,
    )
    out = {
        r.ticket: r
        for r in correlate("H1", w.sessions, presses, invites=invites, cases=cases, cfg=CFG).results
    }
    for ticket in ("A001", "A002"):
        assert out[ticket].flags == (Flag.CASE_AMBIGUOUS,) and out[ticket].counted
        assert out[ticket].confidence == 0.7
    assert (out["A003"].flags, out["A003"].confidence) == ((), 1.0)
    assert out["A002"].case_nos == ("C",) and out["A001"].case_nos == ()
