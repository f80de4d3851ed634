"""Who may see what: one table for the pages, the API and the exports.

Every route names the area it serves (``central.api.deps.gate``) and every query narrows to the
caller's reach in that area through the functions below, so a page, its JSON and its CSV export
cannot disagree. Technicians (实施运维) keep gateways and devices running: they reach device and
gateway health, the quarantine, remote commands and the case feed they install, and never
people's performance or personal data (evaluations, sessions, staff numbers, cases, evidence
snapshots, follow-up, bulletins). A role missing from a row reaches nothing there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, false, true

from central.security.tokens import Principal, Role
from central.store.schema import cases

REFUSED = "角色无权访问 / your role has no access to this"


class Area(StrEnum):
    HEALTH = "health"  # gateways: online, uplink, backlog, clock, device health, losses
    DEVICE_EVENTS = "device_events"  # raw stored events of the device-health kinds only
    EVENTS = "events"  # every raw stored event (keys, queue messages with staff numbers)
    QUARANTINE = "quarantine"  # messages ingest refused: when, from where, why, how big
    QUARANTINE_PAYLOAD = "quarantine_payload"  # … and their raw start (device text: tickets,
    #                                            staff numbers, service names)
    OPERATE = "operate"  # signed remote commands to gateways, and their log
    CASE_FEED = "case_feed"  # the approval system's cases posted in (a machine's job)
    CASES = "cases"  # 办件: staff, windows, time-limit ladder, lights
    EVALUATIONS = "evaluations"  # evaluations, sessions, presence, indicators, drill-down,
    #                              flagged evaluations, bulletins and every export of them
    EVIDENCE = "evidence"  # camera snapshots (faces)
    EVIDENCE_REQUEST = "evidence_request"  # ask a window's camera for a picture now (调取取证)
    FEED = "feed"  # the 好差评 feed's records sent upward: whole halls' evaluations, no names
    OUTBOX = "outbox"  # every outbound message's counts by channel and status (no contents)
    FOLLOWUP = "followup"  # bad-review follow-up (整改)
    APPEAL_FILE = "appeal_file"  # 申诉 a 差评 at 核实 (误评 / 恶意差评): the hall or department
    APPEAL_DECIDE = "appeal_decide"  # decide a 申诉: supervisors only
    REVIEW_DECIDE = "review_decide"  # confirm or dismiss a flag (复核)
    REVIEW_LOG = "review_log"  # who decided what on which flag, with their notes
    HALL_SETUP = "hall_setup"  # read a hall's opening hours, roster and staff names
    HALL_SETUP_WRITE = "hall_setup_write"
    REGISTRY = "registry"  # the registry of halls: names, tree, region codes (read and write)
    WALL = "wall"  # the 大屏: halls' states, counts, trends, rankings, ticker (no personal data
    #                beyond the staff name a window shows)
    ANOMALIES = "anomalies"  # 异常线索: gaming patterns per window and staff, their evidence
    AUDITS = "audits"  # 抽查: the monthly samples, their tasks, call-backs and findings (read)
    AUDIT_WORK = "audit_work"  # draw a month's sample, enter call-back results
    COMPLAINTS = "complaints"  # 网上投诉: what citizens wrote, their phone (masked), replies
    COMPLAINT_ROUTE = "complaint_route"  # 归口: hand a complaint to a department


class Reach(StrEnum):
    EVERY_HALL = "every_hall"
    OWN_HALL = "own_hall"  # the account's hall
    OWN_DEPARTMENT = "own_department"  # what is tied to the department's cases
    NONE = "none"


_S, _D, _H, _T = (Role.SUPERVISOR, Role.DEPARTMENT_LEADER, Role.HALL_MANAGER, Role.TECHNICIAN)
_SCREEN = Role.SCREEN
_ALL, _HALL, _DEPT = Reach.EVERY_HALL, Reach.OWN_HALL, Reach.OWN_DEPARTMENT

RULES: dict[Area, dict[Role, Reach]] = {
    Area.HEALTH: {_S: _ALL, _H: _HALL, _T: _ALL},
    Area.DEVICE_EVENTS: {_S: _ALL, _H: _HALL, _T: _ALL},
    Area.EVENTS: {_S: _ALL, _H: _HALL},
    Area.QUARANTINE: {_S: _ALL, _T: _ALL},
    Area.QUARANTINE_PAYLOAD: {_S: _ALL},
    Area.OPERATE: {_S: _ALL, _T: _ALL},
    Area.CASE_FEED: {_S: _ALL, _T: _ALL},
    Area.CASES: {_S: _ALL, _D: _DEPT, _H: _HALL},
    Area.EVALUATIONS: {_S: _ALL, _D: _DEPT, _H: _HALL},
    Area.EVIDENCE: {_S: _ALL, _D: _DEPT, _H: _HALL},
    Area.EVIDENCE_REQUEST: {_S: _ALL},  # a camera turned on people at will: supervisors only
    Area.FEED: {_S: _ALL, _H: _HALL},
    Area.OUTBOX: {_S: _ALL},
    Area.FOLLOWUP: {_S: _ALL, _D: _DEPT, _H: _HALL},
    Area.APPEAL_FILE: {_D: _DEPT, _H: _HALL},
    Area.APPEAL_DECIDE: {_S: _ALL},
    Area.REVIEW_DECIDE: {_S: _ALL},
    Area.REVIEW_LOG: {_S: _ALL, _H: _HALL},
    Area.HALL_SETUP: {_S: _ALL, _D: _DEPT, _H: _HALL},  # it names the staff (工作人员姓名)
    Area.HALL_SETUP_WRITE: {_S: _ALL},
    Area.REGISTRY: {_S: _ALL},
    # a screen reaches every hall here; one enrolled for a hall is narrowed to its subtree by
    # the wall's scope (central.api.wall), department leaders never: it shows whole halls
    Area.WALL: {_S: _ALL, _H: _HALL, _SCREEN: _ALL},
    Area.ANOMALIES: {_S: _ALL, _H: _HALL},  # decided (REVIEW_DECIDE) by supervisors only
    # the 监察室 audits; a department leader reads its own department's, never works them
    Area.AUDITS: {_S: _ALL, _D: _DEPT},
    Area.AUDIT_WORK: {_S: _ALL},
    # a department leader reaches the complaints routed to the department; the triage queue
    # (no department yet) and 归口 (routing) are the supervisors'
    Area.COMPLAINTS: {_S: _ALL, _D: _DEPT, _H: _HALL},
    Area.COMPLAINT_ROUTE: {_S: _ALL},
}

# the raw events of Area.DEVICE_EVENTS: device and gateway health, no person in them (not
# queue.fault: its raw $QM line can carry a ticket, a staff number, a service name)
DEVICE_EVENT_KINDS = frozenset(
    {
        "evaluator.health",
        "evaluator.boot",
        "evaluator.fault",
        "bus.stats",
        "camera.health",
        "gateway.boot",
        "gateway.selftest",
        "gateway.journal_loss",
    }
)


def reach(who: Principal, area: Area) -> Reach:
    """How far ``who`` reaches in ``area``; an account without its hall or department reaches
    nothing where that scope is what it would be limited to."""
    found = RULES[area].get(who.role, Reach.NONE)
    if (found is Reach.OWN_HALL and not who.hall) or (
        found is Reach.OWN_DEPARTMENT and not who.department
    ):
        return Reach.NONE
    return found


def may(who: Principal, area: Area) -> bool:
    return reach(who, area) is not Reach.NONE


def roles_with(area: Area) -> frozenset[Role]:
    return frozenset(role for role, r in RULES[area].items() if r is not Reach.NONE)


def case_filter(who: Principal, area: Area = Area.CASES) -> ColumnElement[bool]:
    """The ``cases`` rows ``who`` may see in ``area``."""
    found = reach(who, area)
    if found is Reach.EVERY_HALL:
        return true()
    if found is Reach.OWN_HALL:
        return cases.c.hall_id.in_(sorted(who.halls))
    if found is Reach.OWN_DEPARTMENT:
        return cases.c.department == who.department
    return false()


def hall_filter(who: Principal, column: Any, area: Area) -> ColumnElement[bool]:
    """For hall-keyed rows; a department's reach is narrowed by case links elsewhere."""
    found = reach(who, area)
    if found is Reach.OWN_HALL:
        return column.in_(sorted(who.halls))  # type: ignore[no-any-return]
    return false() if found is Reach.NONE else true()
