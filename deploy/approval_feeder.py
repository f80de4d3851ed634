"""The demo's approval system (审批系统): posts 办件 to central through the real case API.

At start it reports the hall's backlog — cases accepted on earlier working days, chosen so that
today they stand at every step of the time-limit ladder (蓝灯 … 监察建议书), one suspended for
补正 and one completed late. Then it follows the simulated hall's ground-truth file: for every
finished service it accepts the case(s) the window handled (most services one, some two —
一次办多件), at the window, by the staff member, during the service,
as an approval system would record them. 即办件 are completed at once. Each case posted is
written to ``cases.jsonl`` beside the truth file with its service (window, ticket).

    python deploy/approval_feeder.py --api URL --token TOKEN --hall H --truth FILE
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from central.rules.timelimit import CaseClock, LadderStage, stage_on  # noqa: E402
from central.rules.workdays import BUSINESS_TZ, WorkCalendar, business_date  # noqa: E402


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    promised_days: int  # 0: 即办件
    legal_days: int


# What each queue service (the ticket's category) handles, and who is responsible for it.
DEPARTMENTS: dict[str, tuple[str, tuple[Item, ...]]] = {
    "A01": (
        "市自然资源局",
        (
            Item("620900-ZR-001", "不动产转移登记", 5, 30),
            Item("620900-ZR-002", "不动产抵押登记", 3, 15),
        ),
    ),
    "B01": (
        "市人力资源和社会保障局",
        (
            Item("620900-RS-001", "社会保险参保登记", 0, 5),
            Item("620900-RS-002", "养老保险关系转移", 3, 15),
        ),
    ),
    "C01": (
        "市公安局",
        (Item("620900-GA-001", "户口迁移", 5, 20), Item("620900-GA-002", "户籍证明开具", 0, 5)),
    ),
    "D01": (
        "市市场监督管理局",
        (
            Item("620900-SJ-001", "企业设立登记", 3, 15),
            Item("620900-SJ-002", "营业执照变更登记", 3, 15),
        ),
    ),
    "E01": (
        "市住房公积金管理中心",
        (
            Item("620900-GJ-001", "住房公积金提取", 0, 3),
            Item("620900-GJ-002", "住房公积金贷款审批", 5, 15),
        ),
    ),
}
# (cases, probability). No consultations without a case: the demo compresses services into
# seconds, so a case-less service a few seconds before another would make that one's case
# look like a late entry for it (CASE_AMBIGUOUS), which real service lengths rule out.
CASES_PER_SERVICE = ((1, 0.92), (2, 0.08))
SURNAMES = "王李张刘陈杨赵黄周吴"
GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "磊", "洋", "艳", "军")

# The backlog: (stage it should show today, how many).
BACKLOG = (
    (LadderStage.BLUE, 3),
    (LadderStage.YELLOW_LIGHT, 2),
    (LadderStage.RED_LIGHT, 2),
    (LadderStage.YELLOW_CARD, 2),
    (LadderStage.RED_CARD, 1),
    (LadderStage.SUPERVISION_LETTER, 1),
)


def department_of(service: str) -> str:
    return DEPARTMENTS.get(service, DEPARTMENTS["A01"])[0]


def roster(windows: int) -> dict[str, str]:
    """Window → department, as the simulated hall assigns services (window w serves the
    w-th service and the next; it belongs to the first's department)."""
    codes = list(DEPARTMENTS)
    return {str(w): DEPARTMENTS[codes[(w - 1) % len(codes)]][0] for w in range(1, windows + 1)}


class Feeder:
    def __init__(
        self,
        api: str,
        token: str,
        hall: str,
        rng: random.Random,
        calendar: WorkCalendar | None = None,
    ) -> None:
        self.client = httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
        self.hall = hall
        self.rng = rng
        self.calendar = calendar or WorkCalendar()
        self.numbers = 0
        self.posted = 0

    def case_no(self, day: dt.date) -> str:
        self.numbers += 1
        return f"JQ{day:%Y%m%d}{self.numbers:05d}"

    def applicant(self) -> dict[str, str]:
        name = self.rng.choice(SURNAMES) + self.rng.choice(GIVEN)
        return {"name": name, "phone": f"13{self.rng.randrange(10**9):09d}"}

    def post(self, cases: list[dict[str, Any]]) -> None:
        if not cases:
            return
        for attempt in range(5):
            try:
                reply = self.client.post("/api/v1/cases", json={"cases": cases})
                reply.raise_for_status()
                break
            except httpx.HTTPError as exc:
                print(f"case feed: {exc}; retrying", flush=True)
                time.sleep(2 + attempt)
        else:
            return
        results = reply.json().get("results", [])
        rejected = [r for r in results if r.get("outcome") == "rejected"]
        self.posted += len(cases) - len(rejected)
        for r in rejected:
            print(f"case feed: rejected {r}", flush=True)

    # -- the backlog ---------------------------------------------------------------------------

    def backlog(self, staff: dict[int, str], today: dt.date) -> list[dict[str, Any]]:
        """Cases accepted on earlier days, each placed to show its stage today."""
        cases = []
        windows = sorted(staff)
        for stage, count in BACKLOG:
            for _ in range(count):
                window = self.rng.choice(windows)
                service = list(DEPARTMENTS)[(window - 1) % len(DEPARTMENTS)]
                department, items = DEPARTMENTS[service]
                item = max(items, key=lambda i: i.promised_days)
                accepted = self._accepted_for(stage, item, today)
                if accepted is None:
                    continue
                cases.append(
                    self._case(accepted, window, staff[window], department, item, status="running")
                )
        # One waiting for the applicant's missing papers (补正), one completed late.
        window = windows[0]
        service = list(DEPARTMENTS)[(window - 1) % len(DEPARTMENTS)]
        department, items = DEPARTMENTS[service]
        item = max(items, key=lambda i: i.promised_days)
        accepted = self._accepted_for(LadderStage.YELLOW_CARD, item, today)
        if accepted is not None:
            suspended = self._case(
                accepted, window, staff[window], department, item, status="suspended"
            )
            suspended["suspensions"] = [
                {
                    "start": (accepted + dt.timedelta(days=1)).isoformat(),
                    "end": None,
                    "reason": "补正",
                }
            ]
            cases.append(suspended)
            late = self._case(accepted, window, staff[window], department, item, status="completed")
            late["completed_at"] = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
            cases.append(late)
        return cases

    def _accepted_for(self, stage: LadderStage, item: Item, today: dt.date) -> dt.datetime | None:
        """The latest 10:00 acceptance on an earlier day that stands at ``stage`` today."""
        for back in range(1, 90):
            day = today - dt.timedelta(days=back)
            if not self.calendar.is_workday(day):
                continue
            accepted = dt.datetime.combine(day, dt.time(10, 0), BUSINESS_TZ)
            clock = CaseClock(
                accepted_at=accepted, legal_days=item.legal_days, promised_days=item.promised_days
            )
            if stage_on(clock, today, self.calendar) is stage:
                return accepted.astimezone(dt.UTC)
        return None

    def _case(
        self,
        accepted: dt.datetime,
        window: int,
        staff: str,
        department: str,
        item: Item,
        *,
        status: str,
        applicant: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return {
            "case_no": self.case_no(business_date(accepted)),
            "item_code": item.code,
            "item_name": item.name,
            "department": department,
            "hall": self.hall,
            "window": window,
            "staff": staff,
            "accepted_at": accepted.isoformat(),
            "legal_days": item.legal_days,
            "promised_days": item.promised_days,
            "status": status,
            "applicant": applicant or self.applicant(),
        }

    # -- today's services ----------------------------------------------------------------------

    def cases_for(self, service: dict[str, Any]) -> list[dict[str, Any]]:
        """The case(s) a finished service produced: accepted during the service."""
        roll, many = self.rng.random(), 1
        for count, chance in CASES_PER_SERVICE:
            if roll < chance:
                many = count
                break
            roll -= chance
        department, items = DEPARTMENTS.get(service["service"], DEPARTMENTS["A01"])
        started, finished = service["started_at"], service["finished_at"]
        applicant = self.applicant()  # 一次办多件: one citizen, several cases
        out = []
        for n in range(many):
            item = items[(n + self.rng.randrange(len(items))) % len(items)]
            at = started + (finished - started) * (0.3 + 0.2 * n)
            accepted = dt.datetime.fromtimestamp(at, dt.UTC)
            case = self._case(
                accepted,
                service["window"],
                service["staff"],
                department,
                item,
                status="completed" if item.promised_days == 0 else "running",
                applicant=applicant,
            )
            if item.promised_days == 0:
                case["completed_at"] = dt.datetime.fromtimestamp(finished, dt.UTC).isoformat()
            out.append(case)
        return out


def follow(path: Path, feeder: Feeder, every: float, posted: Path) -> None:
    """Tail the hall's truth file and post the cases of each finished service; ``posted``
    gets one line per case with the service it belongs to (the ties central should find)."""
    offset = 0
    while True:
        batch: list[dict[str, Any]] = []
        ties: list[dict[str, Any]] = []
        try:
            with path.open(encoding="utf-8") as file:
                file.seek(offset)
                while line := file.readline():
                    if not line.endswith("\n"):
                        break  # a line still being written
                    offset += len(line.encode("utf-8"))
                    record = json.loads(line)
                    if record.get("kind") == "service":
                        cases = feeder.cases_for(record)
                        batch += cases
                        ties += [
                            {
                                "case_no": c["case_no"],
                                "window": record["window"],
                                "ticket": record["ticket"],
                            }
                            for c in cases
                        ]
        except FileNotFoundError:
            pass
        feeder.post(batch)
        if ties:
            with posted.open("a", encoding="utf-8") as file:
                file.writelines(json.dumps(t) + "\n" for t in ties)
        time.sleep(every)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--hall", required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument(
        "--staff", required=True, help="window=staff,… of the hall (the backlog's windows)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between posts")
    args = parser.parse_args(argv)
    staff = {int(w): s for w, s in (pair.split("=") for pair in args.staff.split(","))}
    feeder = Feeder(args.api, args.token, args.hall, random.Random(args.seed))
    backlog = feeder.backlog(staff, business_date(dt.datetime.now(dt.UTC)))
    feeder.post(backlog)
    print(f"case feed: backlog of {len(backlog)} cases posted", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        follow(args.truth, feeder, args.every, args.truth.with_name("cases.jsonl"))


if __name__ == "__main__":
    main()
