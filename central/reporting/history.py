"""补传: an event that reached central long after it happened (a gateway's backlog drained after
an outage) is history, not something happening now. Live views mark it so; every rule and
indicator counts it as always (they read the event's own time)."""

from __future__ import annotations

import datetime as dt

# A gateway's live lane delivers within a second or two; its drain can take minutes. A minute
# keeps a slow group at central or a short reconnect from being called history.
HISTORY_AFTER = dt.timedelta(seconds=60)


def arrived_as_history(happened: dt.datetime, received: dt.datetime) -> bool:
    """Was this event received at central more than ``HISTORY_AFTER`` after it happened?"""
    return received - happened > HISTORY_AFTER
