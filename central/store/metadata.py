"""Central's one ``MetaData``: every table module defines its tables on it.

This module imports no table module, so table modules can import it (and each other, in one
direction) without a cycle. ``central.store.tables`` imports them all for whoever needs the whole
schema at once (Alembic, the test that compares a fresh database with a migrated one).

The naming convention is SQLAlchemy's default, written out: the migrations already deployed
name their indexes ``ix_<table>_<column>`` and leave primary keys, foreign keys and unnamed
unique constraints to the database; a convention that named those too would make a fresh
database differ from a migrated one. A migration that must drop such a constraint names it.
"""

from __future__ import annotations

from sqlalchemy import MetaData

NAMING_CONVENTION = {"ix": "ix_%(column_0_label)s"}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
