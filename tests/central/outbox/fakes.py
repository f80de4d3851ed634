"""A fake receiver (upper platform, SMS gateway, webhook) on a private port: it records every
request's Idempotency-Key, keeps the first of each key and counts repeats, and misbehaves on
request: 500, accept then answer too late (a timeout), accept then drop the connection (an
answer lost), or answer slowly."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeReceiver:
    def __init__(self, plan: list[str] | None = None, *, delay_s: float = 0.0) -> None:
        self.plan = list(plan or [])  # per request in arrival order: ok | 500 | timeout | drop
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.accepted: dict[str, Any] = {}  # key → first body
        self.seen: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Condition(self.lock)
        self.hang_s = 3.0

    @property
    def repeats(self) -> int:
        return sum(self.seen.values()) - len(self.seen)

    def wait_for(self, requests: int, timeout_s: float = 20.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: sum(self.seen.values()) >= requests, timeout_s)

    def handle(self, key: str, headers: dict[str, str], body: Any) -> str:
        with self.lock:
            self.seen[key] += 1
            self.headers.append(headers)
            step = self.plan.pop(0) if self.plan else "ok"
            if step != "500":
                self.accepted.setdefault(key, body)
            self.arrived.notify_all()
        return step


def _handler(fake: FakeReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key", "")
            step = fake.handle(key, dict(self.headers.items()), body)
            if fake.delay_s:
                time.sleep(fake.delay_s)
            if step == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if step == "timeout":
                time.sleep(fake.hang_s)
            code = 500 if step == "500" else 200
            data = json.dumps({"ok": code == 200}).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a worker's whole batch connects at once
    daemon_threads = True


@contextmanager
def serve(fake: FakeReceiver) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/receive"
    finally:
        server.shutdown()
        server.server_close()
