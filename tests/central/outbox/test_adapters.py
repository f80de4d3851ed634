"""The webhook and e-mail adapters against local receivers (no database): the rendered Chinese
text, the idempotency key carried, the address looked up from the contacts, never stored."""

from __future__ import annotations

import asyncio
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import ClassVar

from central.outbox.adapters import Email, Webhook, header_key
from central.outbox.config import Contact, HttpTarget, SmtpTarget
from central.outbox.store import Message
from tests.central.outbox.fakes import FakeReceiver, serve

WARNING = Message(
    7, "email", "ladder:C1:red_card:2026-09-18T04:00:00+00:00:leader:公安局", "ladder.red_card",
    "staff", "leader:公安局",
    {"event": "ladder.red_card", "params": {"case_no": "C1", "item_name": "营业执照",
                                            "department": "公安局", "days_over": 6}},
    1,
)  # fmt: skip


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: every command accepted, each message kept."""

    received: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 fake ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                type(self).received.append(body)
                self.wfile.write(b"250 kept\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@contextmanager
def smtp_server() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_email_and_webhook_carry_the_rendered_warning() -> None:
    contacts = {"leader:公安局": Contact(email="leader@example.gov.cn")}
    with smtp_server() as port:
        email = Email(
            SmtpTarget(host="127.0.0.1", port=port, from_addr="jc@example.gov.cn"), contacts
        )
        assert asyncio.run(email.deliver([WARNING])) == [None]
    mail = message_from_bytes(_Smtp.received[-1])
    assert mail["To"] == "leader@example.gov.cn"
    assert str(make_header(decode_header(mail["Subject"]))).startswith("【红牌】")
    key = header_key(WARNING.idem_key)  # the department's name percent-encoded: ASCII
    assert key.isascii() and "%E5%85%AC" in key
    assert str(make_header(decode_header(mail["Idempotency-Key"]))) == key
    raw = mail.get_payload(decode=True)
    assert isinstance(raw, bytes)
    text = raw.decode("utf-8")
    assert "办件 C1（营业执照）已超时 6 个工作日" in text
    nobody = Email(SmtpTarget(host="127.0.0.1", port=9, from_addr="jc@example.gov.cn"), {})
    [missing] = asyncio.run(nobody.deliver([WARNING]))
    assert missing is not None and missing.permanent  # not in the contacts: never guessed

    fake = FakeReceiver()
    with serve(fake) as url:

        async def post() -> list[object]:
            hook = Webhook(HttpTarget(url=url))
            try:
                return list(await hook.deliver([WARNING]))
            finally:
                await hook.close()

        assert asyncio.run(post()) == [None]
    body = fake.accepted[key]
    assert body["event"] == "ladder.red_card" and body["recipient"] == "leader:公安局"
    assert "记红牌一次" in body["text"] and body["params"]["case_no"] == "C1"
