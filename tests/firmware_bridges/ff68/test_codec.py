"""The FF 68 codec: bytes in any chunking → frames; frames → bytes; the spec's worked example
(docs/devices/evaluator-bus-ff68.md#worked-example)."""

from __future__ import annotations

import itertools
import random
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from firmware_bridges.ff68.codec import (
    BAD_CHECKSUM,
    BAD_LEN,
    KEY_LABELS,
    LEN_MISMATCH,
    MAX_DATA,
    NO_END,
    TRUNCATED,
    Boot,
    CallerFrame,
    Cancel,
    CancelReply,
    Decoder,
    Event,
    Frame,
    HostFrame,
    Invite,
    InviteReply,
    InviteTimeout,
    KeyEvent,
    RetransmissionFilter,
    ShowStaff,
    ShowStaffReply,
    StatusPoll,
    StatusReply,
    UnknownFrame,
    build_frame,
    checksum,
    classify,
    echo,
    encode,
    problem,
)

WORKED_EXAMPLE = bytes.fromhex("FF 68 05 05 68 83 11 07 01 2A C6 16")

# Properties, not timings: a busy machine must not fail them on Hypothesis's 200 ms deadline.
no_deadline = settings(deadline=None)

# ---------------------------------------------------------------------------------- strategies

byte = st.integers(0, 255)
token = st.integers(1, 255)
evaluator = st.integers(0x81, 0xFE)
u32 = st.integers(0, 2**32 - 1)
staff_no = st.text("0123456789", min_size=6, max_size=6)
name = st.text(max_size=12).filter(lambda s: len(s.encode()) <= 12)
data = st.binary(max_size=MAX_DATA)


def _unknown(f: UnknownFrame) -> bool:
    return isinstance(classify(f.addr, f.cmd, f.data), UnknownFrame)


events: st.SearchStrategy[Event] = st.one_of(
    st.builds(KeyEvent, evaluator, byte, byte, byte),
    st.builds(InviteTimeout, evaluator, byte, byte),
    st.builds(Boot, evaluator, byte, byte, byte, byte),
)
frames: st.SearchStrategy[Frame] = st.one_of(
    events,
    st.builds(InviteReply, evaluator, byte, byte),
    st.builds(CancelReply, evaluator, byte, byte),
    st.builds(ShowStaffReply, evaluator, byte),
    st.builds(StatusReply, evaluator, byte, byte, u32, u32, byte),
    st.builds(Invite, evaluator, token, token, staff_no, name),
    st.builds(Cancel, evaluator, token),
    st.builds(ShowStaff, evaluator, staff_no, name),
    st.builds(StatusPoll, evaluator),
    st.builds(CallerFrame, st.integers(0x01, 0x7F), byte, data),
    st.builds(HostFrame, st.sampled_from([0x00, 0xFF]), byte, data),
    st.builds(UnknownFrame, st.integers(0x80, 0xFE), byte, data).filter(_unknown),
)


def decode_all(chunks: list[bytes]) -> tuple[list[Frame], Decoder]:
    decoder = Decoder()
    out: list[Frame] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    out += decoder.line_idle()
    return out, decoder


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def accounted(decoder: Decoder, decoded: list[Frame]) -> int:
    """Every byte fed is garbage, preamble, part of a decoded frame, the 0x68 of an invalid
    frame, or still buffered."""
    return (
        decoder.garbage_bytes
        + decoder.preamble_bytes
        + sum(len(f.raw) for f in decoded)
        + decoder.invalid_frames
        + decoder.buffered
    )


# ------------------------------------------------------------------------------ worked example


