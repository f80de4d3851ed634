"""How each channel delivers: JSON POST (upper platform, webhook, SMS gateway), SMTP, and a
file-drop directory. Every adapter answers per message: None (delivered) or a ``SendError``
saying whether trying again can help.

Every HTTP request carries the message's ``Idempotency-Key`` (percent-encoded where the key is
not ASCII): a receiver that processed a
message but whose answer was lost (a timeout, a restart) sees the same key again and can
ignore the repeat. Errors never quote a phone number, an address or a response body."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from central.outbox.config import Contact, FileDrop, HttpTarget, SmsTarget, SmtpTarget
from central.outbox.store import Message
from central.outbox.templates import render
from hallkit.atomicfile import write_public

RETRYABLE_STATUS = frozenset({408, 425, 429})


def header_key(key: str) -> str:
    """The idempotency key as a header carries it: ASCII, so a key naming a department (公安局)
    is percent-encoded, the same way every time."""
    return quote(key, safe=":/@+-._~")


class SendError(Exception):
    def __init__(self, why: str, *, permanent: bool = False) -> None:
        super().__init__(why)
        self.permanent = permanent


Outcome = SendError | None


class Adapter(Protocol):
    async def deliver(self, messages: Sequence[Message]) -> list[Outcome]: ...

    async def close(self) -> None: ...


def _http_error(response: httpx.Response) -> SendError | None:
    code = response.status_code
    if 200 <= code < 300:
        return None
    permanent = 400 <= code < 500 and code not in RETRYABLE_STATUS
    return SendError(f"HTTP {code}", permanent=permanent)


class _Poster:
    """One pooled client for a target; each message its own POST, sent concurrently."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.client = httpx.AsyncClient(timeout=target.timeout_s)

    def body(self, message: Message) -> Any:
        return message.payload

    async def post(self, message: Message) -> Outcome:
        headers = {"Idempotency-Key": header_key(message.idem_key)}
        if self.target.auth_header is not None:
            headers["Authorization"] = self.target.auth_header.get_secret_value()
        try:
            response = await self.client.post(
                self.target.url, json=self.body(message), headers=headers
            )
        except SendError as exc:
            return exc
        except httpx.TimeoutException:
            return SendError("timed out")
        except httpx.HTTPError as exc:
            return SendError(type(exc).__name__)
        return _http_error(response)

    async def deliver(self, messages: Sequence[Message]) -> list[Outcome]:
        return list(await asyncio.gather(*(self.post(m) for m in messages)))

    async def close(self) -> None:
        await self.client.aclose()


class PlatformHttp(_Poster):
    """The upper 好差评 platform: the record as the body."""


class Webhook(_Poster):
    def body(self, message: Message) -> Any:
        params = message.payload.get("params", {})
        words = render(message.payload["event"], params)
        return {
            "event": message.payload["event"],
            "subject": words.subject,
            "text": words.text,
            "recipient": message.recipient,
            "params": params,
        }


def _contact(contacts: dict[str, Contact], recipient: str) -> Contact:
    found = contacts.get(recipient)
    if found is None:
        raise SendError("收件人未配置 / recipient not in outbox.contacts", permanent=True)
    return found


class Sms(_Poster):
    """An HTTP SMS API: ``{phone, sign_name, template_id, params}``."""

    def __init__(self, target: SmsTarget, contacts: dict[str, Contact]) -> None:
        super().__init__(target)
        self.sms = target
        self.contacts = contacts

    def body(self, message: Message) -> Any:
        phone = message.payload.get("phone") or _contact(self.contacts, message.recipient).phone
        if phone is None:
            raise SendError("收件人无手机号 / recipient has no phone", permanent=True)
        event = message.payload["event"]
        return {
            "phone": phone,
            "sign_name": self.sms.signature,
            "template_id": self.sms.templates.get(event, self.sms.template_id),
            "params": message.payload.get("params", {}),
        }


class Email:
    """SMTP through the standard library, in a thread; the Message-ID is derived from the
    idempotency key, so a mail sent twice after a lost answer threads as one."""

    def __init__(self, target: SmtpTarget, contacts: dict[str, Contact]) -> None:
        self.target = target
        self.contacts = contacts

    def _send(self, message: Message) -> None:
        to = _contact(self.contacts, message.recipient).email
        if to is None:
            raise SendError("收件人无邮箱 / recipient has no e-mail", permanent=True)
        words = render(message.payload["event"], message.payload.get("params", {}))
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.target.from_addr, to, words.subject
        digest = hashlib.sha256(message.idem_key.encode()).hexdigest()[:32]
        mail["Message-ID"] = f"<{digest}@hallwatch.outbox>"
        mail["Idempotency-Key"] = header_key(message.idem_key)
        mail.set_content(words.text)
        t = self.target
        with smtplib.SMTP(t.host, t.port, timeout=t.timeout_s) as smtp:
            if t.starttls:
                smtp.starttls()
            if t.username and t.password is not None:
                smtp.login(t.username, t.password.get_secret_value())
            smtp.send_message(mail)

    async def _one(self, message: Message) -> Outcome:
        try:
            await asyncio.to_thread(self._send, message)
        except SendError as exc:
            return exc
        except smtplib.SMTPRecipientsRefused:
            return SendError("SMTP recipient refused", permanent=True)
        except (OSError, smtplib.SMTPException) as exc:
            return SendError(f"SMTP {type(exc).__name__}")
        return None

    async def deliver(self, messages: Sequence[Message]) -> list[Outcome]:
        return [await self._one(m) for m in messages]

    async def close(self) -> None:
        return None


class PlatformFile:
    """One JSON-lines file per batch, written whole (temp file, fsync, rename) into the drop
    directory; each line has its idempotency key, so a batch written again after a crash
    between the rename and the database's note of it is recognised by the reader."""

    def __init__(self, target: FileDrop) -> None:
        self.directory = target.directory

    def _write(self, messages: Sequence[Message]) -> None:
        lines = [
            json.dumps({"idempotency_key": m.idem_key, **m.payload}, ensure_ascii=False)
            for m in messages
        ]
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"haocha-{stamp}-{messages[0].id}-{messages[-1].id}.jsonl"
        write_public(self.directory / name, ("\n".join(lines) + "\n").encode())

    async def deliver(self, messages: Sequence[Message]) -> list[Outcome]:
        if not messages:
            return []
        try:
            await asyncio.to_thread(self._write, messages)
        except OSError as exc:
            return [SendError(f"file drop: {exc.strerror}")] * len(messages)
        return [None] * len(messages)

    async def close(self) -> None:
        return None


__all__ = [
    "Adapter",
    "Email",
    "Outcome",
    "PlatformFile",
    "PlatformHttp",
    "SendError",
    "Sms",
    "Webhook",
]
