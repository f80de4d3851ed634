"""Every table of central on its one ``metadata``: import this module to have them all.

Alembic's environment and the schema tests use it; code that queries a few tables imports
their own modules (``central.store.schema`` for the spine, ``schema_cases``, ...) instead.
"""

from __future__ import annotations

from central.store import (
    schema,
    schema_audits,
    schema_cases,
    schema_complaints,
    schema_correlation,
    schema_dashboard,
    schema_evidence,
    schema_gaming,
    schema_halls,
    schema_ops,
    schema_outbox,
    schema_rollups,
    schema_tsledger,
)
from central.store.metadata import metadata

TABLE_MODULES = (
    schema,
    schema_audits,
    schema_cases,
    schema_complaints,
    schema_correlation,
    schema_dashboard,
    schema_evidence,
    schema_gaming,
    schema_halls,
    schema_ops,
    schema_outbox,
    schema_rollups,
    schema_tsledger,
)

__all__ = ["TABLE_MODULES", "metadata"]
