"""The $QM codec against the manual's examples (docs/devices/queue-machine-qm.md), malformed
input and random bytes."""

from __future__ import annotations

import contextlib
import itertools
import random
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridges.qm.codec import (
    MAX_LINE,
    AckDecoder,
    Called,
    Decoder,
    FeedItem,
    Heartbeat,
    Message,
    NoShow,
    Recalled,
    ServiceFinished,
    ServiceStarted,
    StaffLogin,
    StaffLogout,
    TicketIssued,
    Transferred,
    Unusable,
    WindowPaused,
    WindowResumed,
    checksum,
    encode,
    encode_ack,
    encode_line,
    next_mseq,
    normalize_encoding,
)

TK_EXAMPLE = b"$QM,1042,TK,A031,A01,20261121091502,3*0E\r\n"
CL_EXAMPLE = b"$QM,1043,CL,A031,5,20261121092210*72\r\n"
ACK_EXAMPLE = b"$ACK,1042*62\r\n"


# --- the manual's examples -------------------------------------------------------------------


def test_manual_examples_encode_byte_for_byte() -> None:
    issued = TicketIssued(
        mseq=1042,
        ticket="A031",
        service="A01",
        waiting=3,
        machine_time=datetime(2026, 11, 21, 9, 15, 2),
    )
    called = Called(
        mseq=1043, ticket="A031", window=5, machine_time=datetime(2026, 11, 21, 9, 22, 10)
    )
    assert encode(issued) == TK_EXAMPLE
    assert encode(called) == CL_EXAMPLE
    assert encode_ack(1042) == ACK_EXAMPLE
    assert encode_line("ACK,1042") == ACK_EXAMPLE
    assert checksum(b"QM,1042,TK,A031,A01,20261121091502,3") == 0x0E


def test_manual_examples_decode() -> None:
    decoder = Decoder()
    items = decoder.feed(TK_EXAMPLE + CL_EXAMPLE)
    assert items == [
        TicketIssued(
            mseq=1042,
            ticket="A031",
            service="A01",
            waiting=3,
            machine_time=datetime(2026, 11, 21, 9, 15, 2),
        ),
        Called(mseq=1043, ticket="A031", window=5, machine_time=datetime(2026, 11, 21, 9, 22, 10)),
    ]
    assert items[0].raw == TK_EXAMPLE[:-2]
    assert isinstance(items[0], TicketIssued) and items[0].service_name is None
    assert items[0].machine_time_text == "20261121091502"
    assert (decoder.messages, decoder.bad_lines, decoder.garbage_bytes) == (2, 0, 0)


def test_ack_decoder_reads_acks_and_refuses_the_rest() -> None:
    decoder = AckDecoder()
    assert decoder.feed(ACK_EXAMPLE + b"$ACK,7*00\r\n" + encode_ack(999_999)) == [1042, 999_999]
    assert decoder.bad_lines == 1
    assert decoder.feed(CL_EXAMPLE) == []
    assert decoder.rejected[-1].reason == "not an $ACK line"


def test_mseq_wraps_to_one() -> None:
    assert next_mseq(1) == 2
    assert next_mseq(999_998) == 999_999
    assert next_mseq(999_999) == 1


def test_encodings_by_any_spelling() -> None:
    assert normalize_encoding("UTF8") == "utf-8"
    assert normalize_encoding("GB2312") == "gb2312"
    with pytest.raises(ValueError):
        normalize_encoding("latin-1")


# --- GB2312 and undecodable text -------------------------------------------------------------


def test_gb2312_service_name() -> None:
    issued = TicketIssued(
        mseq=7,
        ticket="B012",
        service="B02",
        waiting=4,
        service_name="不动产登记",
        machine_time=datetime(2026, 11, 21, 10, 0, 0),
    )
    line = encode(issued, "gb2312")
    assert "不动产登记".encode("gb2312") in line
    assert Decoder("gb2312").feed(line) == [issued]


def test_wrong_encoding_is_read_as_the_other_one_and_counted() -> None:
    line = encode_line("QM,8,TK,B013,B02,20261121100000,5,不动产登记", "gb2312")
    decoder = Decoder("utf-8")
    [item] = decoder.feed(line)
    assert isinstance(item, TicketIssued)
    assert item.service_name == "不动产登记"  # GB 2312 on a unit configured as UTF-8
    assert item.raw == line[:-2]  # the original bytes stay for the journal
    assert decoder.text_replaced == 1


