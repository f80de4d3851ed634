"""The 通报's rankings: competition ranking (1, 2, 2, 4), highest first, groups without data
unranked, each rank on its own group."""

from __future__ import annotations

from dataclasses import fields, replace

from central.reporting.bulletin import ranked
from central.rules.indicators import GroupKey, Indicators, Ratio


def _group(hall: str, satisfied: Ratio, on_time: Ratio) -> Indicators:
    blank = {
        f.name: Ratio(0, 0) if f.type == "Ratio" else 0
        for f in fields(Indicators)
        if f.name not in ("group", "bad_reviews")
    }
    plain = Indicators(group=GroupKey(hall=hall), bad_reviews={}, **blank)  # type: ignore[arg-type]
    return replace(plain, satisfaction_rate=satisfied, on_time_rate=on_time)


def test_competition_ranking_by_position() -> None:
    groups = [
        _group("H4", Ratio(9, 10), Ratio(0, 0)),
        _group("H1", Ratio(8, 10), Ratio(1, 2)),
        _group("H3", Ratio(0, 0), Ratio(2, 2)),
        _group("H2", Ratio(9, 10), Ratio(1, 2)),
        _group("H5", Ratio(1, 10), Ratio(0, 2)),
    ]
    out = ranked({g.group: g for g in groups})
    assert [r.indicators.group.hall for r in out] == ["H1", "H2", "H3", "H4", "H5"]
    assert [r.satisfaction_rank for r in out] == [3, 1, None, 1, 4]
    assert [r.on_time_rank for r in out] == [2, 2, 1, None, 4]
