"""The strict contract: every model admits only what both stores hold and the rules can use.

Valid instances are generated from the exported JSON Schema itself, so these tests also check
that a third party reading the schema builds messages the models accept.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from protocols.devices import BusStats
from protocols.envelope import Ack, EventBatch, EventRecord, GatewayState
from protocols.events import KINDS, validate_body
from protocols.evidence import EvidenceHeader, EvidenceReceipt
from protocols.strict import (
    EARLIEST_UTC,
    HEX_PATTERN,
    LATEST_UTC,
    MAX_JSON_DEPTH,
    SAFE_TEXT_PATTERN,
    device_text,
    stamp_plausible,
)

BOOT = "0123456789abcdef0123456789abcdef"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -- valid documents, drawn from the JSON Schema ---------------------------------------------

safe_chars = st.characters(blacklist_categories=("Cc", "Cs"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(safe_chars, max_size=20)
)
free_json = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.text(safe_chars, max_size=10), kids, max_size=3)
    ),
    max_leaves=8,
)


def _times() -> st.SearchStrategy[str]:
    return st.datetimes(
        min_value=EARLIEST_UTC.replace(tzinfo=None),
        max_value=LATEST_UTC.replace(tzinfo=None) - timedelta(days=1),
    ).map(lambda d: d.replace(tzinfo=UTC).isoformat())


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "string":
        if schema.get("format") == "date-time":
            return _times()
        pattern, most = schema.get("pattern"), schema.get("maxLength", 40)
        if pattern == HEX_PATTERN:
            return st.binary(max_size=min(most // 2, 40)).map(bytes.hex)
        if pattern is None or pattern == SAFE_TEXT_PATTERN:
            return st.text(safe_chars, min_size=schema.get("minLength", 0), max_size=most)
        return st.from_regex(pattern, fullmatch=True)
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {}), defs), max_size=min(schema.get("maxItems", 3), 3)
        )
    if kind == "object":
        if "properties" not in schema:
            values = schema.get("additionalProperties")
            if isinstance(values, dict) and values:
                return st.dictionaries(
                    st.text(safe_chars, max_size=10), from_schema(values, defs), max_size=3
                )
            return st.dictionaries(st.text(safe_chars, max_size=10), free_json, max_size=3)
        required = set(schema.get("required", ()))
        fields = {name: from_schema(sub, defs) for name, sub in schema["properties"].items()}
        optional = [name for name in fields if name not in required]
        return st.fixed_dictionaries(
            {name: fields[name] for name in required},
            optional={name: fields[name] for name in optional},
        )
    return free_json


def documents(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    schema = model.model_json_schema()
    return from_schema(schema, schema.get("$defs", {}))


MODELS: dict[str, type[BaseModel]] = {
    **{f"body.{k}": m for k, m in KINDS.items()},
    "gateway-state": GatewayState,
    "ack": Ack,
    "evidence-header": EvidenceHeader,
    "evidence-receipt": EvidenceReceipt,
}


def _valid(model: type[BaseModel], doc: dict[str, Any]) -> BaseModel | None:
    try:
        return model.model_validate(doc)
    except ValidationError:
        return None  # cross-field rules the schema cannot say (a few models have them)


# -- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_round_trips_through_json(name: str) -> None:
    model = MODELS[name]
    accepted = 0

    @SETTINGS
    @given(doc=documents(model))
    def check(doc: dict[str, Any]) -> None:
        nonlocal accepted
        first = _valid(model, doc)
        if first is None:
            return
        accepted += 1
        text = first.model_dump_json()
        assert "\\u0000" not in text
        assert model.model_validate_json(text) == first
        # what central does with a stored body: JSON → dict → model
        assert model.model_validate(json.loads(text)) == first

    check()
    assert accepted > 0, f"no generated {name} document was valid: schema and model disagree"


# -- refusals --------------------------------------------------------------------------------


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(doc, dict):
        return [leaf for k, v in doc.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(doc, list):
        return [leaf for i, v in enumerate(doc) for leaf in _leaves(v, (*path, i))]
    return [(path, doc)]


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replace(doc[path[0]], path[1:], value)
    return copy


FREE_FORM = {"health"}  # free JSON objects: any type goes, only range and text are bounded


def _poison(value: Any, free: bool = False) -> list[Any]:
    """Values that must be refused in place of ``value`` (whatever the field)."""
    if isinstance(value, bool):
        return [] if free else ["true"]
    if isinstance(value, int):
        return [2**63, -(2**63) - 1] + ([] if free else [str(value)])
    if isinstance(value, float):
        return [math.nan, math.inf] + ([] if free else [str(value)])
    if isinstance(value, str):
        return [value + "\x00", "\x1b" + value, value[:1] + "\n" + value[1:], value + "\x85"]
    return []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_out_of_range_strict_type_and_control_characters_are_refused(name: str) -> None:
    model = MODELS[name]

    @SETTINGS
    @given(doc=documents(model), data=st.data())
    def check(doc: dict[str, Any], data: st.DataObject) -> None:
        if _valid(model, doc) is None:
            return
        leaves = [(p, v, p[0] in FREE_FORM) for p, v in _leaves(doc)]
        leaves = [leaf for leaf in leaves if _poison(leaf[1], leaf[2])]
        if not leaves:
            return
        path, value, free = data.draw(st.sampled_from(leaves))
        bad = data.draw(st.sampled_from(_poison(value, free)))
        with pytest.raises(ValidationError):
            model.model_validate(_replace(doc, path, bad))

    check()


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        doc = {"x": doc}
    return doc


def _record(**change: Any) -> dict[str, Any]:
    doc = {
        "seq": 5,
        "utc": "2026-11-21T01:00:00Z",
        "mono_ns": 1,
        "boot": BOOT,
        "synced": True,
        "kind": "gen.sample",
        "body": {"n": 1, "run": "r"},
    }
    doc.update(change)
    return doc


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 2**63},
        {"seq": "5"},
        {"seq": True},
        {"mono_ns": -1},
        {"mono_ns": 2**63},
        {"mono_ns": 1.0},
        {"synced": 1},
        {"utc": "0001-01-01T00:00:00Z"},
        {"utc": "9999-12-31T23:59:59Z"},
        {"utc": "1969-12-31T23:59:59Z"},
        {"utc": 1764000000},
        {"utc": "2026-11-21T01:00:00"},
        {"kind": "gen.sample\x00"},
        {"body": []},
    ],
)
def test_event_record_refuses(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EventRecord.model_validate(_record(**change))


@pytest.mark.parametrize(
    "body",
    [
        {"n": 1, "run": "r\x00"},
        {"n": float("nan"), "run": "r"},
        {"n": 2**63, "run": "r"},
        {"n": "1", "run": "r"},
        {"n": True, "run": "r"},
        {"n": 1, "run": "r", "k\x00": 1},
        {"n": 1, "run": "r", "pad": "x" * 4097},
        {"n": 1, "run": "r", "x": _nested(2000)},
    ],
)
def test_a_body_is_checked_against_its_kind_alone(body: dict[str, Any]) -> None:
    # the envelope carries it (the rest of the batch is not held up) …
    EventRecord.model_validate(_record(body=body))
    # … and its kind's model refuses it, so central quarantines this one event
    with pytest.raises(ValidationError):
        validate_body("gen.sample", body)


def test_times_at_the_window_edges() -> None:
    EventRecord.model_validate(_record(utc="1970-01-01T00:00:00Z"))  # a Pi without a clock
    EventRecord.model_validate(_record(utc="2199-12-31T23:59:59.999999Z"))
    with pytest.raises(ValidationError):
        EventRecord.model_validate(_record(utc="2200-01-01T00:00:00Z"))


def test_free_objects_are_bounded_in_depth_and_never_recurse_out() -> None:
    health = {
        "hall": "H1",
        "gateway": "gw1",
        "boot": BOOT,
        "online": True,
        "utc": "2026-11-21T01:00:00Z",
        "synced": True,
    }
    GatewayState.model_validate({**health, "health": _nested(MAX_JSON_DEPTH)})
    deep = "[" * 5000 + "]" * 5000
    payload = json.dumps(
        {
            "v": 1,
            "hall": "H1",
            "gateway": "gw1",
            "sender_boot": BOOT,
            "events": [_record(body={"x": "DEEP"})],
        }
    ).replace('"DEEP"', deep)
    with pytest.raises(ValidationError):  # a validation error, not a RecursionError
        EventBatch.model_validate_json(payload)
    with pytest.raises(ValidationError):
        GatewayState.model_validate({**health, "health": _nested(MAX_JSON_DEPTH + 1)})


def test_stamp_plausibility_is_relative_to_the_receive_time() -> None:
    now = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    assert stamp_plausible(now - timedelta(days=30), now)  # a hall cut off for a month
    assert stamp_plausible(now + timedelta(minutes=5), now)
    assert not stamp_plausible(now + timedelta(days=1), now)
    assert not stamp_plausible(datetime(1970, 1, 1, tzinfo=UTC), now)


# -- device text -------------------------------------------------------------------------------

GB2312_TEXT = st.text(
    st.sampled_from("不动产登记社保医保公积金户籍出入境窗口办理"), min_size=2, max_size=12
)


@given(
    raw=st.binary(max_size=200),
    encoding=st.sampled_from(["utf-8", "gb2312"]),
    limit=st.integers(1, 100),
)
@settings(max_examples=300, deadline=None)
def test_device_text_is_always_storable(raw: bytes, encoding: str, limit: int) -> None:
    text, altered = device_text(raw, encoding, limit)
    assert not CONTROL.search(text) and len(text) <= limit
    text.encode("utf-8")  # no lone surrogates
    if not altered and encoding == "utf-8":
        assert text == raw.decode("utf-8")


@given(words=GB2312_TEXT, junk=st.binary(max_size=4))
@settings(max_examples=100, deadline=None)
def test_text_in_the_configured_encoding_reads_right(words: str, junk: bytes) -> None:
    assert device_text(words.encode("utf-8"), "utf-8", 100) == (words, False)
    assert device_text(words.encode("gb2312"), "gb2312", 100) == (words, False)
    dirty, altered = device_text(words.encode() + b"\x00" + junk, "utf-8", 100)
    assert altered and dirty.startswith(words + "\ufffd")


def test_a_gb2312_name_on_a_unit_set_to_utf8_is_read_as_gb18030() -> None:
    assert device_text("不动产登记".encode("gb2312"), "utf-8", 100) == ("不动产登记", True)
    assert device_text("不动产登记".encode(), "gb2312", 100)[1] is True  # raw kept


def test_a_counter_past_64_bits_is_refused_not_turned_into_a_float() -> None:
    body = {"port": "/dev/ttyUSB0", "device": "ff68", "connected": True}
    assert BusStats.model_validate({**body, "counters": {"rx": 2**63 - 1, "ms": 1.5}})
    with pytest.raises(ValidationError):
        BusStats.model_validate({**body, "counters": {"rx": 2**63}})
