"""The database away (a failover, a restart): a transient error, never taken for a bad event.

The whole failover, on real processes, is tests/deploy/test_pg_failover.py; here the parts:
what counts as transient, and ingest saying "nothing stored" instead of quarantining.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import exc as sa_exc

from central.spine.ingest import Ingestor
from central.spine.reading import StoreUnavailable, transient, unreachable
from central.store.db import make_engine
from tests.support.broker import free_port
from tests.support.hallevents import Gateway


class _Driver(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _dbapi(sqlstate: str, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("COMMIT", None, _Driver(sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            _dbapi("08006"),
            True,
        ),  # connection failure (asyncpg's ConnectionDoesNotExistError: 08003)
        (_dbapi("57P01"), True),  # admin shutdown
        (_dbapi("57P03"), True),  # cannot connect now: starting up
        (_dbapi("25006"), True),  # read-only transaction: a standby
        (_dbapi("23505", invalidated=True), True),  # SQLAlchemy found the connection dead
        (_dbapi("23505"), False),  # a unique violation says something about the data
        (_dbapi("22P05"), False),  # untranslatable character: the event's fault
        (ConnectionRefusedError(111, "refused"), True),
        (OSError(113, "no route to host"), True),
        (ValueError("bad"), False),
    ],
)
def test_errors_of_a_database_away(error: Exception, expected: bool) -> None:
    assert unreachable(error) is expected
    assert transient(error) is expected  # a database away is transient


def test_a_locked_database_is_transient_but_not_away() -> None:
    """SQLite's "database is locked" (an OperationalError, as are some errors of the data):
    not quarantined, but not retried as a group either: the gateway sends it again."""
    locked = sa_exc.OperationalError("INSERT", None, Exception("database is locked"))
    assert transient(locked) and not unreachable(locked)


async def test_ingest_with_the_database_away_stores_nothing_and_says_so() -> None:
    """Nothing quarantined, nothing acknowledged: StoreUnavailable, for the caller to retry."""
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    ingestor = Ingestor(engine)
    gateway = Gateway("H1", "gw1")
    batch = gateway.batch([("gateway.boot", {}, datetime.now(UTC))])
    try:
        with pytest.raises(StoreUnavailable):
            await ingestor.ingest([batch])
    finally:
        await engine.dispose()
