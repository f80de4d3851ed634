"""How either side reaches the broker: the settings both configurations share (pure models)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class TlsFiles(BaseModel):
    """Client certificate login (the broker takes the certificate's CN as the username)."""

    model_config = ConfigDict(extra="forbid")

    ca: Path
    cert: Path
    key: Path


class BrokerEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: TlsFiles | None = None
    keepalive_s: int = Field(default=15, ge=5, le=600)
