"""Camera transport: a reader thread that always holds the latest frame.

Why a thread that reads all the time: a live stream read slowly hands out buffered frames that are
seconds old (docs/field-notes.md#opencv: 5.5 s after 6 s at one read per second), so the analysis
would judge the past. The reader drains the stream as it arrives and keeps one slot; analysis takes
whatever is newest at its own rate.

Two sources:
- ``OpenCvSource`` for RTSP (and anything else FFmpeg opens), with
  ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC`` so a dead or stalled server is
  noticed in seconds, not FFmpeg's default ~20 s. It decodes every frame (H.264 must:
  ``grab``), but converts to a picture (``retrieve``) only the frames the reader is asked for.
- ``MjpegHttpSource`` for HTTP MJPEG: the multipart stream is split by the codec and only the
  JPEG bytes are kept; decoding happens when the analysis asks, so frames it skips cost nothing.
  ``OpenCvSource`` reads MJPEG over HTTP too (``backend="opencv"``).
"""

from __future__ import annotations

import base64
import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np
from numpy.typing import NDArray

from firmware_bridges.camera.codec import MjpegError, MjpegParser, boundary_from_content_type

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]


class SourceError(Exception):
    """The stream cannot be opened or has ended (connection refused, closed, not a stream)."""


class SourceStalled(SourceError):
    """Connected, but no frame arrived within the read timeout."""


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """A frame as it left the source: decoded (OpenCV) or still JPEG bytes (MJPEG).

    ``mono`` is ``time.monotonic()`` at arrival. On Linux CLOCK_MONOTONIC is system-wide, so a
    worker process's stamps compare directly with the gateway's (a key press's) stamps.
    """

    seq: int
    mono: float
    image: Image | None = None
    jpeg: bytes | None = None

    def bgr(self) -> Image:
        if self.image is not None:
            return self.image
        return decode_jpeg(self._jpeg(), cv2.IMREAD_COLOR)

    def gray(self, reduce: int = 1) -> Image:
        """A grayscale image, decoded at 1/``reduce`` size straight from the JPEG when possible
        (libjpeg's DCT scaling: a 1/2 decode costs a fraction of a full one)."""
        if self.image is not None:
            gray = cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)
            if reduce > 1:
                height, width = gray.shape[:2]
                size = (width // reduce, height // reduce)
                gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
            return np.asarray(gray, dtype=np.uint8)
        flag = {
            1: cv2.IMREAD_GRAYSCALE,
            2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
            4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
            8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
        }.get(reduce)
        if flag is None:
            raise ValueError(f"reduce must be 1, 2, 4 or 8, not {reduce}")
        return decode_jpeg(self._jpeg(), flag)

    def to_jpeg(self, quality: int = 80) -> bytes:
        if self.jpeg is not None:
            return self.jpeg
        return encode_jpeg(self.bgr(), quality)

    def _jpeg(self) -> bytes:
        if self.jpeg is None:
            raise ValueError("frame has neither image nor JPEG")
        return self.jpeg


def decode_jpeg(data: bytes, flag: int) -> Image:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if image is None:
        raise ValueError("undecodable JPEG")
    return np.asarray(image, dtype=np.uint8)


def encode_jpeg(image: Image, quality: int = 80) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buffer.tobytes())


class FrameSource(Protocol):
    def open(self) -> None: ...

    def read(self, convert: bool = True) -> tuple[Image | None, bytes | None]:
        """The next frame; with ``convert`` False it may be consumed without making a picture
        of it (then both are None)."""
        ...

    def close(self) -> None: ...


class OpenCvSource:
    """An FFmpeg-backed ``cv2.VideoCapture`` with open and read timeouts."""

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float) -> None:
        self.url = url
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
            # One decoding thread: every camera has its own worker process already, and
            # FFmpeg's frame threads only add synchronisation to a substream's small frames.
            cv2.CAP_PROP_N_THREADS,
            1,
        ]
        capture = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {redact(self.url)}")
        self._capture = capture

    def read(self, convert: bool = True) -> tuple[Image | None, bytes | None]:
        if self._capture is None:
            raise SourceError("not open")
        started = time.monotonic()
        # grab() demuxes and decodes; retrieve() converts to BGR and copies out: skipped for
        # the frames nobody will look at.
        ok = self._capture.grab()
        # OpenCV says only "no frame"; the time it took tells a timeout from an end of stream.
        # After a stall's read timeout FFmpeg may still hand out frames left in the decoder
        # (seen: two, each after a full timeout), so a read that took the whole timeout is a
        # stall whatever it returned.
        if time.monotonic() - started >= 0.8 * self.read_timeout_s:
            raise SourceStalled(f"no frame for {self.read_timeout_s:g} s")
        if not ok:
            raise SourceError("stream ended or broke")
        if not convert:
            return None, None
        ok, image = self._capture.retrieve()
        if ok and image is not None:
            return np.asarray(image, dtype=np.uint8), None
        raise SourceError("stream ended or broke")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class MjpegHttpSource:
    """HTTP ``multipart/x-mixed-replace`` MJPEG, split by the codec, decoded on demand."""

    CHUNK = 64 * 1024

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an HTTP URL: {redact(url)}")
        self.url = url
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._parts = parts
        self._connection: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._parser: MjpegParser | None = None

    def open(self) -> None:
        parts = self._parts
        connection_type = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(
            parts.hostname or "localhost", parts.port, timeout=self.open_timeout_s
        )
        headers = {"Accept": "multipart/x-mixed-replace, image/jpeg", "Connection": "close"}
        if parts.username is not None:
            token = f"{parts.username}:{parts.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("GET", path, headers=headers)
            # From here on the read timeout applies. Set it now: for a response that will
            # close the connection, http.client hands the socket to the response and
            # ``connection.sock`` becomes None after getresponse().
            if connection.sock is not None:
                connection.sock.settimeout(self.read_timeout_s)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise SourceError(f"cannot open {redact(self.url)}: {error}") from error
        if response.status != 200:
            connection.close()
            raise SourceError(f"HTTP {response.status} {response.reason} from {redact(self.url)}")
        try:
            boundary = boundary_from_content_type(response.getheader("Content-Type", ""))
        except MjpegError as error:
            connection.close()
            raise SourceError(str(error)) from error
        self._connection, self._response = connection, response
        self._parser = MjpegParser(boundary)

    def read(self, convert: bool = True) -> tuple[Image | None, bytes | None]:
        # The JPEG bytes are kept either way: decoding happens only when a frame is analysed.
        if self._response is None or self._parser is None:
            raise SourceError("not open")
        deadline = time.monotonic() + self.read_timeout_s
        while True:
            try:
                chunk = self._response.read1(self.CHUNK)
            except TimeoutError as error:
                raise SourceStalled(f"no data for {self.read_timeout_s:g} s") from error
            except (OSError, http.client.HTTPException) as error:
                raise SourceError(f"connection broke: {error}") from error
            if not chunk:
                raise SourceError("server closed the stream")
            parts = self._parser.feed(chunk)
            if parts:
                # Several parts in one chunk: all but the newest are already stale.
                return None, parts[-1].data
            if time.monotonic() > deadline:
                raise SourceStalled(f"no complete frame for {self.read_timeout_s:g} s")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._response = None
        self._parser = None


