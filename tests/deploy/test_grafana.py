"""deploy/grafana: provisioning and dashboards are well formed, every query names a metric the
sink writes, and every query runs against a real VictoriaMetrics holding the sink's output."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from central.config import TimeseriesConfig
from central.records.timeseries.samples import METRICS
from central.records.timeseries.sink import TimeseriesSink
from central.spine.ingest import Ingestor
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.central.records.test_timeseries import at, scenario, state_message
from tests.support.hallevents import Gateway
from tests.support.victoria import Victoria

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC = re.compile(r"\bhallwatch_[a-z_]+\b")
PANEL_TYPES = {
    "timeseries",
    "table",
    "stat",
    "bargauge",
    "piechart",
    "state-timeline",
    "gauge",
    "barchart",
}


def datasource_uids() -> set[str]:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/hallwatch.yaml").read_text())
    assert doc["apiVersion"] == 1
    return {d["uid"] for d in doc["datasources"] if d["type"] == "prometheus"}


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']}", var["definition"]


def test_provisioning_points_at_the_dashboards_and_a_prometheus_datasource() -> None:
    assert datasource_uids() == {"hallwatch-vm"}
    doc = yaml.safe_load((GRAFANA / "provisioning/dashboards/hallwatch.yaml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("hallwatch")
    assert len(DASHBOARDS) == 3


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    uids = datasource_uids()
    assert board["uid"].startswith("hallwatch-") and board["title"] and board["panels"]
    assert isinstance(board["schemaVersion"], int) and board["timezone"] == "Asia/Shanghai"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["datasource"]["uid"] in uids
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids and target["expr"].strip()
    for title, expr in queries(board):
        names = METRIC.findall(expr)
        assert names, f"{title}: {expr} names no hallwatch metric"
        unknown = set(names) - set(METRICS)
        assert not unknown, f"{title}: {sorted(unknown)} is not written by the sink"
        assert "$hall" not in expr or any(v["name"] == "hall" for v in board["templating"]["list"])


def test_every_metric_the_sink_writes_is_on_a_dashboard() -> None:
    shown = {
        name
        for path in DASHBOARDS
        for _, expr in queries(json.loads(path.read_text(encoding="utf-8")))
        for name in METRIC.findall(expr)
    }
    assert shown == set(METRICS)


async def test_every_query_runs_against_the_sinks_output(tmp_path: Path) -> None:
    vm = Victoria(tmp_path / "vm").start()
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'central.db'}")
    try:
        await upgrade(engine)
        await register(engine, "H1", "gw1")
        ingestor = Ingestor(engine)
        await ingestor.ingest([Gateway("H1", "gw1").batch(scenario())])
        await ingestor.ingest_state(state_message(backlog=3))
        sink = TimeseriesSink(engine, TimeseriesConfig(enabled=True, url=vm.url))
        await sink.run_once()
        sink.close()
        written = {m["metric"]["__name__"] for m in vm.export_until(series=18)}
        scenario_end, now = at(900).timestamp(), datetime.now(UTC).timestamp()
        for path in DASHBOARDS:
            board = json.loads(path.read_text(encoding="utf-8"))
            for title, expr in queries(board):
                if expr.startswith("label_values("):
                    metric = expr.split("(", 1)[1].split(",")[0]
                    assert metric in written, f"{path.stem}/{title}: no {metric} to list"
                    continue
                promql = (
                    expr.replace("$__range", "1d")
                    .replace("$__interval", "5m")
                    .replace('"$hall"', '"H1"')
                )
                results = []
                for moment in (scenario_end, now):
                    reply = vm.query(promql, at=moment)
                    assert reply["status"] == "success", f"{path.stem}/{title}: {reply}"
                    results += reply["data"]["result"]
                if set(METRIC.findall(expr)) <= written and "== " not in expr:
                    assert results, f"{path.stem}/{title}: {promql} found nothing"
    finally:
        await engine.dispose()
        vm.stop()