def test_worked_example_decodes_to_the_documented_fields() -> None:
    (frame,) = Decoder().feed(WORKED_EXAMPLE)
    assert frame == KeyEvent(addr=0x83, seq=0x07, key=1, session=0x2A)
    assert isinstance(frame, KeyEvent)
    assert frame.valid_key and frame.label == "非常满意" == KEY_LABELS[1]
    assert checksum(0x83, 0x11, bytes([0x07, 0x01, 0x2A])) == 0xC6
    assert frame.raw == WORKED_EXAMPLE[1:]  # from 0x68 to 0x16, no preamble
    assert echo(frame) == WORKED_EXAMPLE  # "The host echoes the same 12 bytes."
    assert encode(KeyEvent(0x83, 0x07, 1, 0x2A)) == WORKED_EXAMPLE


def test_key_labels_are_the_six_keys() -> None:
    assert KEY_LABELS == {
        1: "非常满意",
        2: "基本满意",
        3: "服务态度不好",
        4: "办理时间太长",
        5: "业务不熟",
        6: "其他",
    }


@pytest.mark.parametrize("key", [0, 7, 0x55, 0xFF])
def test_a_key_outside_1_to_6_is_a_fault_still_decoded_and_echoed_unchanged(key: int) -> None:
    wire = build_frame(0x81, 0x11, bytes([3, key, 9]))
    (frame,) = Decoder().feed(wire)
    assert isinstance(frame, KeyEvent)
    assert frame.key == key and not frame.valid_key and frame.label is None
    assert echo(frame) == wire


# ---------------------------------------------------------------------------------- round trip


@no_deadline
@given(frames, st.integers(0, 3))
def test_encode_then_decode_gives_the_frame_back(frame: Frame, preamble: int) -> None:
    wire = encode(frame, preamble=preamble)
    decoder = Decoder()
    assert decoder.feed(wire) == [frame]
    (again,) = Decoder().feed(wire)
    assert again.raw == wire[preamble:]
    assert type(again) is type(frame)
    assert decoder.invalid_frames == decoder.garbage_bytes == decoder.buffered == 0


@no_deadline
@given(events)
def test_the_echo_of_a_decoded_event_is_its_own_frame(event: Event) -> None:
    wire = encode(event)
    (decoded,) = Decoder().feed(wire)
    assert isinstance(decoded, KeyEvent | InviteTimeout | Boot)
    assert echo(decoded) == wire == echo(event)


def test_only_events_are_echoed() -> None:
    with pytest.raises(TypeError):
        echo(StatusPoll(0x81))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- any input, any cuts


@no_deadline
@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=40))
def test_any_bytes_in_any_chunking_never_raise_and_every_byte_is_accounted(
    stream: bytes, cuts: list[int]
) -> None:
    decoded, decoder = decode_all(split(stream, cuts))
    assert decoder.buffered == 0  # line_idle() flushed everything
    assert accounted(decoder, decoded) == len(stream)


@no_deadline
@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 10_000), max_size=30))
def test_frames_decode_the_same_in_any_chunking(items: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode(f, preamble=i % 4) for i, f in enumerate(items))
    decoded, decoder = decode_all(split(stream, cuts))
    assert decoded == items
    assert decoder.invalid_frames == decoder.garbage_bytes == 0


def _accidental_frames(stream: bytes, starts: set[int]) -> bool:
    """Independent, naive oracle: does a valid frame start anywhere but at our own frames?"""
    for i in range(len(stream) - 5):
        if i in starts or stream[i] != 0x68 or stream[i + 3] != 0x68:
            continue
        n = stream[i + 1]
        if n != stream[i + 2] or not 2 <= n <= 64 or i + n + 6 > len(stream):
            continue
        body = stream[i + 4 : i + 4 + n]
        if stream[i + 4 + n] == sum(body) % 256 and stream[i + 5 + n] == 0x16:
            return True
    return False


