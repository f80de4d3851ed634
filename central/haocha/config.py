"""``haocha:`` in central.yaml: the mapping versions and the feed upward.

The book of mapping versions is bound to the engine at start (like the case context), so the
API's export maps with the configured versions; an app without a binding uses the default."""

from __future__ import annotations

import weakref
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from central.rules.scale import DEFAULT_BOOK, DEFAULT_MAPPING, MappingBook, MappingVersion


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["platform_http", "platform_file"] | None = Field(
        default=None,
        description="where evaluation records go (outbox.platform_http or outbox.platform_file); "
        "unset: no feed",
    )
    every_s: float = Field(default=30.0, gt=0, le=3600, description="scan interval")
    include_applicant: bool = Field(
        default=False,
        description="add the masked applicant (张*, 138****1234) where the platform's rules "
        "and the law allow it; never the full data",
    )


class HaochaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mapping_versions: list[MappingVersion] = Field(
        default_factory=lambda: [DEFAULT_MAPPING],
        min_length=1,
        description="key → level and tag, each version from its effective_from date",
    )
    feed: FeedConfig = FeedConfig()

    @model_validator(mode="after")
    def _a_book(self) -> HaochaConfig:
        MappingBook(self.mapping_versions)  # distinct names and dates
        return self

    def book(self) -> MappingBook:
        return MappingBook(self.mapping_versions)


_books: weakref.WeakKeyDictionary[AsyncEngine, MappingBook] = weakref.WeakKeyDictionary()


def bind_book(engine: AsyncEngine, book: MappingBook) -> None:
    _books[engine] = book


def book_of(engine: AsyncEngine) -> MappingBook:
    return _books.get(engine, DEFAULT_BOOK)


__all__ = ["FeedConfig", "HaochaConfig", "bind_book", "book_of"]
