"""Pattern 3, 恶意差评: bad reviews concentrated on one staff member from one applicant, from
cases opened and abandoned in a short span, or contradicting the case record."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from central.gaming.context import HallView, Subject
from central.gaming.finding import Finding, finding, press_refs, where
from central.gaming.model import BAD_KEYS, CaseFact, KeyCounts, Pattern, PressFact
from central.gaming.stats import binom_greater


def _bad_share(kc: KeyCounts) -> float:
    return sum(kc.counts[k - 1] for k in BAD_KEYS) / kc.total if kc.total else 0.0


def _bad(p: PressFact) -> bool:
    return p.key in BAD_KEYS


def _cases(view: HallView, p: PressFact) -> list[CaseFact]:
    return [c for no in p.case_nos if (c := view.cases_by_no.get(no)) is not None]


def same_applicant(view: HallView) -> list[Finding]:
    """For each staff member and applicant digest with at least ``min_bad_reviews`` presses
    tied to that applicant's cases (chosen on the count of presses, never on their keys): a
    one-sided binomial test of the bad ones vs the hall's bad-review share."""
    cfg = view.cfg
    rate = max(cfg.bad_floor, _bad_share(view.baseline.keys))
    out = []
    for subject, presses in view.presses_by_subject.items():
        by_digest: dict[str, list[PressFact]] = defaultdict(list)
        for p in presses:
            if p.counted:
                for digest in set(p.applicant_digests):
                    by_digest[digest].append(p)
        for digest, mine in sorted(by_digest.items()):
            if len(mine) < cfg.min_bad_reviews:
                continue
            bad = [p for p in mine if _bad(p)]
            cases = sorted({no for p in bad for no in p.case_nos})
            out.append(
                finding(
                    view,
                    Pattern.MALICIOUS_SAME_APPLICANT,
                    subject,
                    p_value=binom_greater(len(bad), len(mine), rate),
                    effect=len(bad) / len(mine),
                    effect_name="bad_share",
                    method="one-sided binomial test, bad reviews among one applicant's "
                    "evaluations of one staff member vs the hall's bad-review share",
                    summary=f"{where(subject)}同一申请人在{len(cases)}个办件中给出{len(bad)}次差评",
                    evidence={
                        "presses": press_refs(bad),
                        "cases": cases,
                        "applicant_digest": digest,
                        "bad": len(bad),
                        "evaluations": len(mine),
                        "hall_bad_share": round(rate, 4),
                    },
                    notable=len(bad) >= cfg.min_bad_reviews and len(cases) >= 2,
                )
            )
    return out


def abandoned_cases(view: HallView) -> list[Finding]:
    """Bad reviews of abandoned (withdrawn) cases on one staff member within
    ``abandoned_span_days``: the busiest span's count under a binomial with the rest of the
    hall's rate, Bonferroni over the spans of the period (a scan)."""
    cfg = view.cfg
    counted = [p for p in view.facts.presses if p.counted]
    flagged = {p.ref for p in counted if _bad(p) and any(c.abandoned for c in _cases(view, p))}
    out = []
    for subject, presses in view.presses_by_subject.items():
        mine = [p for p in presses if p.counted]
        if len(mine) < cfg.min_presses:
            continue
        own = sum(p.ref in flagged for p in mine)
        rest = len(counted) - len(mine)
        rate = max(cfg.abandoned_floor, (len(flagged) - own) / rest if rest else 0.0)
        out.append(_best_span(view, subject, mine, flagged, rate))
    return out


