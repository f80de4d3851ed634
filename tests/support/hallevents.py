"""Event batches of real device kinds (evaluator keys, queue machine, health) for central tests,
built like a gateway builds them and stored through the real Ingestor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from central.spine.reading import Incoming
from protocols import topics
from protocols.devices import KEY_LABELS

BOOT = "cd" * 16


def key_press(
    window: int,
    key: int,
    *,
    session: int = 1,
    marks: Sequence[str] = (),
    ticket: str | None = "A001",
    staff: str | None = "100231",
) -> dict[str, Any]:
    """An evaluator.key body (with the invitation it answered)."""
    invitation = None
    if session:
        invitation = {
            "session": session,
            "ticket": ticket,
            "staff": staff,
            "invited_mono_ns": 1,
            "qm_mseq": 7,
        }
    return {
        "window": window,
        "addr": window,
        "dev_seq": session % 256,
        "key": key,
        "label": KEY_LABELS[key],
        "session": session,
        "invitation": invitation,
        "marks": list(marks),
        "raw": "ff68" + f"{window:02x}{key:02x}",
    }


def queue(mseq: int, kind: str, **fields: Any) -> dict[str, Any]:
    """A queue.event body ($QM message)."""
    return {"mseq": mseq, "type": kind, "raw": f"$QM,{mseq},{kind}", **fields}


def health(window: int, *, online: bool = True, stuck_key: bool = False) -> dict[str, Any]:
    return {"window": window, "addr": window, "online": online, "stuck_key": stuck_key}


class Gateway:
    """Numbers a gateway's events 1, 2, 3, … and wraps them in batches on its topic."""

    def __init__(self, hall: str, gateway: str, *, boot: str = BOOT) -> None:
        self.hall, self.gateway, self.boot = hall, gateway, boot
        self.seq = 0

    def batch(
        self,
        items: Sequence[tuple[str, dict[str, Any], datetime]],
        mono_ns: Sequence[int] | None = None,
        synced: bool = True,
    ) -> Incoming:
        """``items``: (kind, body, utc) in journal order; monotonic time from utc by default."""
        events = []
        for i, (kind, body, utc) in enumerate(items):
            self.seq += 1
            mono = mono_ns[i] if mono_ns is not None else int(utc.timestamp() * 1e9) - 10**18
            events.append(
                {
                    "seq": self.seq,
                    "utc": utc.astimezone(UTC).isoformat(),
                    "mono_ns": max(0, mono),
                    "boot": self.boot,
                    "synced": synced,
                    "kind": kind,
                    "body": body,
                }
            )
        doc = {
            "v": 1,
            "hall": self.hall,
            "gateway": self.gateway,
            "sender_boot": self.boot,
            "events": events,
        }
        return Incoming(
            topics.topic(self.hall, self.gateway, topics.Channel.EVENTS),
            json.dumps(doc).encode(),
            datetime.now(UTC),
        )