@pytest.mark.parametrize("encoding", ["utf-8", "gb2312"])
def test_device_text_is_made_safe(encoding: str) -> None:
    name = b"\xb2\xbb\x00A\x1b\xff\xfe\x85"  # GB 2312, NUL, ESC, bytes no codec reads
    body = b"QM,9,TK,B014,B02,20261121100000,5," + name
    decoder = Decoder(encoding)
    [item] = decoder.feed(b"$%s*%02X\r\n" % (body, checksum(body)))
    assert isinstance(item, TicketIssued) and item.service_name is not None
    assert item.service_name.startswith("\ufffd") or item.service_name.startswith("\u4e0d")
    assert not [c for c in item.service_name if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]
    assert "A" in item.service_name and decoder.text_replaced == 1


@pytest.mark.parametrize("mseq", ["0", "1000000", "0000000", "999999999999999999"])
def test_a_number_outside_1_to_999999_is_unusable_and_acknowledged_as_sent(mseq: str) -> None:
    [item] = Decoder().feed(encode_line(f"QM,{mseq},CL,A031,5,20261121092210"))
    assert isinstance(item, Unusable) and item.mseq == int(mseq)
    assert "outside 1…999999" in item.reason
    assert AckDecoder().feed(encode_ack(item.mseq)) == [int(mseq)]


def test_text_outside_gb2312_cannot_be_encoded() -> None:
    issued = TicketIssued(
        mseq=1,
        ticket="A1",
        service="A01",
        waiting=1,
        service_name="😀",
        machine_time=datetime(2026, 1, 1),
    )
    with pytest.raises(ValueError):
        encode(issued, "gb2312")


# --- unusable: acknowledged and journaled raw ------------------------------------------------

UNUSABLE_BODIES = {
    "unknown type": "QM,77,ZZ,A031,5,20261121092210",
    "missing field": "QM,78,CL,A031,20261121092210",
    "extra field": "QM,79,CL,A031,5,20261121092210,9",
    "malformed time": "QM,80,CL,A031,5,2026-11-21 09:22",
    "time too short": "QM,81,HB,2026112109221,3",
    "window not a number": "QM,82,CL,A031,five,20261121092210",
    "negative count": "QM,83,HB,20261121092210,-1",
    "staff not 6 digits": "QM,84,ST,A031,5,12345,20261121092210",
    "empty ticket": "QM,85,NS,,5,20261121092210",
    "no type": "QM,86",
    "mseq zero": "QM,0,HB,20261121092210,3",
    "non-ASCII ticket": "QM,87,CL,号A031,5,20261121092210",
}


@pytest.mark.parametrize("body", UNUSABLE_BODIES.values(), ids=UNUSABLE_BODIES.keys())
def test_well_formed_but_unusable_lines(body: str) -> None:
    line = encode_line(body)
    decoder = Decoder()
    [item] = decoder.feed(line)
    assert isinstance(item, Unusable)
    assert item.mseq == int(body.split(",")[1])
    assert item.raw == line[:-2]
    assert item.reason
    assert (decoder.unusable, decoder.messages, decoder.bad_lines) == (1, 0, 0)


def test_impossible_moment_keeps_the_event() -> None:
    # A clock reset by a power cut: right shape, no real moment. The event is still good.
    decoder = Decoder()
    [item] = decoder.feed(encode_line("QM,90,CL,A031,5,00000000000000"))
    assert isinstance(item, Called)
    assert item.machine_time is None and item.machine_time_text == "00000000000000"
    assert decoder.impossible_times == 1
    assert encode(item) == encode_line("QM,90,CL,A031,5,00000000000000")


# --- rejected: never returned, so never acknowledged -----------------------------------------


def _wrong_checksum(line: bytes) -> bytes:
    return line[:-4] + (b"01" if line[-4:-2] == b"00" else b"00") + b"\r\n"


REJECTED_LINES = {
    "bad checksum": b"$QM,1043,CL,A031,5,20261121092210*73\r\n",
    "checksum not hex": b"$QM,1043,CL,A031,5,20261121092210*7G\r\n",
    "checksum one digit": b"$QM,1043,CL,A031,5,20261121092210*7\r\n",
    "no star": b"$QM,1043,CL,A031,5,20261121092210\r\n",
    "cut short by dollar": b"$QM,1043,CL,A0",
    "not a QM line": encode_line("XX,1043,CL,A031,5,20261121092210"),
    "unreadable mseq": encode_line("QM,10a3,CL,A031,5,20261121092210"),
    "19-digit mseq": encode_line("QM,1000000000000000000,CL,A031,5,20261121092210"),
    "over-long, bad checksum": _wrong_checksum(
        encode_line("QM,5,TK,A1,A01,20261121092210,1," + "x" * MAX_LINE)
    ),
    "over-long, no mseq": encode_line("QM,x5,TK,A1,A01,20261121092210,1," + "x" * MAX_LINE),
}