@st.composite
def noise(draw: st.DrawFn) -> bytes:
    """Line noise: random bytes, and frames cut short (a good frame may start inside one)."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=30))
    wire = encode(draw(frames), preamble=draw(st.integers(0, 3)))
    if kind == 1:
        return wire[: draw(st.integers(0, len(wire) - 1))]
    damaged = bytearray(wire)
    i = draw(st.integers(0, len(wire) - 1))
    damaged[i] ^= draw(st.integers(1, 255))
    return bytes(damaged)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(noise(), frames), max_size=10),
    noise(),
    st.lists(st.integers(0, 10_000), max_size=30),
)
def test_every_valid_frame_in_noise_is_decoded_in_order(
    pairs: list[tuple[bytes, Frame]], tail: bytes, cuts: list[int]
) -> None:
    stream, starts = b"", set()
    for junk, frame in pairs:
        stream += junk
        starts.add(len(stream) + 1)
        stream += encode(frame)
    stream += tail
    assume(not _accidental_frames(stream, starts))
    decoded, decoder = decode_all(split(stream, cuts))
    assert decoded == [frame for _, frame in pairs]
    assert accounted(decoder, decoded) == len(stream)


def _hostile_stream(rng: random.Random, size: int) -> bytes:
    """Frames, frames cut short or with a byte flipped, and noise rich in 0x68 and 0x16."""
    parts: list[bytes] = []
    total = 0
    while total < size:
        addr, cmd = rng.choice([0x05, 0x81, 0x83, 0xFF]), rng.choice([0x11, 0x30, 0xB0])
        wire = build_frame(addr, cmd, rng.randbytes(rng.randint(0, 62)), preamble=rng.randint(0, 3))
        pick = rng.random()
        if pick < 0.3:
            part = wire[: rng.randrange(len(wire))]
        elif pick < 0.5:
            damaged = bytearray(wire)
            damaged[rng.randrange(len(wire))] ^= rng.randrange(1, 256)
            part = bytes(damaged)
        elif pick < 0.8:
            part = bytes(rng.choice(b"\x68\x16\xff\x05\x00") for _ in range(rng.randint(1, 40)))
        else:
            part = wire
        parts.append(part)
        total += len(part)
    return b"".join(parts)


@pytest.mark.parametrize("kind", ["random", "hostile"])
def test_a_million_bytes_in_random_chunks_decode_in_seconds(kind: str) -> None:
    rng = random.Random(20_240_668)
    stream = rng.randbytes(1_000_000) if kind == "random" else _hostile_stream(rng, 1_000_000)
    decoder = Decoder()
    decoded: list[Frame] = []
    t0 = time.perf_counter()
    pos = 0
    while pos < len(stream):
        n = rng.randint(1, 4096)
        decoded += decoder.feed(stream[pos : pos + n])
        pos += n
    decoded += decoder.line_idle()
    elapsed = time.perf_counter() - t0
    print(
        f"\nfuzz ({kind}): {len(stream):,} bytes in {elapsed:.2f} s; {len(decoded)} frames, "
        f"{decoder.invalid_frames} invalid, {decoder.garbage_bytes} garbage bytes"
    )
    assert elapsed < 5
    assert accounted(decoder, decoded) == len(stream)
    assert len(decoder.rejected) == min(decoder.invalid_frames, decoder.rejected.maxlen or 0)


# ------------------------------------------------------------------------------ invalid frames

GOOD = build_frame(0x81, 0x11, bytes([1, 2, 0]), preamble=0)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (GOOD[:-2] + bytes([GOOD[-2] ^ 1, 0x16]), BAD_CHECKSUM),
        (GOOD[:-1] + b"\x17", NO_END),
        (b"\x68\x05\x06\x68" + GOOD[4:], LEN_MISMATCH),
        (bytes.fromhex("68 01 01 68 81 11 92 16"), BAD_LEN),
        (bytes.fromhex("68 41 41 68") + bytes(63) + b"\x00\x16", BAD_LEN),
    ],
)
def test_invalid_frames_are_counted_kept_and_do_not_hide_the_next_one(
    wire: bytes, reason: str
) -> None:
    decoder = Decoder()
    assert decoder.feed(wire + GOOD) == [KeyEvent(0x81, 1, 2, 0)]
    assert decoder.invalid_frames == 1
    assert decoder.invalid_by_reason == {reason: 1}
    assert decoder.rejected[-1] == wire[: len(decoder.rejected[-1])]


def test_search_resumes_one_byte_after_the_0x68_of_a_truncated_frame() -> None:
    # An INVITE cut after 10 bytes claims 18; the good KEY inside its claimed length is found.
    invite = encode(Invite(0x82, 5, 30, "000123", "李四"), preamble=0)
    decoder = Decoder()
    assert decoder.feed(invite[:10] + GOOD + GOOD) == [KeyEvent(0x81, 1, 2, 0)] * 2
    assert decoder.invalid_by_reason == {BAD_CHECKSUM: 1} or decoder.invalid_by_reason == {
        NO_END: 1
    }


def test_a_frame_stuck_behind_a_truncated_one_comes_out_when_the_line_goes_idle() -> None:
    invite = encode(Invite(0x82, 5, 30, "000123", "张三李四"), preamble=0)
    decoder = Decoder()
    assert decoder.feed(invite[:8] + GOOD) == []  # still waiting for the claimed 24 bytes
    assert decoder.buffered == 8 + len(GOOD)
    assert decoder.line_idle() == [KeyEvent(0x81, 1, 2, 0)]
    assert decoder.invalid_by_reason == {TRUNCATED: 1}
    assert decoder.buffered == 0


def test_preamble_and_stray_bytes_are_counted_apart() -> None:
    decoder = Decoder()
    decoder.feed(b"\xff\xff\xff" + GOOD + b"\x00\x68\x12" + b"\xff\xff" + GOOD)
    assert decoder.frames == 2
    assert decoder.preamble_bytes == 5
    assert decoder.garbage_bytes == 3  # 00, the lone 68, 12
    assert decoder.invalid_frames == 0


def test_the_buffer_stays_bounded_whatever_is_fed() -> None:
    decoder = Decoder(max_buffer=128)
    decoder.feed(b"\x68\x40\x40\x68" + b"\x00" * 10)  # a long frame begun, never finished
    assert decoder.buffered == 14
    decoder.feed(bytes(100_000))
    assert decoder.buffered == 0
    with pytest.raises(ValueError):
        Decoder(max_buffer=16)


def test_traffic_that_is_not_ours_is_classified_and_counted() -> None:
    decoder = Decoder()
    out = decoder.feed(
        build_frame(0x05, 0x41, b"A012")  # a window caller
        + build_frame(0xFF, 0x30)  # a broadcast
        + build_frame(0x00, 0x11, b"\x01\x02\x03")  # the host address
        + build_frame(0x81, 0x11, b"\x01\x02")  # KEY with 2 data bytes
        + build_frame(0x81, 0x7E, b"")  # unknown command
        + build_frame(0x80, 0x11, b"\x01\x02\x03")  # 0x80 belongs to nobody
    )
    assert [type(f) for f in out] == [
        CallerFrame,
        HostFrame,
        HostFrame,
        UnknownFrame,
        UnknownFrame,
        UnknownFrame,
    ]
    assert (decoder.caller_frames, decoder.host_frames, decoder.unknown_frames) == (1, 2, 3)


# -------------------------------------------------------------------------- encode validation


@pytest.mark.parametrize(
    "command",
    [
        Invite(0x81, 0, 30, "000123", "张三"),  # SESSION 0
        Invite(0x81, 5, 0, "000123", "张三"),  # TIMEOUT_S 0
        Invite(0x81, 5, 30, "00123", "张三"),  # 5 digits
        Invite(0x81, 5, 30, "00012a", "张三"),
        Invite(0x81, 5, 30, "٠٠٠١٢٣", "张三"),  # digits, but not ASCII
        Invite(0x81, 5, 30, "000123", "张三李四王五"),  # 18 bytes of UTF-8
        Invite(0x81, 5, 30, "000123", "bad\udcff"),  # not UTF-8
        Invite(0x81, 256, 30, "000123", ""),
        Invite(0x05, 5, 30, "000123", ""),  # a caller's address
        Invite(0xFF, 5, 30, "000123", ""),  # broadcast: use HostFrame
        Cancel(0x81, 0),  # session 0 is never open
        ShowStaff(0x81, "12345", ""),
        ShowStaff(0x81, "123456", "x" * 13),
        StatusPoll(0x00),
        KeyEvent(0x81, 256, 1, 0),
        StatusReply(0x81, 1, 0, 2**32, 0, 0),
        CallerFrame(0x81, 0x11, b""),
        HostFrame(0x42, 0x30, b""),
        UnknownFrame(0x81, 0x7E, bytes(63)),
    ],
)
def test_encode_refuses_what_the_spec_does_not_allow(command: Frame) -> None:
    assert problem(command)
    with pytest.raises(ValueError):
        encode(command)


def test_a_twelve_byte_name_and_an_empty_one_are_fine() -> None:
    assert problem(Invite(0x81, 5, 30, "000123", "张三李四")) is None  # 12 bytes
    assert problem(ShowStaff(0x81, "000123", "")) is None


def test_bad_arguments_survive_decoding_so_a_device_can_answer_status_2() -> None:
    wire = build_frame(0x81, 0x21, bytes([5, 30]) + b"0001\xff3" + b"\xe5\xbc")
    (frame,) = Decoder().feed(wire)
    assert isinstance(frame, Invite)
    assert problem(frame)
    assert build_frame(0x81, 0x21, bytes([5, 30]) + b"0001\xff3" + b"\xe5\xbc") == wire


def test_status_reply_flags() -> None:
    reply = StatusReply(0x81, 1, 4, 3600, 12, 0b101)
    assert reply.stuck_key and not reply.display_failed and reply.keys_disabled
    (decoded,) = Decoder().feed(encode(reply))
    assert decoded == reply


# ------------------------------------------------------------------------ retransmission filter


def test_retransmission_filter_tells_repeats_from_new_events() -> None:
    f = RetransmissionFilter(window_s=4.0)
    key = KeyEvent(0x81, 1, 1, 7)
    assert not f.is_repeat(key, 0.0)
    assert f.is_repeat(key, 0.4)  # the device's second attempt
    assert not f.is_repeat(KeyEvent(0x82, 1, 1, 7), 0.5)  # another device
    assert not f.is_repeat(KeyEvent(0x81, 2, 1, 0), 0.6)  # the next SEQ
    assert not f.is_repeat(key, 4.5)  # outside the window: SEQ wrapped, a new event
    assert f.duplicates == 1


def test_a_forgotten_first_copy_makes_the_next_copy_new() -> None:
    # the host could not keep the first copy (its journal failed) and did not echo it
    f = RetransmissionFilter()
    key = KeyEvent(0x81, 3, 2, 9)
    assert not f.is_repeat(key, 0.0)
    f.forget(key)
    f.forget(KeyEvent(0x82, 3, 2, 9))  # never seen: nothing to forget
    assert not f.is_repeat(key, 0.4)
    assert f.is_repeat(key, 0.8) and f.duplicates == 1


def test_a_boot_seen_after_the_first_key_of_its_boot_does_not_let_a_repeat_through() -> None:
    # The BOOT's first copies were lost: SEQ 1 arrives, then the BOOT, then SEQ 1 again.
    f = RetransmissionFilter()
    assert not f.is_repeat(KeyEvent(0x84, 1, 2, 0), 0.0)
    assert not f.is_repeat(Boot(0x84, 0, 1, 4, 0), 0.4)
    assert f.is_repeat(KeyEvent(0x84, 1, 2, 0), 0.5)
