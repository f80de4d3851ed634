"""A simulated bus on a real pseudo-terminal, and the driver opened on its stable path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_bridges.ff68.driver import EvaluatorBus
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyEVAL0"


@pytest.fixture
async def sim(link: Path) -> AsyncIterator[EvaluatorBusSimulator]:
    async with EvaluatorBusSimulator(link, seed=68) as simulator:
        yield simulator


@pytest.fixture
async def bus(sim: EvaluatorBusSimulator, link: Path) -> AsyncIterator[EvaluatorBus]:
    async with EvaluatorBus(str(link)) as evaluator_bus:
        assert evaluator_bus.connected
        yield evaluator_bus
