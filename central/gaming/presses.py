"""An anomaly case's press refs resolved for the reviewer: when each press was, its key,
window, staff, ticket, flags, the camera's verdict, and the snapshot where the evidence vault
holds it (served by the evidence API to whoever may see that evaluation)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from central.records import evidence as vault
from central.store.schema import events
from central.store.schema_correlation import correlation_heads, correlation_results

MAX_PRESSES = 300  # resolved per case; a longer list is cut (the case says how many it has)
VERDICT_KIND = "camera.verdict"
VERDICT_SEQ_SPAN = 5000  # a verdict is journaled shortly after its key press (as the review has)
REF_KEYS = ("presses", "press_refs")  # where the detector's evidence lists [[gateway, seq], …]


def press_refs(evidence: dict[str, Any]) -> list[tuple[str, int]]:
    """The [[gateway_id, seq], …] of the evidence, in order, without repeats."""
    for name in REF_KEYS:
        found = evidence.get(name)
        if isinstance(found, list):
            refs = [
                (str(r[0]), int(r[1]))
                for r in found
                if isinstance(r, (list, tuple)) and len(r) == 2
            ]
            return list(dict.fromkeys(refs))
    return []


async def _verdicts(
    conn: AsyncConnection, refs: list[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, Any]]:
    by_gateway: dict[str, list[int]] = defaultdict(list)
    for gateway, seq in refs:
        by_gateway[gateway].append(seq)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for gateway, seqs in by_gateway.items():
        wanted = set(seqs)
        rows = await conn.execute(
            select(events.c.body).where(
                events.c.gateway_id == gateway,
                events.c.kind == VERDICT_KIND,
                events.c.seq > min(seqs),
                events.c.seq <= max(seqs) + VERDICT_SEQ_SPAN,
            )
        )
        for (body,) in rows:
            key_seq = (body or {}).get("key_seq")
            if key_seq in wanted:
                found.setdefault((gateway, key_seq), body)
    return found


async def resolve(conn: AsyncConnection, evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's presses as rows for a table; a ref correlation does not know stays a row
    with only its gateway and seq."""
    refs = press_refs(evidence)[:MAX_PRESSES]
    if not refs:
        return []
    heads, results = correlation_heads, correlation_results
    rows = await conn.execute(
        select(results)
        .join(
            heads,
            and_(
                heads.c.gateway_id == results.c.gateway_id,
                heads.c.seq == results.c.seq,
                heads.c.version == results.c.version,
            ),
        )
        .where(tuple_(results.c.gateway_id, results.c.seq).in_(refs))
    )
    known = {(r.gateway_id, r.seq): r for r in rows}
    verdicts = await _verdicts(conn, refs)
    hashes = {v["snapshot_sha256"] for v in verdicts.values() if v.get("snapshot_sha256")}
    stored = await vault.stored_hashes(conn, hashes) if hashes else set()
    out: list[dict[str, Any]] = []
    for gateway, seq in refs:
        r = known.get((gateway, seq))
        verdict = verdicts.get((gateway, seq), {})
        sha = verdict.get("snapshot_sha256")
        out.append(
            {
                "gateway": gateway,
                "seq": seq,
                "at": None if r is None else r.evaluated_at,
                "key": None if r is None else r.key,
                "window": None if r is None else r.window,
                "staff": None if r is None else r.staff,
                "ticket": None if r is None else r.ticket,
                "flags": [] if r is None else list(r.flags or []),
                "citizen": None if r is None else r.citizen,
                "snapshot_sha256": sha if sha in stored else None,
            }
        )
    return out
