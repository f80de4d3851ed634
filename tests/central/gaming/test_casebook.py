"""What the store keeps of an anomaly: JSON that PostgreSQL's jsonb and a browser both read."""

from __future__ import annotations

import datetime as dt
import json
import math

from central.gaming.casebook import from_anomaly
from central.gaming.model import Anomaly, Pattern, Period


def test_infinite_and_undefined_figures_become_storable() -> None:
    found = Anomaly(
        pattern=Pattern.SELECTIVE_INVITING,
        hall_id="H1",
        window=2,
        staff="100232",
        period=Period.day(dt.date(2026, 12, 1)),
        p_value=math.nan,
        effect=math.inf,
        effect_name="odds_ratio",
        method="Fisher's exact test",
        summary="2号窗口邀评集中在短时服务",
        evidence={
            "presses": [["gw1", 5]],
            "figures": {"odds": math.inf, "rates": [0.5, -math.inf]},
        },
        q_value=0.001,
    )
    row = from_anomaly(found)
    assert row.p_value is None and row.effect > 1e300
    assert row.evidence == {
        "presses": [["gw1", 5]],
        "figures": {"odds": None, "rates": [0.5, None]},
        "q_value": 0.001,
    }
    json.dumps(row.evidence, allow_nan=False)  # strict JSON
    json.dumps(row.effect, allow_nan=False)
    assert row.fingerprint == found.fingerprint
