import datetime as dt

from central.gaming.model import Anomaly, KeyCounts, Pattern, Period


def _anomaly(presses: list[list[str | int]]) -> Anomaly:
    return Anomaly(
        pattern=Pattern.KEY_STREAK,
        hall_id="H1",
        window=3,
        staff="S003",
        period=Period.iso_week(dt.date(2026, 12, 2)),
        p_value=1e-6,
        effect=12.0,
        effect_name="run_length",
        method="run-length probability",
        summary="3号窗口连续12次按同一键",
        evidence={"presses": presses},
    )


def test_fingerprint_ignores_order_and_figures_but_not_refs() -> None:
    a = _anomaly([["gw", 1], ["gw", 2]])
    b = _anomaly([["gw", 2], ["gw", 1]])
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != _anomaly([["gw", 1], ["gw", 3]]).fingerprint


def test_period_and_key_counts() -> None:
    week = Period.iso_week(dt.date(2026, 12, 6))
    assert (week.start, week.end) == (dt.date(2026, 11, 30), dt.date(2026, 12, 6))
    assert KeyCounts.of([1, 1, 3, 6]).counts == (2, 0, 1, 0, 0, 1)
