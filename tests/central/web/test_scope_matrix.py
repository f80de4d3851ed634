"""The scope matrix: every route of central's app (enumerated from ``app.routes``) × every role
and no login, against a table written out here, independently of central.security.access. A route
missing from the table — a new one nobody decided about — fails the test.

"Allowed" means the route let the caller past its role check (anything but 401/403, so a 404
for a case outside the caller's own scope or a 422 for a deliberately empty body still counts
as allowed); "refused" means 403 for a role (pages: the refusal page), 401 for no login on the
API and a redirect to the login form for pages. Technicians (实施运维) reach device and gateway
health, never people's performance or personal data."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import iter_route_contexts

from central.security import screens
from central.security.tokens import Role
from tests.central.web.conftest import Site, login
from tests.central.web.seed import MARKET, PASSWORD

S, D, H, T = "supervisor", "department_leader", "hall_manager", "technician"
SCREEN = "screen"  # a 大屏 device's cookie: the wall and what anyone may open, nothing else
EVERYONE = frozenset({S, D, H, T, "anonymous", SCREEN})
PEOPLE = frozenset({S, D, H})  # people's work: evaluations, cases, follow-up, bulletins
HEALTH = frozenset({S, H, T})  # gateways and devices (a department has no hall of its own)
OPERATORS = frozenset({S, T})
WALL = frozenset({S, H, SCREEN})  # whole halls: not a department's

EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/openapi.json"): EVERYONE,
    ("GET", "/docs"): EVERYONE,
    ("GET", "/docs/oauth2-redirect"): EVERYONE,
    ("GET", "/redoc"): EVERYONE,
    ("GET", "/healthz"): EVERYONE,  # the supervised tasks' states, tier links down; no data
    ("GET", "/api/v1/events"): HEALTH,
    ("GET", "/api/v1/gateways"): HEALTH,
    ("GET", "/api/v1/bridges"): HEALTH,  # tier links: name no hall, carry many
    ("GET", "/api/v1/quarantine"): OPERATORS,
    ("POST", "/api/v1/gateways/{gateway}/commands"): OPERATORS,
    ("GET", "/api/v1/gateways/{gateway}/commands"): OPERATORS,
    ("POST", "/api/v1/cases"): OPERATORS,  # the approval system's feed, a machine's token
    ("GET", "/api/v1/cases"): PEOPLE,
    ("GET", "/api/v1/cases/{case_no}"): PEOPLE,
    ("GET", "/api/v1/cases/{case_no}/revisions"): PEOPLE,
    ("GET", "/api/v1/evaluations"): PEOPLE,
    ("GET", "/api/v1/evaluations/export"): PEOPLE,
    ("GET", "/api/v1/evaluations/{gateway}/{seq}"): PEOPLE,
    ("GET", "/api/v1/correlation/reissues"): PEOPLE,
    ("GET", "/api/v1/sessions"): PEOPLE,
    ("GET", "/api/v1/presence"): PEOPLE,
    ("GET", "/api/v1/followups"): PEOPLE,
    ("GET", "/api/v1/followups/overdue"): PEOPLE,
    ("GET", "/api/v1/followups/{item_id}"): PEOPLE,
    ("POST", "/api/v1/followups/{item_id}/assign"): PEOPLE,
    ("POST", "/api/v1/followups/{item_id}/verify"): PEOPLE,
    ("POST", "/api/v1/followups/{item_id}/rectify"): PEOPLE,
    ("POST", "/api/v1/followups/{item_id}/call-back"): PEOPLE,
    ("POST", "/api/v1/followups/{item_id}/close"): PEOPLE,
    ("POST", "/api/v1/followups/{item_id}/appeal"): frozenset({D, H}),  # the hall or department
    ("POST", "/api/v1/followups/{item_id}/appeal-decision"): frozenset({S}),
    ("GET", "/api/v1/followups/statistics"): PEOPLE,
    ("GET", "/api/v1/followups/statistics.csv"): PEOPLE,
    ("GET", "/api/v1/indicators/workorders"): PEOPLE,
    ("GET", "/api/v1/indicators"): PEOPLE,
    ("GET", "/api/v1/halls/{hall}/setup"): PEOPLE,  # it names the staff
    ("PUT", "/api/v1/halls/{hall}/setup"): frozenset({S}),
    ("GET", "/api/v1/halls"): frozenset({S}),  # the registry of halls
    ("GET", "/api/v1/halls/{hall}"): frozenset({S}),
    ("PUT", "/api/v1/halls/{hall}"): frozenset({S}),
    ("GET", "/api/v1/evidence/{sha256}"): PEOPLE,  # faces
    # a camera turned on a window at will (调取取证): supervisors only
    ("POST", "/api/v1/evidence-requests"): frozenset({S}),
    ("GET", "/api/v1/evidence-requests/{request_id}"): frozenset({S}),
    ("GET", "/api/v1/halls/{hall}/evidence-requests"): frozenset({S}),
    ("GET", "/api/v1/feed/status"): frozenset({S, H}),  # the 好差评 feed: whole halls' records
    ("GET", "/api/v1/outbox/status"): frozenset({S}),  # every hall's messages, counted
    ("GET", "/feed"): frozenset({S, H}),  # the page of the two above
    ("GET", "/api/v1/overview"): PEOPLE | {T},  # each part only for who reaches it
    ("GET", "/api/v1/drilldown"): PEOPLE,
    ("GET", "/api/v1/bulletin"): PEOPLE,
    ("GET", "/api/v1/bulletin.csv"): PEOPLE,
    ("GET", "/api/v1/evaluations/{gateway}/{seq}/reviews"): PEOPLE,
    ("POST", "/api/v1/evaluations/{gateway}/{seq}/reviews"): frozenset({S}),
    ("GET", "/api/v1/reviews"): frozenset({S, H}),  # reviewers' names and notes
    ("GET", "/api/v1/review-queue"): PEOPLE,
    ("GET", "/api/v1/review-queue/page"): PEOPLE,
    ("POST", "/api/v1/review-queue/decide"): frozenset({S}),
    ("GET", "/api/v1/wall/snapshot"): WALL,
    ("GET", "/api/v1/wall/ticker"): WALL,
    ("GET", "/api/v1/wall/hall/{hall_id}"): WALL,
    ("GET", "/api/v1/wall/stream"): WALL,
    ("GET", "/wall/enroll"): EVERYONE,  # a one-time code turns a browser into a screen
    ("GET", "/api/v1/anomalies"): frozenset({S, H}),  # 异常线索: staff under suspicion
    ("GET", "/api/v1/anomalies/{anomaly_id}"): frozenset({S, H}),
    ("POST", "/api/v1/anomalies/{anomaly_id}/decisions"): frozenset({S}),
    ("GET", "/anomalies"): frozenset({S, H}),
    ("POST", "/api/v1/audits/draw"): frozenset({S}),  # 抽查: the 监察室 draws and calls back
    ("GET", "/api/v1/audits"): frozenset({S, D}),  # a department leader reads its own
    ("GET", "/api/v1/audits/tasks/{task_id}"): frozenset({S, D}),
    ("POST", "/api/v1/audits/tasks/{task_id}/callbacks"): frozenset({S}),
    ("GET", "/api/v1/audits/findings"): frozenset({S, D}),
    ("GET", "/audits"): frozenset({S, D}),
    ("GET", "/audits/{task_id}"): frozenset({S, D}),
    ("POST", "/api/v1/complaints"): PEOPLE,  # 网上投诉: phone and counter complaints entered
    ("GET", "/api/v1/complaints"): PEOPLE,  # each narrowed to the hall or department
    ("GET", "/api/v1/complaints/stats"): PEOPLE,
    ("GET", "/api/v1/complaints/{number}"): PEOPLE,
    ("POST", "/api/v1/complaints/{number}/{action}"): PEOPLE,
    ("POST", "/api/v1/complaints/{number}/route"): frozenset({S}),  # 归口
    ("GET", "/complaints"): PEOPLE,
    ("GET", "/complaint"): EVERYONE,  # the public form, rate limited
    ("POST", "/complaint"): EVERYONE,
    ("GET", "/complaint/status"): EVERYONE,
    ("POST", "/complaint/status"): EVERYONE,
    ("GET", "/"): EVERYONE,  # a redirect to the overview
    ("GET", "/overview"): PEOPLE | {T},
    ("GET", "/analysis"): PEOPLE,
    ("GET", "/reviews"): PEOPLE,
    ("GET", "/followups"): PEOPLE,
    ("GET", "/bulletin"): PEOPLE,
    ("GET", "/cases/{case_no}"): PEOPLE,
    ("GET", "/wall"): WALL,  # the 大屏's page; a screen's cookie opens it too
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): EVERYONE,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/static"): EVERYONE,
}

ACCOUNTS = {S: "jiancha", D: "shichang-lingdao", H: "h2-guanli", T: "yunwei"}
SCOPE: dict[str, dict[str, str]] = {S: {}, D: {"department": MARKET}, H: {"hall": "H2"}, T: {}}


def routes(app: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):
        assert route.path is not None, route
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, route.path))
    return found


def concrete(site: Site, path: str) -> str:
    """The path with its parameters filled in, inside the hall manager's hall (H2)."""
    gateway, seq = site.seed.flagged["repeat"]
    case_no = next(c["case_no"] for c in site.seed.cases if c["hall"] == "H2")
    day = site.seed.today.isoformat()
    filled = (
        path.replace("{gateway}", gateway)
        .replace("{seq}", str(seq))
        .replace("{case_no}", case_no)
        .replace("{item_id}", "no-such-item")
        .replace("{hall}", "H2")
        .replace("{hall_id}", "H2")
        .replace("{sha256}", "0" * 64)
        .replace("{anomaly_id}", "1")
        .replace("{task_id}", "1")
        .replace("{request_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{number}", "TS0000000000000000")
        .replace("{action}", "accept")
    )
    if filled == "/static":
        return "/static/dashboard.js"
    if filled.endswith("/export"):
        return f"{filled}?from={day}&to={day}"
    if filled == "/api/v1/wall/stream":
        return f"{filled}?max_s=0"  # its first state, then it ends
    if filled.startswith("/api/v1/bulletin"):
        return f"{filled}?month={day[:7]}"
    return filled


