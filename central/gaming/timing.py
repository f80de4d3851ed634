"""Pattern 1, staff pressing for citizens (刷好评 without a camera): regular timing, instant
presses, key streaks, presses with no citizen at the window."""

from __future__ import annotations

import math

from central.gaming.context import HallView, Subject, service_mix
from central.gaming.finding import Finding, finding, press_refs, where
from central.gaming.model import Pattern, PressFact
from central.gaming.stats import (
    binom_greater,
    longest_run_at_least,
    variance_ratio_less,
)
from central.rules.scale import DeviceKey

KEY_NAMES = {
    1: "非常满意",
    2: "基本满意",
    3: "服务态度不好",
    4: "办理时间太长",
    5: "业务不熟",
    6: "其他",
}


def _delays(presses: list[PressFact]) -> list[PressFact]:
    return [
        p
        for p in presses
        if p.invited and p.seconds_after_invitation is not None and p.seconds_after_invitation >= 0
    ]


def regular_timing(view: HallView) -> list[Finding]:
    """Chi-square test of the variance of log(seconds after the invitation) against the
    hall's (estimated robustly)."""
    hall = [math.log(max(d, 0.1)) for d in view.baseline.seconds_after_invitation]
    if len(hall) < view.cfg.min_presses:
        return []
    out = []
    for subject, presses in view.presses_by_subject.items():
        timed = _delays(presses)
        if len(timed) < view.cfg.min_presses:
            continue
        logs = [math.log(max(p.seconds_after_invitation or 0.0, 0.1)) for p in timed]
        ratio, p = variance_ratio_less(logs, hall)
        secs = sorted(p.seconds_after_invitation or 0.0 for p in timed)
        out.append(
            finding(
                view,
                Pattern.REGULAR_TIMING,
                subject,
                p_value=p,
                effect=ratio,
                effect_name="variance_ratio",
                method="chi-square test of the variance of log seconds from invitation to key "
                "vs the hall's (1.4826·MAD)²",
                summary=f"{where(subject)}按键时间过于规律：间隔方差仅为大厅的{ratio:.0%}",
                evidence={
                    "presses": press_refs(timed),
                    "seconds_after_invitation": [round(s, 2) for s in secs],
                    "median_s": round(secs[len(secs) // 2], 2),
                    "hall_median_s": round(
                        sorted(view.baseline.seconds_after_invitation)[len(hall) // 2], 2
                    ),
                    "n": len(timed),
                    "hall_n": len(hall),
                },
                notable=ratio <= view.cfg.max_variance_ratio,
            )
        )
    return out


def instant_press(view: HallView) -> list[Finding]:
    """Binomial test of the share of keys within ``instant_s`` of the invitation vs the hall's."""
    cfg = view.cfg
    hall = view.baseline.seconds_after_invitation
    if len(hall) < cfg.min_presses:
        return []
    base = max(cfg.instant_floor, sum(0 <= d <= cfg.instant_s for d in hall) / len(hall))
    out = []
    for subject, presses in view.presses_by_subject.items():
        timed = _delays(presses)
        if len(timed) < cfg.min_presses:
            continue
        instant = [p for p in timed if (p.seconds_after_invitation or 0.0) <= cfg.instant_s]
        share = len(instant) / len(timed)
        out.append(
            finding(
                view,
                Pattern.INSTANT_PRESS,
                subject,
                p_value=binom_greater(len(instant), len(timed), base),
                effect=share / base,
                effect_name="share_ratio",
                method=f"one-sided binomial test, share of keys within {cfg.instant_s:g} s of "
                "the invitation vs the hall's",
                summary=f"{where(subject)}邀请评价后{cfg.instant_s:g}秒内即按键占{share:.0%}"
                f"（大厅{base:.1%}）",
                evidence={
                    "presses": press_refs(instant),
                    "instant": len(instant),
                    "invited_presses": len(timed),
                    "share": round(share, 4),
                    "hall_share": round(base, 4),
                },
                notable=len(instant) >= 3 and share >= cfg.min_instant_ratio * base,
            )
        )
    return out


def key_streak(view: HallView) -> list[Finding]:
    """The longest run of one key among a subject's presses, against the probability of such a
    run in as many independent presses with that key's probability: the larger of the hall's
    (for the subject's services) and the subject's own outside the run. Bonferroni over keys."""
    cfg = view.cfg
    base = view.baseline
    out = []
    for subject, presses in view.presses_by_subject.items():
        counted = [p for p in presses if p.counted]
        if len(counted) < max(cfg.min_presses, cfg.min_streak):
            continue
        start, length = _longest_run(counted)
        key = counted[start].key
        rest = counted[:start] + counted[start + length :]
        own = sum(p.key == key for p in rest) / len(rest) if rest else 0.0
        mix = service_mix(base.keys_by_service, base.keys, [view.service_of(p) for p in counted])
        # staff differ: the other keys may be this much rarer at an honest window than in the
        # hall (and leaving the run out makes ``own`` understate the key)
        prob = 1 - (1 - max(own, mix[key - 1])) * cfg.streak_tolerance
        p = min(1.0, 6 * longest_run_at_least(length, len(counted), prob))
        run = counted[start : start + length]
        out.append(
            finding(
                view,
                Pattern.KEY_STREAK,
                subject,
                p_value=p,
                effect=float(length),
                effect_name="run_length",
                method="exact probability of the longest same-key run in n independent presses "
                "(the larger of the hall's and the window's own key probability, the other keys "
                f"made {cfg.streak_tolerance:g}× as likely), Bonferroni over the six keys",
                summary=f"{where(subject)}连续{length}次评价均为“{DeviceKey(key).label}”",
                evidence={
                    "presses": press_refs(run),
                    "key": key,
                    "run": length,
                    "n": len(counted),
                    "key_probability": round(prob, 4),
                    "from": run[0].at.isoformat(),
                    "to": run[-1].at.isoformat(),
                },
                notable=length >= cfg.min_streak,
            )
        )
    return out


def _longest_run(presses: list[PressFact]) -> tuple[int, int]:
    best = (0, 1)
    start = 0
    for i in range(1, len(presses) + 1):
        if i == len(presses) or presses[i].key != presses[start].key:
            if i - start > best[1]:
                best = (start, i - start)
            start = i
    return best


def press_without_citizen(view: HallView) -> list[Finding]:
    """Binomial test of the subject's presses with nobody at the window vs the hall's rate."""
    cfg = view.cfg
    base = view.baseline
    rate = max(cfg.idle_floor, base.idle_presses / base.presses if base.presses else 0.0)
    out = []
    for subject, presses in view.presses_by_subject.items():
        if len(presses) < cfg.min_presses:
            continue
        idle = [p for p in presses if view.is_idle(p)]
        out.append(_idle_finding(view, subject, presses, idle, rate))
    return out


def _idle_finding(
    view: HallView, subject: Subject, presses: list[PressFact], idle: list[PressFact], rate: float
) -> Finding:
    return finding(
        view,
        Pattern.PRESS_WITHOUT_CITIZEN,
        subject,
        p_value=binom_greater(len(idle), len(presses), rate),
        effect=len(idle) / len(presses) / rate,
        effect_name="rate_ratio",
        method="one-sided binomial test, presses with no citizen called (or the camera saw "
        "none) vs the hall's rate",
        summary=f"{where(subject)}有{len(idle)}次评价发生在窗口无群众时",
        evidence={
            "presses": press_refs(idle),
            "times": sorted(p.at.isoformat() for p in idle),
            "camera_absent": sum(p.citizen == "absent" for p in idle),
            "idle": len(idle),
            "presses_total": len(presses),
            "hall_rate": round(rate, 5),
        },
        notable=len(idle) >= view.cfg.min_idle_presses,
    )