def redact(url: str) -> str:
    """A URL without its password, for logs and health reasons."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def make_source(
    url: str, open_timeout_s: float, read_timeout_s: float, backend: str = "auto"
) -> FrameSource:
    """``auto``: HTTP(S) through the MJPEG splitter, everything else through OpenCV."""
    if backend == "opencv" or (backend == "auto" and not url.lower().startswith("http")):
        return OpenCvSource(url, open_timeout_s, read_timeout_s)
    if backend in ("auto", "mjpeg"):
        return MjpegHttpSource(url, open_timeout_s, read_timeout_s)
    raise ValueError(f"unknown camera backend {backend!r}")


class Health(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class HealthChange:
    state: Health
    reason: str
    mono: float


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: initial · factor^attempt, capped, with ±jitter so that a hall's cameras
    that fell together (a switch reboot) do not all knock at once."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        return float(base * (1.0 + self.jitter * (2.0 * rand() - 1.0)))


class LatestFrameReader:
    """Drains a source in a thread, keeps only the newest frame, reconnects with backoff and
    reports health changes (online / offline / stalled, with the reason)."""

    def __init__(
        self,
        camera: str,
        source_factory: Callable[[], FrameSource],
        *,
        backoff: Backoff | None = None,
        on_health: Callable[[HealthChange], None] | None = None,
        convert_every_s: float = 0.0,
    ) -> None:
        """``convert_every_s``: make a picture of a frame at most this often, unless the last
        one has been taken (``latest``) already; 0 converts every frame."""
        self.camera = camera
        self.convert_every_s = convert_every_s
        self._taken = True
        self._factory = source_factory
        self._backoff = backoff or Backoff()
        self._on_health = on_health
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._latest: CapturedFrame | None = None
        self._seq = 0
        self._health: HealthChange | None = None  # the first report always goes out
        self._thread: threading.Thread | None = None
        self.reconnects = 0
        self.frames_read = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to end; True when it did within ``timeout`` (a read may be blocked
        in native code until its own read timeout)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def health(self) -> HealthChange:
        if self._health is None:
            return HealthChange(Health.OFFLINE, "not started", time.monotonic())
        return self._health

    def latest(self) -> CapturedFrame | None:
        with self._cond:
            self._taken = True
            return self._latest

    def wait_newer(self, seq: int, timeout: float) -> CapturedFrame | None:
        """The newest frame with a seq above ``seq``, waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.seq <= seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            return self._latest

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            source = self._factory()
            try:
                source.open()
            except (SourceError, OSError, ValueError) as error:
                self._set_health(Health.OFFLINE, str(error))
            else:
                if self._drain(source):
                    attempt = 0
            finally:
                source.close()
            if self._stop.is_set():
                break
            self.reconnects += 1
            self._stop.wait(self._backoff.delay(attempt))
            attempt += 1

    def _drain(self, source: FrameSource) -> bool:
        """Read until the source fails or we are stopped; True when frames did arrive."""
        got_frames = False
        try:
            while not self._stop.is_set():
                latest = self._latest
                convert = (
                    self._taken
                    or latest is None
                    or time.monotonic() - latest.mono >= self.convert_every_s
                )
                image, jpeg = source.read(convert)
                if image is None and jpeg is None:
                    continue  # consumed, not converted: nobody would have looked at it
                self._publish(image, jpeg)
                if not got_frames:
                    got_frames = True
                    self._set_health(Health.ONLINE, "frames arriving")
        except SourceStalled as error:
            self._set_health(Health.STALLED, str(error))
        except (SourceError, OSError, ValueError) as error:
            self._set_health(Health.OFFLINE, str(error))
        return got_frames

    def _publish(self, image: Image | None, jpeg: bytes | None) -> None:
        with self._cond:
            self._seq += 1
            self.frames_read += 1
            self._latest = CapturedFrame(self._seq, time.monotonic(), image, jpeg)
            self._taken = False
            self._cond.notify_all()

    def _set_health(self, state: Health, reason: str) -> None:
        if self._health is not None and state == self._health.state:
            return
        change = HealthChange(state, reason, time.monotonic())
        self._health = change
        log.info("camera %s %s: %s", self.camera, state, reason)
        if self._on_health is not None:
            self._on_health(change)