def _best_span(
    view: HallView,
    subject: Subject,
    mine: list[PressFact],
    flagged: set[tuple[str, int]],
    rate: float,
) -> Finding:
    cfg = view.cfg
    period = view.facts.period
    span = min(cfg.abandoned_span_days, (period.end - period.start).days + 1)
    starts = [
        period.start + dt.timedelta(days=i)
        for i in range((period.end - period.start).days - span + 2)
    ]
    best: tuple[float, list[PressFact], int, dt.date] | None = None
    for start in starts:
        end = start + dt.timedelta(days=span - 1)
        inside = [p for p in mine if start <= p.business_day <= end]
        hits = [p for p in inside if p.ref in flagged]
        p_value = min(1.0, len(starts) * binom_greater(len(hits), len(inside), rate))
        if best is None or p_value < best[0]:
            best = (p_value, hits, len(inside), start)
    assert best is not None
    p_value, hits, n, start = best
    cases = sorted({no for p in hits for no in p.case_nos})
    return finding(
        view,
        Pattern.MALICIOUS_ABANDONED_CASES,
        subject,
        p_value=p_value,
        effect=len(hits) / max(n, 1) / rate,
        effect_name="rate_ratio",
        method=f"scan over {span}-day spans: one-sided binomial test of bad reviews of "
        "withdrawn cases vs the rest of the hall's rate, Bonferroni over the spans",
        summary=f"{where(subject)}{span}天内{len(hits)}次差评来自已撤回的办件",
        evidence={
            "presses": press_refs(hits),
            "cases": cases,
            "span_start": start.isoformat(),
            "span_days": span,
            "bad_on_abandoned": len(hits),
            "evaluations": n,
            "hall_rate": round(rate, 5),
        },
        notable=len(hits) >= cfg.min_bad_reviews,
    )


def contradicts(case: CaseFact) -> bool:
    """The record speaks for the service: completed on time, with no founded complaint, on the
    spot or in at most half the promised (else legal) days."""
    if case.status != "completed" or case.overdue or case.complaint or case.completed_at is None:
        return False
    if case.on_site:
        return True
    limit = case.promised_days or case.legal_days
    return (case.completed_at - case.accepted_at) <= dt.timedelta(days=limit / 2)


def contradicts_record(view: HallView) -> list[Finding]:
    """Per applicant digest across the hall: a one-sided binomial test of bad reviews on cases
    whose record contradicts them vs the rest of the hall's bad share on such cases."""
    cfg = view.cfg
    by_digest: dict[str, list[PressFact]] = defaultdict(list)
    for p in view.facts.presses:
        if not p.counted:
            continue
        clean = [c for c in _cases(view, p) if contradicts(c) and c.applicant_digest]
        for digest in sorted({c.applicant_digest or "" for c in clean}):
            by_digest[digest].append(p)
    total = sum(len(v) for v in by_digest.values())
    total_bad = sum(_bad(p) for v in by_digest.values() for p in v)
    out = []
    for digest, mine in sorted(by_digest.items()):
        if len(mine) < cfg.min_bad_reviews:
            continue
        bad = [p for p in mine if _bad(p)]
        rest = total - len(mine)
        rate = max(cfg.bad_floor, (total_bad - len(bad)) / rest if rest else 0.0)
        cases = sorted({no for p in bad for no in p.case_nos})
        windows = sorted({p.window for p in bad})
        out.append(
            finding(
                view,
                Pattern.CONTRADICTS_RECORD,
                None,
                p_value=binom_greater(len(bad), len(mine), rate),
                effect=len(bad) / len(mine),
                effect_name="bad_share",
                method="one-sided binomial test, one applicant's bad reviews on cases completed "
                "on time, on the spot or early, without complaint, vs the rest of the hall's "
                "bad share on such cases",
                summary=f"同一申请人对{len(cases)}个按时办结、无投诉的办件给出差评，"
                f"涉及{len(windows)}个窗口",
                evidence={
                    "presses": press_refs(bad),
                    "cases": cases,
                    "windows": windows,
                    "applicant_digest": digest,
                    "bad": len(bad),
                    "evaluations": len(mine),
                    "hall_bad_share": round(rate, 4),
                },
                notable=len(bad) >= cfg.min_bad_reviews and len(cases) >= 2,
            )
        )
    return out
