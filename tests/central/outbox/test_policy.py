"""Plain values: backoff, quiet hours, the rate limit, masking, templates, the file drop."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from pathlib import Path

import pytest

from central.outbox.adapters import PlatformFile, SendError, _http_error
from central.outbox.config import FileDrop, OutboxConfig, QuietHours
from central.outbox.policy import backoff_s, mask_phone, over_rate, quiet_until, scrub
from central.outbox.store import Message
from central.outbox.templates import TEMPLATES, render
from central.outbox.warnings import recipients, routes
from central.rules.timelimit import LadderStage

BJ = dt.timezone(dt.timedelta(hours=8))


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    for attempts, full in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (30, 60.0)]:
        for _ in range(20):
            assert full / 2 <= backoff_s(attempts, 2.0, 60.0, rng) <= full
    spread = {round(backoff_s(4, 2.0, 60.0, rng), 3) for _ in range(20)}
    assert len(spread) > 10  # jittered, not one value


@pytest.mark.parametrize(
    ("local", "audience", "expected"),
    [
        (dt.datetime(2026, 12, 7, 22, 30, tzinfo=BJ), "citizen", dt.datetime(2026, 12, 8, 8, 0)),
        (dt.datetime(2026, 12, 8, 7, 59, tzinfo=BJ), "citizen", dt.datetime(2026, 12, 8, 8, 0)),
        (dt.datetime(2026, 12, 7, 21, 0, tzinfo=BJ), "citizen", dt.datetime(2026, 12, 8, 8, 0)),
        (dt.datetime(2026, 12, 7, 20, 59, tzinfo=BJ), "citizen", None),
        (dt.datetime(2026, 12, 8, 8, 0, tzinfo=BJ), "citizen", None),
        (dt.datetime(2026, 12, 7, 23, 0, tzinfo=BJ), "staff", None),  # staff_allowed
        (dt.datetime(2026, 12, 7, 23, 0, tzinfo=BJ), "platform", None),
    ],
)
def test_quiet_hours(local: dt.datetime, audience: str, expected: dt.datetime | None) -> None:
    found = quiet_until(local.astimezone(dt.UTC), audience, "sms", QuietHours())
    assert (found and found.astimezone(BJ).replace(tzinfo=None)) == expected


def test_quiet_hours_options() -> None:
    night = dt.datetime(2026, 12, 7, 23, 0, tzinfo=BJ)
    strict = QuietHours(staff_allowed=False)
    assert quiet_until(night, "staff", "sms", strict) is not None
    assert quiet_until(night, "citizen", "email", strict) is None  # SMS only
    day_quiet = QuietHours(start=dt.time(12, 0), end=dt.time(13, 30))
    noon = dt.datetime(2026, 12, 7, 12, 15, tzinfo=BJ)
    assert quiet_until(noon, "citizen", "sms", day_quiet) == dt.datetime(
        2026, 12, 7, 13, 30, tzinfo=BJ
    )
    assert quiet_until(night, "citizen", "sms", day_quiet) is None


def test_rate_limit_and_masking() -> None:
    assert [over_rate(n, 3) for n in range(5)] == [False, False, False, True, True]
    assert mask_phone("13812345678") == "138****5678"
    line = scrub("refused 13812345678 and +8613900001111\nsecond line; id 110101199003077777")
    assert "13812345678" not in line and "13900001111" not in line and "\n" not in line
    assert "138****5678" in line and "19900307" not in line
    assert len(scrub("x" * 500)) == 200


def test_http_answers() -> None:
    import httpx

    def outcome(code: int) -> SendError | None:
        return _http_error(httpx.Response(code))

    assert outcome(200) is None and outcome(201) is None
    permanent = {code: getattr(outcome(code), "permanent", None) for code in (500, 503, 429, 408)}
    assert permanent == dict.fromkeys((500, 503, 429, 408), False)
    final = {code: getattr(outcome(code), "permanent", None) for code in (400, 401, 404)}
    assert final == dict.fromkeys((400, 401, 404), True)


def test_templates_render_chinese_with_gaps_marked() -> None:
    words = render("ladder.red_card", {"case_no": "C1", "item_name": "营业执照", "days_over": 4})
    assert "C1" in words.text and "营业执照" in words.text and "4 个工作日" in words.text
    assert "部门：—" in words.text and words.subject.startswith("【红牌】")
    assert all(
        key.split(".")[0] in ("ladder", "applicant", "workorder", "complaint") for key in TEMPLATES
    )


def test_warning_recipients_and_routes() -> None:
    assert recipients(LadderStage.YELLOW_LIGHT, "000123", "公安局") == ["staff:000123"]
    assert recipients(LadderStage.RED_CARD, "000123", "公安局") == [
        "staff:000123",
        "leader:公安局",
    ]
    assert recipients(LadderStage.RED_LIGHT, None, "公安局") == ["leader:公安局"]
    config = OutboxConfig.model_validate(
        {
            "sms": {"url": "http://127.0.0.1:9/sms"},
            "contacts": {"staff:000123": {"phone": "13812345678", "email": "a@b.cn"}},
        }
    )
    # no e-mail channel configured, the leader has no contact: one SMS only
    assert [(c.value, r) for c, r in routes(config, ["staff:000123", "leader:公安局"])] == [
        ("sms", "staff:000123")
    ]


def test_file_drop_writes_one_whole_file_per_batch(tmp_path: Path) -> None:
    drop = PlatformFile(FileDrop(directory=tmp_path / "drop"))
    batch = [
        Message(i, "platform_file", f"haocha:gw:{i}:1", "haocha.record", "platform", "platform",
                {"record_id": f"gw-{i}", "level_name": "满意"}, 1)
        for i in range(1, 4)
    ]  # fmt: skip
    assert asyncio.run(drop.deliver(batch)) == [None, None, None]
    files = list((tmp_path / "drop").iterdir())
    assert len(files) == 1 and files[0].name.endswith("-1-3.jsonl")  # no temp file left over
    lines = [json.loads(x) for x in files[0].read_text(encoding="utf-8").splitlines()]
    assert [x["idempotency_key"] for x in lines] == [f"haocha:gw:{i}:1" for i in range(1, 4)]
    assert lines[0]["level_name"] == "满意"


def test_lease_must_outlast_a_send() -> None:
    with pytest.raises(ValueError, match="lease_s"):
        OutboxConfig.model_validate(
            {"lease_s": 10, "webhook": {"url": "http://127.0.0.1:9/", "timeout_s": 6}}
        )