async def answer(client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]) -> int:
    data = (
        {"username": "nobody", "password": "x"}
        if url == "/login"
        else {"csrf": headers.get("X-CSRF-Token", "")}
        if url == "/logout"
        else None
    )
    body: dict[str, str] | None = None if data is not None or method == "GET" else {}
    reply = await client.request(method, url, headers=headers, json=body, data=data)
    return reply.status_code


def allowed(path: str, status: int) -> bool:
    if path.startswith("/api/"):
        return status not in (401, 403)
    return status not in (403,) and not (
        status == 303 and path != "/" and path != "/logout" and path != "/login"
    )


async def test_every_route_for_every_role_matches_the_table(site: Site) -> None:
    found = routes(site.app)
    assert sorted(found) == sorted(EXPECTED), (
        "routes without a decision in the table, or table rows with no route: "
        f"{sorted(set(found) ^ set(EXPECTED))}"
    )
    wrong = []
    for role in (S, D, H, T, "anonymous"):
        async with site.client() as client:
            headers: dict[str, str] = {}
            if role != "anonymous":
                assert (await login(client, ACCOUNTS[role], PASSWORD)).status_code == 303
                headers = {"X-CSRF-Token": client.cookies.get("hw_central_csrf") or ""}
            for method, path in sorted(found, key=lambda r: r[1] == "/logout"):  # it last
                url = concrete(site, path)
                status = await answer(client, method, url, headers)
                if allowed(url, status) != (role in EXPECTED[(method, path)]):
                    wrong.append(f"{role} {method} {url} → {status}")
                if role == "anonymous" and role not in EXPECTED[(method, path)]:
                    want = 401 if path.startswith("/api/") else 303
                    if status != want:
                        wrong.append(f"anonymous {method} {url} → {status}, not {want}")
    assert wrong == [], "\n".join(wrong)


