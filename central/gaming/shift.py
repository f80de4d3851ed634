"""Pattern 4, distribution shifts: a staff member's keys at a window against the hall's
baseline for the same services."""

from __future__ import annotations

from central.gaming.context import HallView, service_mix
from central.gaming.finding import Finding, finding, press_refs, where
from central.gaming.model import Pattern
from central.gaming.stats import multinomial_test, total_variation

CLASSES = ("非常满意", "基本满意", "不满意")  # keys 1, 2 and 3–6: what gaming moves


def collapse(keys6: list[float]) -> list[float]:
    return [keys6[0], keys6[1], sum(keys6[2:])]


def tolerant(expected: list[float], observed: list[int], delta: float) -> list[float] | None:
    """The hall's shares moved ``delta`` (in total variation) towards the subject's: the
    nearest distribution a normal staff difference explains. None: already within ``delta``."""
    n = sum(observed)
    shares = [o / n for o in observed]
    tvd = total_variation(shares, expected)
    if tvd <= delta:
        return None
    step = delta / tvd
    return [e + (o - e) * step for e, o in zip(expected, shares, strict=True)]


def distribution_shift(view: HallView) -> list[Finding]:
    """Exact multinomial test (chi-square past 300 presses) of the counts of 非常满意, 基本满意
    and the four bad keys against the hall's baseline mixed over the subject's services, moved
    ``tolerated_variation`` towards the subject (so a p-value says the departure is larger than
    staff differences explain, not merely non-zero); total variation distance as the effect."""
    cfg = view.cfg
    base = view.baseline
    out = []
    for subject, presses in view.presses_by_subject.items():
        counted = [p for p in presses if p.counted]
        if len(counted) < cfg.min_presses:
            continue
        expected = collapse(
            service_mix(base.keys_by_service, base.keys, [view.service_of(p) for p in counted])
        )
        observed = [0, 0, 0]
        for p in counted:
            observed[min(p.key, 3) - 1] += 1
        tvd = total_variation(observed, expected)
        moved = tolerant(expected, observed, cfg.tolerated_variation)
        share = [o / len(counted) for o in observed]
        out.append(
            finding(
                view,
                Pattern.DISTRIBUTION_SHIFT,
                subject,
                p_value=1.0 if moved is None else multinomial_test(observed, moved),
                effect=tvd,
                effect_name="total_variation",
                method="exact multinomial goodness-of-fit test (Pearson chi-square above 300 "
                "presses) of 非常满意 / 基本满意 / 不满意 vs the hall's baseline for the same "
                f"services moved {cfg.tolerated_variation:g} towards the subject (a tolerated "
                "staff difference); total variation distance",
                summary=f"{where(subject)}评价分布偏离大厅同类事项：非常满意{share[0]:.0%}"
                f"（大厅{expected[0]:.0%}），不满意{share[2]:.0%}（大厅{expected[2]:.0%}）",
                evidence={
                    "presses": press_refs(counted),
                    "classes": list(CLASSES),
                    "observed": observed,
                    "expected_share": [round(e, 4) for e in expected],
                    "n": len(counted),
                },
                notable=tvd >= cfg.min_total_variation,
            )
        )
    return out