@pytest.mark.parametrize("cut", [1, 7, 300, 1100, 5000])
def test_a_well_formed_over_long_line_is_unusable_and_acknowledged(cut: int) -> None:
    line = encode_line("QM,5,TK,A1,A01,20261121092210,1," + "名" * MAX_LINE)
    decoder = Decoder()
    stream = line + CL_EXAMPLE
    items = [i for at in range(0, len(stream), cut) for i in decoder.feed(stream[at : at + cut])]
    assert [item.mseq for item in items] == [5, 1043]
    first = items[0]
    assert isinstance(first, Unusable) and f"line of {len(line)} bytes" in first.reason
    assert first.raw == line[:MAX_LINE] and decoder.bad_lines == 0


@pytest.mark.parametrize("line", REJECTED_LINES.values(), ids=REJECTED_LINES.keys())
def test_broken_lines_are_rejected_and_the_next_line_still_decodes(line: bytes) -> None:
    decoder = Decoder()
    items = decoder.feed(line + CL_EXAMPLE)
    assert [item.mseq for item in items] == [1043]
    assert isinstance(items[0], Called)
    assert decoder.bad_lines == 1
    assert decoder.rejected[-1].raw.startswith(b"$")
    assert len(decoder.rejected[-1].raw) <= MAX_LINE


def test_garbage_between_lines_is_counted() -> None:
    decoder = Decoder()
    items = decoder.feed(b"\x00\xffnoise\r\n" + TK_EXAMPLE + b"***" + CL_EXAMPLE)
    assert [item.mseq for item in items] == [1042, 1043]
    assert decoder.garbage_bytes == len(b"\x00\xffnoise\r\n***")
    assert decoder.bad_lines == 0


def test_rejected_is_bounded() -> None:
    decoder = Decoder(rejected_size=5)
    decoder.feed(b"$x\n" * 100)
    assert decoder.bad_lines == 100
    assert len(decoder.rejected) == 5


def test_reset_drops_a_partial_line() -> None:
    decoder = Decoder()
    assert decoder.feed(CL_EXAMPLE[:20]) == []
    decoder.reset()
    assert decoder.feed(CL_EXAMPLE[20:]) == []  # the tail alone is garbage
    assert decoder.bad_lines == 1
    assert [item.mseq for item in decoder.feed(CL_EXAMPLE)] == [1043]


def test_bare_lf_is_accepted() -> None:
    assert [i.mseq for i in Decoder().feed(CL_EXAMPLE[:-2] + b"\n")] == [1043]


# --- property tests --------------------------------------------------------------------------


def _gb2312_characters() -> list[str]:
    found = []
    for lead in range(0xB0, 0xF8):
        for trail in range(0xA1, 0xFF):
            with contextlib.suppress(UnicodeDecodeError):
                found.append(bytes((lead, trail)).decode("gb2312"))
    return found


GB2312_HANZI = _gb2312_characters()
PRINTABLE_CODE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ",*$")

mseqs = st.integers(1, 999_999)
tickets = st.text(PRINTABLE_CODE, min_size=1, max_size=32)
windows = st.integers(0, 99_999)
staff = st.from_regex(r"\A[0-9]{6}\Z")
counts = st.integers(0, 999_999)
moments = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31))


def service_names(encoding: str) -> st.SearchStrategy[str | None]:
    if encoding == "gb2312":
        alphabet = st.sampled_from(GB2312_HANZI + list(PRINTABLE_CODE + " "))
    else:
        # control characters are made safe on decoding (test_device_text_is_made_safe)
        alphabet = st.characters(blacklist_characters=",*$", blacklist_categories=("Cs", "Cc"))
    return st.none() | st.text(alphabet, max_size=40)


def messages(encoding: str) -> st.SearchStrategy[Message]:
    common = {"mseq": mseqs, "machine_time": moments.map(lambda m: m.replace(microsecond=0))}
    window_staff = {**common, "window": windows, "staff": staff}
    ticket_window = {**common, "ticket": tickets, "window": windows}
    return st.one_of(
        st.builds(
            TicketIssued,
            **common,
            ticket=tickets,
            service=tickets,
            waiting=counts,
            service_name=service_names(encoding),
        ),
        st.builds(Called, **ticket_window),
        st.builds(Recalled, **ticket_window),
        st.builds(ServiceStarted, **ticket_window, staff=staff),
        st.builds(ServiceFinished, **ticket_window, staff=staff),
        st.builds(NoShow, **ticket_window),
        st.builds(Transferred, **common, ticket=tickets, from_window=windows, to_service=tickets),
        st.builds(StaffLogin, **window_staff),
        st.builds(StaffLogout, **window_staff),
        st.builds(WindowPaused, **window_staff),
        st.builds(WindowResumed, **window_staff),
        st.builds(Heartbeat, **common, waiting_total=counts),
    )


MESSAGES = {encoding: messages(encoding) for encoding in ("utf-8", "gb2312")}


