"""Pattern 2, selective inviting: invitations that skip long or overdue services, invitations
cancelled or left to time out on complaint-prone services, a low 评价率 for the services."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy import stats

from central.gaming.context import SKIPPED_ENDS, HallView, rate_by_service, shrunk_shares
from central.gaming.finding import Finding, finding, where
from central.gaming.model import BAD_KEYS, InvitationEnd, Pattern, SessionFact
from central.gaming.stats import binom_greater, binom_less

PRONE_FACTOR = 1.25  # complaint-prone: a quarter more bad reviews than the hall's


def _finished(sessions: list[SessionFact]) -> list[SessionFact]:
    return [s for s in sessions if s.ended_at is not None]


def _skipped(s: SessionFact) -> bool:
    return not s.invited or s.invitation_end is InvitationEnd.CANCELLED


def _long_thresholds(view: HallView) -> dict[str, float]:
    by_service: dict[str, list[float]] = defaultdict(list)
    for s in view.facts.sessions:
        if s.duration_s is not None:
            by_service[s.service or ""].append(s.duration_s)
    q = view.cfg.long_quantile
    return {k: float(np.quantile(v, q)) for k, v in by_service.items() if len(v) >= 8}


def _is_long(s: SessionFact, limits: dict[str, float]) -> bool:
    return s.overdue or (s.duration_s or 0.0) > limits.get(s.service or "", float("inf"))


def selective_inviting(view: HallView) -> list[Finding]:
    """Fisher's exact test (one-sided) of a 2×2 table: long-or-overdue vs other services ×
    not invited (or invitation cancelled) vs invited."""
    cfg = view.cfg
    limits = _long_thresholds(view)
    out = []
    for subject, sessions in view.sessions_by_subject.items():
        done = _finished(sessions)
        if len(done) < cfg.min_sessions:
            continue
        long_ = [s for s in done if _is_long(s, limits)]
        short = [s for s in done if not _is_long(s, limits)]
        a, b = sum(map(_skipped, long_)), len(long_)
        c, d = sum(map(_skipped, short)), len(short)
        table = [[a, b - a], [c, d - c]]
        p = float(stats.fisher_exact(table, alternative="greater").pvalue) if b and d else 1.0
        odds = ((a + 0.5) * (d - c + 0.5)) / ((b - a + 0.5) * (c + 0.5))
        skipped = sorted(s.session_id for s in long_ if _skipped(s))
        out.append(
            finding(
                view,
                Pattern.SELECTIVE_INVITING,
                subject,
                p_value=p,
                effect=odds,
                effect_name="odds_ratio",
                method="Fisher's exact test (one-sided), long or overdue vs other services × "
                "invited or not; odds ratio with 0.5 added to each cell",
                summary=f"{where(subject)}办理时间长或超期的服务少邀请评价："
                f"{a}/{b}次未邀请，其他服务{c}/{d}次",
                evidence={
                    "sessions": skipped,
                    "table": table,
                    "long_quantile": cfg.long_quantile,
                    "long_seconds": {k: round(v, 1) for k, v in sorted(limits.items())},
                },
                notable=a >= 3 and odds >= cfg.min_odds_ratio,
            )
        )
    return out


def _complaint_prone(view: HallView) -> set[str]:
    """Services whose bad-review share (shrunk towards the hall's) is well above the hall's."""
    base = view.baseline
    if base.keys.total == 0:
        return set()
    hall = sum(base.keys.counts[k - 1] for k in BAD_KEYS) / base.keys.total
    prone = set()
    for service, kc in base.keys_by_service.items():
        shares = shrunk_shares(kc, base.keys)
        if sum(shares[k - 1] for k in BAD_KEYS) > PRONE_FACTOR * hall:
            prone.add(service)
    return prone


def cancelled_invitations(view: HallView) -> list[Finding]:
    """One-sided binomial test of the subject's invitations cancelled or timed out on
    complaint-prone services (all services when the hall has none) vs the hall's rate for them."""
    cfg = view.cfg
    base = view.baseline
    prone = _complaint_prone(view)
    out = []
    for subject, sessions in view.sessions_by_subject.items():
        invited = [s for s in sessions if s.invited]
        if len(invited) < cfg.min_sessions:
            continue
        pool = [s for s in invited if (s.service or "") in prone] or invited
        gone = [s for s in pool if s.invitation_end in SKIPPED_ENDS]
        rate = rate_by_service(
            base.cancelled_by_service,
            base.invited_by_service,
            [s.service or "" for s in pool],
            floor=cfg.cancel_floor,
        )
        share = len(gone) / len(pool)
        out.append(
            finding(
                view,
                Pattern.CANCELLED_INVITATIONS,
                subject,
                p_value=binom_greater(len(gone), len(pool), rate),
                effect=share / rate,
                effect_name="rate_ratio",
                method="one-sided binomial test, invitations cancelled or timed out on "
                "complaint-prone services vs the hall's rate for the same services",
                summary=f"{where(subject)}易投诉事项的评价邀请被取消或超时{share:.0%}"
                f"（大厅{rate:.0%}）",
                evidence={
                    "sessions": sorted(s.session_id for s in gone),
                    "cancelled": len(gone),
                    "invited": len(pool),
                    "hall_rate": round(rate, 4),
                    "services": sorted(prone),
                },
                notable=len(gone) >= 3 and share >= cfg.min_cancel_ratio * rate,
            )
        )
    return out


def low_evaluation_rate(view: HallView) -> list[Finding]:
    """One-sided binomial test of the subject's evaluated services vs the hall's 评价率 for the
    same services (the per-service rates averaged over the subject's services)."""
    cfg = view.cfg
    base = view.baseline
    out = []
    for subject, sessions in view.sessions_by_subject.items():
        done = _finished(sessions)
        if len(done) < cfg.min_sessions:
            continue
        rated = sum(s.session_id in view.evaluated for s in done)
        expected = rate_by_service(
            base.evaluated_by_service, base.sessions_by_service, [s.service or "" for s in done]
        )
        if expected <= 0:
            continue
        rate = rated / len(done)
        unrated = sorted(s.session_id for s in done if s.session_id not in view.evaluated)
        out.append(
            finding(
                view,
                Pattern.LOW_EVALUATION_RATE,
                subject,
                p_value=binom_less(rated, len(done), expected),
                effect=rate / expected,
                effect_name="rate_ratio",
                method="one-sided binomial test, evaluated services vs the hall's 评价率 for the "
                "same services",
                summary=f"{where(subject)}评价率{rate:.0%}，大厅同类事项为{expected:.0%}",
                evidence={
                    "sessions": unrated,
                    "evaluated": rated,
                    "services": len(done),
                    "hall_rate": round(expected, 4),
                },
                notable=rate <= cfg.max_rate_ratio * expected,
            )
        )
    return out
