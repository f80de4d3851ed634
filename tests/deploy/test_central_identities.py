"""Central's MQTT clients over the production TLS broker: the event consumer and the case feed
each log in with a certificate of their own, so each has its own client id
(``use_username_as_clientid``) and neither knocks the other off; a configuration that would
give them one certificate is refused at load (one with no feed certificate at all does not
start the feed: tests/central/spine/test_supervision.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from central.config import CentralConfig
from central.spine.aggregator import Aggregator
from tests.deploy.support import Peer, TlsBroker, running, wait_until

KNOCKED_OFF = "already connected, closing old connection"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    tls_broker = TlsBroker.create(tmp_path / "broker")
    tls_broker.sync(reload=False)
    with running(tls_broker):
        yield tls_broker


def config(tmp_path: Path, broker: TlsBroker, **broker_files: object) -> CentralConfig:
    return CentralConfig.model_validate(
        {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'central.db'}",
            "data_dir": str(tmp_path / "central"),
            "http": {"enabled": False},
            "broker": {
                "host": "127.0.0.1",
                "port": broker.port,
                "instance": "c1",
                **(broker_files or broker.central_tls()),
            },
        }
    )


async def test_consumer_and_case_feed_connect_once_each_under_their_own_names(
    tmp_path: Path,
    broker: TlsBroker,
) -> None:
    aggregator = Aggregator(config(tmp_path, broker))
    await aggregator.start()
    try:
        for name in ("central.main", "central.main-cases"):

            def connected(client: str = name) -> bool:
                return f"as {client} " in broker.log

            await asyncio.to_thread(wait_until, connected, 30, f"{name} connected")
        # an absence needs a window: sharing one certificate, they knocked each other off
        # about once a second
        await asyncio.sleep(3)
        assert KNOCKED_OFF not in broker.log
        assert broker.log.count("as central.main ") == 1
        assert broker.log.count("as central.main-cases ") == 1
        assert aggregator.consumer.connected.is_set()

        # the check can fail: a second client with the consumer's certificate is what the
        # broker reports, and the aggregator's consumer reconnects after it
        same = Peer(
            broker.port,
            (broker.store.ca_cert_path, broker.root / "central.crt", broker.root / "central.key"),
        )
        assert same.connect()
        await asyncio.to_thread(
            wait_until,
            lambda: KNOCKED_OFF in broker.log,
            30,
            "the broker to close the old connection",
        )
        same.close()
    finally:
        await aggregator.stop()


def test_one_certificate_for_both_clients_is_refused(tmp_path: Path, broker: TlsBroker) -> None:
    files = broker.central_tls()
    with pytest.raises(ValidationError, match="feed_tls"):
        config(tmp_path, broker, tls=files["tls"], feed_tls=files["tls"])
    copy = {k: str(Path(v).with_name(f"copy-{Path(v).name}")) for k, v in files["tls"].items()}
    for kind, path in copy.items():
        Path(path).write_bytes(Path(files["tls"][kind]).read_bytes())
    with pytest.raises(ValidationError, match="feed_tls"):  # the same certificate, copied
        config(tmp_path, broker, tls=files["tls"], feed_tls=copy)
    assert config(tmp_path, broker, **files).broker.feed_tls is not None
