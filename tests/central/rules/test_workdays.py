"""The working-day calendar: chinese-calendar, site overrides, and the unknown-year error."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import central.rules
from central.rules.timelimit import CaseClock, deadline
from central.rules.workdays import (
    BUSINESS_TZ,
    CalendarConfigError,
    CalendarOverrides,
    UnknownYearError,
    WorkCalendar,
    business_date,
    load_overrides,
    parse_overrides,
)

D = dt.date
CAL = WorkCalendar()

# An invented 2027 schedule for the tests (the real one is published in November 2026):
# 元旦 Fri 01-01 … Sun 01-03; 春节 Fri 02-05 … Thu 02-11; Saturday 02-13 worked.
SCHEDULE_2027_YAML = """\
source: test schedule, not the official one
years: [2027]
holidays:
  - {name: 元旦, start: 2027-01-01, end: 2027-01-03}
  - name: 春节
    start: 2027-02-05
    end: 2027-02-11
workdays:
  - {name: 春节调休, date: 2027-02-13}
"""

SCHEDULE_2027_JSON = """{
  "years": [2027],
  "holidays": [{"name": "元旦", "start": "2027-01-01", "end": "2027-01-03"},
               {"name": "春节", "start": "2027-02-05", "end": "2027-02-11"}],
  "workdays": [{"name": "春节调休", "date": "2027-02-13"}]
}
"""


def test_library_knows_2026_national_day() -> None:
    assert [d.day for d in CAL.workdays_in(D(2026, 9, 28), D(2026, 10, 12))] == [
        28, 29, 30, 8, 9, 10, 12
    ]  # fmt: skip
    assert CAL.day_info(D(2026, 10, 10)).name == "National Day"  # the 调休 Saturday
    assert CAL.day_info(D(2026, 9, 20)).workday  # the 调休 Sunday
    assert CAL.day_info(D(2026, 10, 1)).source == "chinese-calendar"


def test_add_workdays_does_not_count_the_start_day() -> None:
    assert CAL.add_workdays(D(2026, 9, 30), 0) == D(2026, 9, 30)
    assert CAL.add_workdays(D(2026, 9, 30), 1) == D(2026, 10, 8)
    assert CAL.add_workdays(D(2026, 10, 3), 1) == D(2026, 10, 8)  # start on a holiday
    assert CAL.add_workdays(D(2026, 10, 9), 2) == D(2026, 10, 12)  # Sat 10-10 worked
    assert CAL.add_workdays(D(2026, 10, 8), -1) == D(2026, 9, 30)
    assert CAL.next_workday(D(2026, 9, 24)) == D(2026, 9, 28)  # over 中秋
    assert CAL.workday_on_or_after(D(2026, 10, 11)) == D(2026, 10, 12)
    assert CAL.workday_on_or_after(D(2026, 10, 12)) == D(2026, 10, 12)


def test_workdays_between() -> None:
    assert CAL.workdays_between(D(2026, 9, 30), D(2026, 10, 8)) == 1
    assert CAL.workdays_between(D(2026, 9, 30), D(2026, 10, 7)) == 0
    assert CAL.workdays_between(D(2026, 10, 8), D(2026, 9, 30)) == -1  # [09-30, 10-08)
    assert CAL.workdays_between(D(2026, 10, 8), D(2026, 10, 1)) == 0
    assert CAL.workdays_between(D(2026, 10, 8), D(2026, 10, 8)) == 0


@settings(max_examples=150, deadline=None)
@given(
    start=st.dates(min_value=D(2025, 1, 1), max_value=D(2026, 10, 31)),
    n=st.integers(min_value=-40, max_value=40),
)
def test_add_and_between_are_inverse(start: dt.date, n: int) -> None:
    end = CAL.add_workdays(start, n)
    assert CAL.workdays_between(start, end) == n
    if n:
        assert CAL.is_workday(end)


def test_datetimes_are_refused() -> None:
    with pytest.raises(TypeError, match="business_date"):
        CAL.is_workday(dt.datetime(2026, 10, 8, 9))


def test_business_date_is_shanghai() -> None:
    assert business_date(dt.datetime(2026, 9, 30, 16, 30, tzinfo=dt.UTC)) == D(2026, 10, 1)
    assert business_date(dt.datetime(2026, 9, 30, 23, 59, tzinfo=BUSINESS_TZ)) == D(2026, 9, 30)
    with pytest.raises(ValueError, match="naive"):
        business_date(dt.datetime(2026, 9, 30, 12))


def test_2027_without_override_is_a_clear_error() -> None:
    with pytest.raises(UnknownYearError) as err:
        CAL.is_workday(D(2027, 1, 4))
    text = str(err.value)
    assert "2027 年节假日安排未知" in text
    assert "assume_weekends" in text and "override" in text
    assert err.value.year == 2027
    # a limit running over New Year fails the same way, rather than guessing
    clock = CaseClock(accepted_at=dt.datetime(2026, 12, 30, 10, tzinfo=BUSINESS_TZ), legal_days=3)
    with pytest.raises(UnknownYearError):
        deadline(clock, CAL)


@pytest.mark.parametrize(("name", "text"), [("site.yaml", SCHEDULE_2027_YAML),
                                            ("site.json", SCHEDULE_2027_JSON)])  # fmt: skip
def test_2027_with_an_override_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    cal = WorkCalendar(load_overrides(path))
    # hand: 12-31 (1), 01-01…03 元旦, 01-04 (2), 01-05 (3)
    clock = CaseClock(accepted_at=dt.datetime(2026, 12, 30, 10, tzinfo=BUSINESS_TZ), legal_days=3)
    assert deadline(clock, cal) == D(2027, 1, 5)
    assert cal.add_workdays(D(2027, 2, 4), 1) == D(2027, 2, 12)  # over 春节
    assert cal.add_workdays(D(2027, 2, 12), 1) == D(2027, 2, 13)  # the 调休 Saturday
    assert cal.add_workdays(D(2027, 2, 13), 1) == D(2027, 2, 15)  # Sunday rests
    info = cal.day_info(D(2027, 2, 8))
    assert (info.workday, info.name, info.source) == (False, "春节", "override")
    assert cal.day_info(D(2027, 3, 1)).source == "override"  # an ordinary day of 2027
    assert cal.day_info(D(2026, 10, 10)).source == "chinese-calendar"
    with pytest.raises(UnknownYearError):
        cal.is_workday(D(2028, 1, 3))


def test_override_wins_over_the_library_in_a_known_year() -> None:
    regional = CalendarOverrides.model_validate(
        {"holidays": [{"name": "地方节日（测试）", "date": "2026-10-12"}]}
    )
    cal = WorkCalendar(regional)
    assert CAL.is_workday(D(2026, 10, 12))
    assert not cal.is_workday(D(2026, 10, 12))
    assert cal.add_workdays(D(2026, 10, 10), 1) == D(2026, 10, 13)
    with pytest.raises(UnknownYearError):  # 2027 still unknown: no 'years' given
        cal.is_workday(D(2027, 1, 4))


def test_declaring_a_year_the_library_knows_does_not_replace_it() -> None:
    # as when the library is upgraded and learns a year the site file already declares
    cal = WorkCalendar(
        CalendarOverrides.model_validate(
            {"years": [2026], "holidays": [{"name": "地方节日（测试）", "date": "2026-10-12"}]}
        )
    )
    assert not cal.is_workday(D(2026, 10, 1))  # National Day still from the library
    assert cal.is_workday(D(2026, 10, 10))  # and its 调休 Saturday
    assert not cal.is_workday(D(2026, 10, 12))  # the site's entry still applies


def test_assume_weekends_is_explicit_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkCalendar(assume_weekends=True)
    with caplog.at_level(logging.WARNING, logger="central.rules.workdays"):
        # the guess takes 元旦 (a Friday) for a working day: why it is off by default
        assert cal.add_workdays(D(2026, 12, 31), 1) == D(2027, 1, 1)
        assert cal.is_workday(D(2027, 1, 5))
    assert cal.day_info(D(2027, 1, 1)).source == "assumed"
    assert cal.assumed_years == {2027}
    warnings = [r for r in caplog.records if "assuming Mon–Fri" in r.getMessage()]
    assert len(warnings) == 1  # once per year, not once per date
    assert CAL.assumed_years == frozenset()


def test_the_packaged_example_file_is_valid() -> None:
    example = Path(central.rules.__file__).parent / "calendar-overrides.example.yaml"
    cal = WorkCalendar(load_overrides(example))
    assert cal.is_workday(D(2099, 1, 18))  # its 调休 Sunday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # entry in a year nobody knows and 'years' does not declare
        ("holidays:\n  - {name: 元旦, date: 2027-01-01}\n", "does not declare"),
        # end before start, reported at the entry's line
        (
            "years: [2027]\nholidays:\n  - name: 春节\n    start: 2027-02-11\n"
            "    end: 2027-02-05\n",
            "site.yaml:3: holidays.0",
        ),
        # a date listed as both
        (
            "years: [2027]\nholidays:\n  - {name: a, date: 2027-02-13}\n"
            "workdays:\n  - {name: b, date: 2027-02-13}\n",
            "listed twice",
        ),
        ("years: [2027]\nholidays:\n  - {name: x, date: 2027-13-01}\n", "site.yaml:3"),
        ("years: [2027]\nholiday: []\n", "site.yaml:2: holiday: Extra inputs"),
        ("years: [2027]\nholidays:\n  - {date: 2027-01-01}\n", "holidays.0.name"),
        ("years: [2027]\nholidays:\n  - {name: x, start: 2027-01-01}\n", "both start and end"),
        ("years: [2027]\nholidays:\n  - {name: x, start: 2027-01-01, end: 2027-03-01}\n",
         "implausible"),
        ("- 2027-01-01\n", "top level must be a mapping"),
        ("years: [2027\n", "cannot parse"),
    ],
)  # fmt: skip
def test_bad_files_give_clear_errors(text: str, expected: str) -> None:
    with pytest.raises(CalendarConfigError) as err:
        parse_overrides(text, origin="site.yaml")
    assert expected in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarConfigError, match="cannot read"):
        load_overrides(tmp_path / "nope.yaml")


def test_empty_file_is_no_override(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert load_overrides(path) == CalendarOverrides()
