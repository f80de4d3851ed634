"""When a message may go out, and how long a failed one waits (pure functions).

- Backoff: exponential from ``backoff_s``, capped, with jitter (half fixed, half random) so that
  messages failed together by one outage do not all come back in the same second.
- Quiet hours: no SMS to citizens between 21:00 and 08:00 local time (configurable); what is
  due then waits for the end. Staff and leaders' warnings pass unless the site says otherwise.
- Rate limit: at most N SMS to one recipient per hour; the excess is held (kept, counted, not
  sent), because an applicant flooded with messages complains and a provider blocks the sender.
"""

from __future__ import annotations

import datetime as dt
import random
import re

from central.outbox.config import QuietHours
from central.rules.workdays import BUSINESS_TZ

_MOBILE = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_LONG_DIGITS = re.compile(r"(?<!\d)(\d{3})\d{4,}(\d{2})(?!\d)")
ERROR_CHARS = 200


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay after the ``attempts``-th failed try (1 = the first)."""
    delay = min(cap_s, base_s * float(2 ** max(0, attempts - 1)))
    return delay / 2 + rng.random() * delay / 2


def _quiet_at(moment: dt.time, quiet: QuietHours) -> bool:
    if quiet.start == quiet.end:
        return False
    if quiet.start < quiet.end:
        return quiet.start <= moment < quiet.end
    return moment >= quiet.start or moment < quiet.end  # across midnight


def quiet_until(
    now: dt.datetime, audience: str, channel: str, quiet: QuietHours
) -> dt.datetime | None:
    """None if the message may go now, else when quiet hours end (UTC)."""
    if channel != "sms" or audience == "platform":
        return None
    if audience != "citizen" and quiet.staff_allowed:
        return None
    local = now.astimezone(BUSINESS_TZ)
    if not _quiet_at(local.time().replace(tzinfo=None), quiet):
        return None
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += dt.timedelta(days=1)
    return end.astimezone(dt.UTC)


def over_rate(sent_last_hour: int, per_hour: int) -> bool:
    return sent_last_hour >= per_hour


def mask_phone(phone: str) -> str:
    """138****1234: what a log or an error may show of a number."""
    digits = phone.lstrip("+")
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 7 else "****"


def scrub(text: str) -> str:
    """One line of at most ERROR_CHARS, phone numbers and other long digit runs masked."""
    line = " ".join(text.split())
    line = _MOBILE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", line)
    line = _LONG_DIGITS.sub(lambda m: f"{m.group(1)}****{m.group(2)}", line)
    return line[:ERROR_CHARS]


__all__ = ["backoff_s", "mask_phone", "over_rate", "quiet_until", "scrub"]
