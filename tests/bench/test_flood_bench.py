"""The unpaced flood: one gateway publishing 1000-event batches as fast as two threads of its own
process can (hundreds of MB/s here) beside a good gateway; the good gateway's worst
acknowledgement delay with central's admission budget on and off. Figures, not a verdict on a
loaded machine: past what the broker can deliver, the good gateway's messages wait in the
broker's queue behind the flood, which no consumer can change (a broker or network limit can)."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import IngestConfig
from tests.central.spine.test_flood_fairness import flood_beside_a_good_gateway
from tests.support.broker import Broker

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("throttle", [True, False], ids=["admission", "no-admission"])
def test_unpaced_flood_beside_a_good_gateway(
    database_url: str, broker: Broker, tmp_path: Path, throttle: bool
) -> None:
    figures = flood_beside_a_good_gateway(
        database_url,
        broker.port,
        tmp_path,
        IngestConfig(throttle=throttle),
        mb_per_s=None,
        settle_s=240,
    )
    print(
        f"\n[{database_url.split(':')[0]}, admission {'on' if throttle else 'off'}] "
        f"worst good ack {figures['worst_ack_s']:.2f} s, good resends "
        f"{figures['good_resends']}, flood {figures['flood_mb']:.0f} MB in "
        f"{figures['flood_messages']} messages, dropped {figures['dropped']}"
    )
    assert figures["good_events"] > 0
