"""The heap of a long-running service, once it has started.

CPython's cyclic garbage collector walks every tracked object of the generations it collects.
After a service's start those are mostly what lives as long as the process (modules, models,
schemas, compiled statements), and ingest allocates fast enough (tuples, dicts and datetimes
for thousands of events a second) that full collections keep walking them: measured, half of
central's CPU time storing a 50,000-event backlog (docs/province.md#peer-drain). Freezing what
exists after the start keeps it out of every later collection; garbage made later is collected
as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now out of the collector's reach (they
    stay alive, as they would have). Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
