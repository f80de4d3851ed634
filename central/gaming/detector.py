"""The gaming detector: a pure function of facts. Every pattern tests every subject; the
p-values of one pattern are adjusted together across every hall of the run (Benjamini–Hochberg),
and an anomaly opens when its q-value is within ``fdr_q`` and its effect passes the floor."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence

from central.gaming import inviting, malicious, shift, timing
from central.gaming.config import GamingConfig
from central.gaming.context import HallView
from central.gaming.finding import Finding
from central.gaming.model import Anomaly, Facts, Pattern
from central.gaming.stats import bh_adjust

PATTERNS: dict[Pattern, Callable[[HallView], list[Finding]]] = {
    Pattern.REGULAR_TIMING: timing.regular_timing,
    Pattern.KEY_STREAK: timing.key_streak,
    Pattern.PRESS_WITHOUT_CITIZEN: timing.press_without_citizen,
    Pattern.INSTANT_PRESS: timing.instant_press,
    Pattern.SELECTIVE_INVITING: inviting.selective_inviting,
    Pattern.CANCELLED_INVITATIONS: inviting.cancelled_invitations,
    Pattern.LOW_EVALUATION_RATE: inviting.low_evaluation_rate,
    Pattern.MALICIOUS_SAME_APPLICANT: malicious.same_applicant,
    Pattern.MALICIOUS_ABANDONED_CASES: malicious.abandoned_cases,
    Pattern.CONTRADICTS_RECORD: malicious.contradicts_record,
    Pattern.DISTRIBUTION_SHIFT: shift.distribution_shift,
}


def detect(facts: Facts, cfg: GamingConfig | None = None) -> list[Anomaly]:
    """One hall's anomalies (false discoveries controlled within the hall)."""
    return detect_many([facts], cfg)


def detect_many(facts: Sequence[Facts], cfg: GamingConfig | None = None) -> list[Anomaly]:
    """Every hall of a run; false discoveries are controlled per pattern across all of them."""
    cfg = cfg or GamingConfig()
    tested: dict[Pattern, list[Finding]] = defaultdict(list)
    for f in sorted(facts, key=lambda f: (f.hall_id, f.period.start, f.period.kind)):
        view = HallView(f, cfg)
        for pattern, test in PATTERNS.items():
            tested[pattern].extend(test(view))
    opened = []
    for findings in tested.values():
        for found in fdr(findings):
            q = found.anomaly.q_value
            if found.notable and q is not None and q <= cfg.fdr_q:
                opened.append(found.anomaly)
    return sorted(opened, key=_order)


def fdr(findings: Sequence[Finding]) -> list[Finding]:
    """The findings with their Benjamini–Hochberg q-value set."""
    qs = bh_adjust([f.anomaly.p_value if f.anomaly.p_value is not None else 1.0 for f in findings])
    return [
        dataclasses.replace(f, anomaly=dataclasses.replace(f.anomaly, q_value=q))
        for f, q in zip(findings, qs, strict=True)
    ]


def _order(a: Anomaly) -> tuple[str, str, int, str, str]:
    return (a.hall_id, a.period.start.isoformat(), a.window or 0, a.pattern.value, a.fingerprint)