async def test_bearer_tokens_get_exactly_what_the_same_role_gets_with_a_login(site: Site) -> None:
    """Pages, API and exports share one rule: a token of a role opens the same API routes
    as a login of that role."""
    api = [(m, p) for m, p in routes(site.app) if p.startswith("/api/")]
    wrong = []
    async with site.client() as client:
        for role in (S, D, H, T):
            headers = await site.bearer(Role(role), **SCOPE[role])
            for method, path in api:
                url = concrete(site, path)
                status = await answer(client, method, url, headers)
                if allowed(url, status) != (role in EXPECTED[(method, path)]):
                    wrong.append(f"{role} token {method} {url} → {status}")
    assert wrong == [], "\n".join(wrong)


async def test_a_screen_opens_the_wall_and_nothing_more(site: Site) -> None:
    """A 大屏 device's cookie against every route: what anyone may open, and the wall."""
    code = await screens.add(site.engine, "matrix-wall")
    wrong = []
    async with site.client() as client:
        assert (await client.get("/wall/enroll", params={"code": code})).status_code == 303
        for method, path in sorted(routes(site.app), key=lambda r: r[1] == "/logout"):
            url = concrete(site, path)
            status = await answer(client, method, url, {})
            if allowed(url, status) != (SCREEN in EXPECTED[(method, path)]):
                wrong.append(f"screen {method} {url} → {status}")
    assert wrong == [], "\n".join(wrong)
