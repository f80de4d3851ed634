"""The pyzmq link between the gateway core and its camera workers.

The core binds a ROUTER on loopback; each worker connects a DEALER whose identity is its
worker id. A message is a multipart: one JSON header, then binary parts (JPEG frames) when the
header says so. Worker → core: ``hello``, ``hb`` (heartbeat), ``health``, ``obs`` (one analysed
frame), ``note``, ``reply``. Core → worker: ``frames`` (a request for buffered JPEGs),
``calibrate``, ``stop``. Separate processes mean a decoder stuck in native code, or a worker
that dies, costs that worker only: the core notices the silence and restarts it.
"""

from __future__ import annotations

import json
from typing import Any

HEARTBEAT_S = 1.0


def pack(header: dict[str, Any], blobs: list[bytes] | None = None) -> list[bytes]:
    return [json.dumps(header, separators=(",", ":")).encode(), *(blobs or [])]


def unpack(frames: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    header = json.loads(frames[0])
    if not isinstance(header, dict) or "t" not in header:
        raise ValueError("not a link message")
    return header, list(frames[1:])
