"""The outbox's configuration (``outbox:`` in central.yaml): delivery pacing, quiet hours, rate
limits, the adapters of each channel and the people warnings go to.

Phone numbers and addresses live here and nowhere else: a message names its recipient by a
reference (``staff:000123``, ``leader:公安局``), resolved when it is sent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpTarget(_Section):
    """A JSON POST receiver: the upper platform, a webhook or the SMS gateway."""

    url: str = Field(pattern=r"^https?://", description="where to POST")
    auth_header: SecretStr | None = Field(
        default=None, description="the Authorization header's value; a secret: never logged"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class SmsTarget(HttpTarget):
    """An HTTP SMS API: one POST per message with the template id, signature and parameters."""

    template_id: str = Field(default="", description="the provider's template for every event")
    templates: dict[str, str] = Field(
        default_factory=dict, description="event → the provider's template id, if they differ"
    )
    signature: str = Field(default="政务服务中心", description="短信签名")


class SmtpTarget(_Section):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    from_addr: str = Field(description="From: address")
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_s: float = Field(default=20.0, gt=0, le=120)


class FileDrop(_Section):
    directory: Path = Field(description="one JSON-lines file per batch appears here, whole")


class QuietHours(_Section):
    """No SMS to citizens between ``start`` and ``end`` (local time, Asia/Shanghai); messages
    due then wait for ``end``."""

    start: dt.time = dt.time(21, 0)
    end: dt.time = dt.time(8, 0)
    staff_allowed: bool = Field(
        default=True, description="warnings to staff and leaders may go out in quiet hours"
    )


class Contact(_Section):
    """How to reach one person or role; either or both."""

    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{5,15}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")


class OutboxConfig(_Section):
    enabled: bool = Field(default=True, description="run the delivery worker in this process")
    poll_s: float = Field(default=1.0, gt=0, le=60, description="pause when nothing is due")
    batch: int = Field(default=50, ge=1, le=1000, description="messages claimed at a time")
    lease_s: float = Field(
        default=60.0, ge=1, le=3600, description="a claimed message is retaken after this"
    )
    max_attempts: int = Field(default=12, ge=1, le=100, description="then the message fails")
    backoff_s: float = Field(default=5.0, gt=0, description="the first retry's delay")
    backoff_max_s: float = Field(default=3600.0, gt=0, description="the longest delay")
    quiet_hours: QuietHours = QuietHours()
    sms_per_recipient_per_hour: int = Field(
        default=3, ge=1, description="more SMS to one recipient within an hour are held"
    )
    applicant_sms: bool = Field(
        default=False,
        description="progress SMS (受理, 办结) to applicants whose case carries sms_consent",
    )
    platform_http: HttpTarget | None = None
    platform_file: FileDrop | None = None
    sms: SmsTarget | None = None
    email: SmtpTarget | None = None
    webhook: HttpTarget | None = None
    contacts: dict[str, Contact] = Field(
        default_factory=dict,
        description="recipient reference (staff:<工号>, leader:<部门>, supervisor:<name>) → "
        "phone and e-mail",
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> OutboxConfig:
        for target in (self.platform_http, self.sms, self.webhook, self.email):
            if target is not None and target.timeout_s * 2 > self.lease_s:
                raise ValueError(
                    "outbox.lease_s 须至少为发送超时的两倍 / lease_s must be at least twice a "
                    "channel's timeout_s, or a slow send is retaken while it runs"
                )
        return self
