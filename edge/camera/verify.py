"""Check an evidence directory against its manifest (and, optionally, a head central holds).

    python -m edge.camera.verify <evidence dir> [--head <sha256 central received>]

Finds: a manifest line altered, removed or inserted (chain breaks); a file whose bytes no
longer match its entry; a listed file missing; files on disk the chain does not know; and,
given a head from central, a chain rewritten from scratch (the head is no longer in it).
Exit status 0 when all holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edge.camera.evidence import MANIFEST, STATE_DIR, ManifestHead, sha256_file
from firmware_bridges.camera.codec import check_chain


@dataclass(slots=True)
class EvidenceReport:
    entries: int = 0
    head: ManifestHead = field(default_factory=lambda: ManifestHead(0, "0" * 64))
    live_files: int = 0
    chain_problems: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    head_problem: str | None = None

    @property
    def ok(self) -> bool:
        return not (
            self.chain_problems
            or self.altered
            or self.missing
            or self.unlisted
            or self.head_problem
        )

    def lines(self) -> list[str]:
        out = [
            f"manifest: {self.entries} entries, head #{self.head.seq} {self.head.hash}",
            f"live files: {self.live_files}",
        ]
        out += [f"链断裂 chain: {p}" for p in self.chain_problems]
        out += [f"已篡改 altered: {p}" for p in self.altered]
        out += [f"缺失 missing: {p}" for p in self.missing]
        out += [f"未登记 unlisted: {p}" for p in self.unlisted]
        if self.head_problem:
            out.append(f"链头不符 head: {self.head_problem}")
        out.append("结果 result: " + ("完好 intact" if self.ok else "有问题 PROBLEMS FOUND"))
        return out


def verify_evidence(root: Path, expected_head: str | None = None) -> EvidenceReport:
    report = EvidenceReport()
    manifest = root / MANIFEST
    lines = manifest.read_bytes().splitlines() if manifest.exists() else []
    check = check_chain(lines)
    report.entries = len(check.entries)
    report.head = ManifestHead(check.head_seq, check.head)
    report.chain_problems = [f"line {p.line}: {p.what}" for p in check.problems]
    live: dict[str, str] = {}
    for entry in check.entries:
        path = str(entry.get("path", ""))
        if entry.get("action") == "add":
            live[path] = str(entry.get("sha256", ""))
        elif entry.get("action") == "delete":
            live.pop(path, None)
    report.live_files = len(live)
    for relative, digest in sorted(live.items()):
        target = root / relative
        if not _inside(root, target):
            report.chain_problems.append(f"entry points outside the evidence dir: {relative}")
        elif not target.is_file():
            report.missing.append(relative)
        elif sha256_file(target) != digest:
            report.altered.append(relative)
    for found in sorted(root.rglob("*")):
        if not found.is_file() or found == manifest:
            continue
        relative = found.relative_to(root).as_posix()
        if relative.startswith(STATE_DIR + "/") or relative.endswith(".part"):
            continue
        if relative not in live:
            report.unlisted.append(relative)
    if expected_head is not None:
        hashes = {str(e.get("hash")) for e in check.entries}
        if expected_head.lower() not in hashes:
            report.head_problem = (
                f"central's head {expected_head} is not in this chain: rewritten or truncated"
            )
    return report


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge.camera.verify", description="核验证据 verify camera evidence"
    )
    parser.add_argument("evidence_dir", type=Path)
    parser.add_argument("--head", help="a manifest head (sha256) central received")
    args = parser.parse_args(argv)
    report = verify_evidence(args.evidence_dir, args.head)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