@pytest.mark.parametrize("encoding", ["utf-8", "gb2312"])
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_every_type(encoding: str, data: st.DataObject) -> None:
    message = data.draw(MESSAGES[encoding])
    line = encode(message, encoding)
    decoder = Decoder(encoding)
    [decoded] = decoder.feed(line)
    assert decoded == message
    assert type(decoded) is type(message)
    assert decoded.raw == line[:-2]
    assert encode(decoded, encoding) == line
    assert (decoder.bad_lines, decoder.garbage_bytes, decoder.text_replaced) == (0, 0, 0)


def _feed_in_chunks(decoder: Decoder, data: bytes, cuts: list[int]) -> list[FeedItem]:
    items: list[FeedItem] = []
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for start, end in itertools.pairwise(edges):
        items.extend(decoder.feed(data[start:end]))
    return items


@settings(max_examples=500)
@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(0, 4000), max_size=30),
    encoding=st.sampled_from(["utf-8", "gb2312"]),
)
def test_any_bytes_any_chunking_never_raises_and_chunking_does_not_matter(
    data: bytes, cuts: list[int], encoding: str
) -> None:
    whole = Decoder(encoding, max_line=128)
    chunked = Decoder(encoding, max_line=128)
    expected = whole.feed(data)
    assert _feed_in_chunks(chunked, data, cuts) == expected
    counters = ("messages", "unusable", "bad_lines", "garbage_bytes", "text_replaced")
    assert [getattr(chunked, c) for c in counters] == [getattr(whole, c) for c in counters]
    assert list(chunked.rejected) == list(whole.rejected)


FIELD_VOCABULARY = [
    b"QM",
    b"TK",
    b"CL",
    b"RC",
    b"ST",
    b"FN",
    b"NS",
    b"TR",
    b"LI",
    b"LO",
    b"PS",
    b"RS",
    b"HB",
    b"ZZ",
    b"",
    b"0",
    b"1",
    b"5",
    b"99999",
    b"999999",
    b"1000000",
    b"-1",
    b"A031",
    b"A01",
    b"123456",
    b"12345",
    b"20261121092210",
    b"00000000000000",
    b"20261332250000",
    b"2026",
    b"\xff\xfe",
    b"\xb2\xbb\xb6\xaf",
    "不动产".encode(),
    b" ",
    b"\x00",
    b"*",
    b"\r",
]


@settings(max_examples=500)
@given(
    fields=st.lists(st.sampled_from(FIELD_VOCABULARY), min_size=1, max_size=9),
    encoding=st.sampled_from(["utf-8", "gb2312"]),
)
def test_checksum_valid_lines_of_any_shape_never_raise(fields: list[bytes], encoding: str) -> None:
    body = b",".join(fields)
    line = b"$%s*%02X\r\n" % (body, checksum(body))
    decoder = Decoder(encoding)
    items = decoder.feed(line)
    assert len(items) + decoder.bad_lines == 1
    for item in items:  # whatever came out can be acknowledged and journaled raw
        assert AckDecoder().feed(encode_ack(item.mseq)) == [item.mseq]
        assert item.raw == line[:-2]


@settings(max_examples=200)
@given(
    noise=st.lists(st.binary(max_size=60), min_size=3, max_size=12),
    sent=st.lists(MESSAGES["utf-8"], min_size=1, max_size=10),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
)
def test_valid_lines_inside_noise_are_still_decoded(
    noise: list[bytes], sent: list[Message], cuts: list[int]
) -> None:
    # Noise may cut the line right before it (no '\n'), but a line's own '$' restarts framing.
    stream = b"".join(n + encode(m) for n, m in zip(noise, sent, strict=False)) + noise[-1]
    got = [i for i in _feed_in_chunks(Decoder(), stream, cuts) if i in sent]
    assert [m.mseq for m in got] == [m.mseq for m in sent[: len(noise)]]


def test_a_million_random_bytes() -> None:
    rng = random.Random(20261121)
    decoder = Decoder()
    good = [
        encode(
            Called(
                mseq=n,
                ticket=f"A{n:03d}",
                window=n % 40,
                machine_time=datetime(2026, 11, 21, 9, 0, n % 60),
            )
        )
        for n in range(1, 201)
    ]
    noise_bytes = 0
    seen: list[bytes] = []
    for line in good:
        noise = rng.randbytes(rng.randrange(3000, 9000))
        noise_bytes += len(noise)
        stream = noise + line
        at = 0
        while at < len(stream):
            step = rng.randrange(1, 700)
            seen.extend(item.raw for item in decoder.feed(stream[at : at + step]))
            at += step
    assert noise_bytes >= 1_000_000
    # every real line came through, even glued to noise; the noise made nothing
    assert seen == [line[:-2] for line in good]
    assert decoder.garbage_bytes > 0 and decoder.bad_lines > 0
