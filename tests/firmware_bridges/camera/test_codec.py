"""The MJPEG splitter and the manifest chain, fed plain bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridges.camera.codec import (
    GENESIS,
    MjpegError,
    MjpegParser,
    boundary_from_content_type,
    check_chain,
    encode_entry_line,
    encode_part,
    seal_entry,
)


def jpeg(payload: bytes) -> bytes:
    return b"\xff\xd8" + payload + b"\xff\xd9"


def test_boundary_from_content_type_variants() -> None:
    assert boundary_from_content_type("multipart/x-mixed-replace; boundary=frame") == b"frame"
    assert boundary_from_content_type('multipart/x-mixed-replace;boundary="--myb"') == b"myb"
    with pytest.raises(MjpegError):
        boundary_from_content_type("image/jpeg")
    with pytest.raises(MjpegError):
        boundary_from_content_type("multipart/x-mixed-replace")


@given(
    payloads=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=20),
)
def test_parts_survive_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_part(jpeg(p), b"frame") for p in payloads)
    parser = MjpegParser(b"frame")
    out = []
    position = 0
    index = 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        out += parser.feed(stream[position : position + size])
        position += size
        index += 1
    # The last part is complete only when the next delimiter or its length says so; with a
    # Content-Length it is already out.
    assert [p.data for p in out] == [jpeg(p) for p in payloads]
    assert parser.stats.bad_parts == 0


def test_parts_without_content_length_and_with_bare_lf() -> None:
    stream = (
        b"--frame\nContent-Type: image/jpeg\n\n" + jpeg(b"one") + b"\n"
        b"--frame\nContent-Type: image/jpeg\n\n" + jpeg(b"two") + b"\n--frame\n"
    )
    parser = MjpegParser(b"--frame")
    assert [p.data for p in parser.feed(stream)] == [jpeg(b"one"), jpeg(b"two")]


def test_garbage_and_non_jpeg_parts_are_counted_not_fatal() -> None:
    parser = MjpegParser(b"frame")
    parts = parser.feed(
        b"noise before the stream"
        + encode_part(b"not a jpeg", b"frame")
        + encode_part(jpeg(b"ok"), b"frame")
    )
    assert [p.data for p in parts] == [jpeg(b"ok")]
    assert parser.stats.garbage_bytes > 0
    assert parser.stats.bad_parts == 1


def test_buffer_is_bounded_on_endless_garbage() -> None:
    parser = MjpegParser(b"frame", max_part_bytes=1000)
    for _ in range(100):
        parser.feed(b"x" * 1000)
    assert parser.buffered < 100
    parser.feed(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + b"y" * 5000)
    assert parser.buffered < 100 and parser.stats.oversized_parts == 1


def _chain(n: int) -> list[bytes]:
    lines, prev = [], GENESIS
    for seq in range(1, n + 1):
        entry = {
            "seq": seq,
            "utc": "2026-03-02T08:00:00.000Z",
            "action": "add",
            "path": f"p{seq}.jpg",
            "sha256": "a" * 64,
            "size": seq,
            "camera": "c",
            "window": 1,
            "reason": "key press",
            "meta": {},
            "prev": prev,
        }
        sealed = seal_entry(entry)
        prev = sealed["hash"]
        lines.append(encode_entry_line(sealed))
    return lines


def test_intact_chain_checks_clean() -> None:
    check = check_chain(_chain(5))
    assert not check.problems
    assert check.head_seq == 5 and check.head == json.loads(_chain(5)[-1])["hash"]


def test_altered_entry_removed_line_and_inserted_line_are_found() -> None:
    lines = _chain(5)
    altered = json.loads(lines[2])
    altered["size"] = 999
    tampered = [*lines[:2], json.dumps(altered).encode(), *lines[3:]]
    assert [p.line for p in check_chain(tampered).problems] == [3]

    removed = lines[:2] + lines[3:]
    problems = check_chain(removed).problems
    assert problems and problems[0].line == 3

    resealed = seal_entry({**json.loads(lines[2]), "reason": "rewritten"})
    inserted = [*lines[:3], encode_entry_line(resealed), *lines[3:]]
    assert check_chain(inserted).problems


def test_unknown_fields_cannot_be_smuggled_in() -> None:
    with pytest.raises(ValueError):
        seal_entry({"seq": 1, "prev": GENESIS, "surprise": True})
