# Long module: the camera's whole side for tests: the scene with its ground truth, and the MJPEG and
# RTSP servers that stream it.
"""The camera's side, for tests and the demo.

- ``HallScene``: a synthetic service-hall view (two windows with staff seats and citizen sides,
  a waiting area) rendered frame by frame with its ground truth: who sits where, when, and which
  key presses should find a citizen at the window. Each frame carries its index as a 16-bit
  barcode in the top-right corner, so a test reading the stream knows which scene instant it saw.
- ``MjpegServer``: MJPEG over HTTP (``multipart/x-mixed-replace``) from pre-encoded JPEGs, paced
  in real time, with a log of what it sent when, and knobs to stall or drop the stream.
- ``RtspServer``: starts Debian's GStreamer RTSP server (``gir1.2-gst-rtsp-server-1.0`` under
  Debian's own ``/usr/bin/python3``) on a JPEG frame sequence, H.264 encoded; it can be paused
  (SIGSTOP: a stall with the connection open), killed and restarted.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from firmware_bridges.camera.codec import content_type, encode_part

Image = NDArray[np.uint8]
Point = tuple[float, float]
Verdict = Literal["present", "absent"]

WIDTH, HEIGHT = 640, 360
BARCODE_BITS = 16
BARCODE_CELL = 4  # pixels per bit; the code sits in the top-right corner, outside every region


# --- the scene ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Where things are, as fractions of the frame (the same units as the gateway's regions)."""

    staff_seats: dict[int, tuple[Point, ...]]
    citizen_sides: dict[int, tuple[Point, ...]]
    waiting_area: tuple[Point, ...]
    seat_spots: dict[int, Point]
    citizen_spots: dict[int, Point]
    waiting_spots: tuple[Point, ...]


def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[Point, ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


HALL_LAYOUT = Layout(
    staff_seats={1: _rect(0.07, 0.08, 0.27, 0.45), 2: _rect(0.39, 0.08, 0.59, 0.45)},
    citizen_sides={1: _rect(0.06, 0.55, 0.28, 0.97), 2: _rect(0.38, 0.55, 0.60, 0.97)},
    waiting_area=_rect(0.70, 0.30, 0.99, 0.99),
    seat_spots={1: (0.17, 0.27), 2: (0.49, 0.27)},
    citizen_spots={1: (0.17, 0.78), 2: (0.49, 0.78)},
    waiting_spots=((0.77, 0.50), (0.90, 0.50), (0.77, 0.82), (0.90, 0.82)),
)


Role = Literal["staff", "citizen", "waiting", "passer"]


@dataclass(frozen=True, slots=True)
class Actor:
    """A person who walks in from ``entry``, stays at ``spot`` and walks out again.

    ``arrive`` is when they start walking in, ``leave`` when they start walking out; they are
    settled at the spot from ``arrive + walk_s`` to ``leave``. ``fidget_every_s`` > 0 makes them
    move a little now and then (a real person); 0 keeps them perfectly still.
    """

    role: Role
    spot: Point
    entry: Point
    arrive: float
    leave: float
    window: int = 0
    walk_s: float = 2.0
    scale: float = 1.0
    shirt: tuple[int, int, int] = (150, 60, 40)
    fidget_every_s: float = 0.0

    def position(self, t: float) -> Point | None:
        if t < self.arrive or t >= self.leave + self.walk_s:
            return None
        if t < self.arrive + self.walk_s:
            return _lerp(self.entry, self.spot, (t - self.arrive) / self.walk_s)
        if t >= self.leave:
            return _lerp(self.spot, self.entry, (t - self.leave) / self.walk_s)
        if self.fidget_every_s > 0 and (t - self.arrive) % self.fidget_every_s < 1.0:
            phase = (t - self.arrive) % self.fidget_every_s
            return (self.spot[0] + 0.012 * math.sin(phase * 2 * math.pi), self.spot[1])
        return self.spot

    def settled(self, t: float) -> bool:
        return self.arrive + self.walk_s <= t < self.leave

    def moving(self, t: float) -> bool:
        return self.position(t) is not None and not self.settled(t)


def _inside(where: Point | None, polygon: tuple[Point, ...], margin: float = 0.0) -> bool:
    """Is the point within the polygon's bounding box grown by ``margin`` (people have width)?"""
    if where is None:
        return False
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return (
        min(xs) - margin <= where[0] <= max(xs) + margin
        and min(ys) - margin <= where[1] <= max(ys) + margin
    )


def _lerp(a: Point, b: Point, f: float) -> Point:
    return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)


@dataclass(frozen=True, slots=True)
class KeyPress:
    """An evaluation key press at ``t`` on ``window`` and who should be found there."""

    t: float
    window: int
    expected: Verdict


@dataclass(frozen=True, slots=True)
class Truth:
    """The scene at one instant. ``None`` for a window means someone is walking in or out."""

    t: float
    staff: dict[int, bool | None]
    citizen: dict[int, bool | None]
    waiting: int
    waiting_moving: int


@dataclass(slots=True)
class HallScene:
    actors: list[Actor]
    presses: list[KeyPress]
    duration: float
    layout: Layout = HALL_LAYOUT
    width: int = WIDTH
    height: int = HEIGHT
    noise_sigma: float = 2.5
    seed: int = 7
    light_gain: Callable[[float], float] | None = None
    output_size: tuple[int, int] | None = None  # (width, height) the stream delivers
    _background: Image | None = field(default=None, init=False, repr=False)
    _noise: list[tuple[Image, Image]] = field(default_factory=list, init=False, repr=False)

    def truth(self, t: float) -> Truth:
        """Who is where, by geometry: a region is occupied when a settled person stands in it,
        undecided (None) while someone walks through it, whichever window they belong to."""
        staff: dict[int, bool | None] = {}
        citizen: dict[int, bool | None] = {}
        for window, polygon in self.layout.staff_seats.items():
            staff[window] = self._occupied(polygon, t)
        for window, polygon in self.layout.citizen_sides.items():
            citizen[window] = self._occupied(polygon, t)
        inside = [a for a in self.actors if _inside(a.position(t), self.layout.waiting_area)]
        return Truth(
            t=t,
            staff=staff,
            citizen=citizen,
            waiting=sum(1 for a in inside if a.settled(t)),
            waiting_moving=sum(1 for a in inside if a.moving(t)),
        )

    def _occupied(self, polygon: tuple[Point, ...], t: float) -> bool | None:
        inside = [a for a in self.actors if _inside(a.position(t), polygon, margin=0.06)]
        if any(a.settled(t) for a in inside):
            return True
        if inside:
            return None
        return False

    def render(self, t: float, index: int | None = None) -> Image:
        frame = self.background().copy()
        # Farther (higher) people first so nearer ones overlap them.
        placed = [(a, a.position(t)) for a in self.actors]
        for actor, where in sorted(
            ((a, p) for a, p in placed if p is not None), key=lambda item: item[1][1]
        ):
            _draw_person(frame, where, actor, self.width, self.height)
        if self.light_gain is not None:
            gain = self.light_gain(t)
            frame = np.asarray(cv2.convertScaleAbs(frame, alpha=gain, beta=0), dtype=np.uint8)
        if self.noise_sigma > 0:
            up, down = self._noise_frame(index if index is not None else int(t * 1000))
            frame = np.asarray(cv2.subtract(cv2.add(frame, up), down), dtype=np.uint8)
        if self.output_size is not None:
            frame = np.asarray(
                cv2.resize(frame, self.output_size, interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
        if index is not None:
            draw_barcode(frame, index)
        return frame

    def resized(self, width: int, height: int) -> HallScene:
        """The same scene from another stream of the camera: the sensor's picture scaled to
        ``width`` × ``height`` (anamorphically when the shape differs, as D1 substreams do)."""
        return replace(self, output_size=(width, height))

    def frames(self, fps: float) -> Iterator[tuple[int, float, Image]]:
        count = int(self.duration * fps)
        for index in range(count):
            t = index / fps
            yield index, t, self.render(t, index)

    def background(self) -> Image:
        if self._background is None:
            self._background = _render_background(self.layout, self.width, self.height, self.seed)
        return self._background

    def _noise_frame(self, key: int) -> tuple[Image, Image]:
        """Sensor noise as (added, subtracted) halves, so saturating uint8 maths applies it."""
        if not self._noise:
            rng = np.random.default_rng(self.seed)
            shape = (self.height, self.width, 3)
            for _ in range(8):
                sample = rng.normal(0.0, self.noise_sigma, shape).round()
                up = np.clip(sample, 0, 255).astype(np.uint8)
                down = np.clip(-sample, 0, 255).astype(np.uint8)
                self._noise.append((up, down))
        return self._noise[key % len(self._noise)]


def _render_background(layout: Layout, width: int, height: int, seed: int) -> Image:
    rng = np.random.default_rng(seed + 1)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    # Back wall (a vertical gradient), counter, floor with a mild texture.
    for y in range(height):
        shade = 170 + int(30 * y / height)
        frame[y, :] = (shade - 10, shade, shade + 5)
    counter_top = int(0.46 * height)
    counter_bottom = int(0.52 * height)
    cv2.rectangle(frame, (0, counter_top), (int(0.66 * width), counter_bottom), (60, 90, 120), -1)
    floor = rng.integers(0, 12, (height - counter_bottom, width, 1), dtype=np.uint8)
    frame[counter_bottom:, :] = np.clip(
        frame[counter_bottom:, :].astype(np.int16) - 40 + floor, 0, 255
    ).astype(np.uint8)
    # Window partitions and chairs behind the counter.
    for x in (0.02, 0.33, 0.64):
        px = int(x * width)
        cv2.rectangle(frame, (px, 0), (px + 6, counter_top), (90, 90, 95), -1)
    for spot in layout.seat_spots.values():
        cx, cy = int(spot[0] * width), int(spot[1] * height)
        cv2.rectangle(frame, (cx - 30, cy - 25), (cx + 30, cy + 40), (40, 40, 45), -1)
    # Benches in the waiting area.
    for spot in layout.waiting_spots:
        cx, cy = int(spot[0] * width), int(spot[1] * height)
        cv2.rectangle(frame, (cx - 30, cy + 10), (cx + 30, cy + 22), (30, 70, 110), -1)
    # A window-number plate per window (static texture).
    for window, spot in layout.seat_spots.items():
        cx = int(spot[0] * width)
        cv2.putText(
            frame,
            f"{window:02d}",
            (cx - 14, int(0.05 * height)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (20, 20, 160),
            1,
            cv2.LINE_AA,
        )
    return frame


def _draw_person(frame: Image, where: Point, actor: Actor, width: int, height: int) -> None:
    # Seen from above the counter, staff and citizens are close to the camera, the waiting
    # area is farther away.
    scale = actor.scale * (0.8 if actor.role == "waiting" else 1.3)
    cx, cy = int(where[0] * width), int(where[1] * height)
    torso_w, torso_h = int(44 * scale), int(62 * scale)
    head_r = int(14 * scale)
    top = cy - torso_h // 2
    cv2.rectangle(
        frame, (cx - torso_w // 2, top), (cx + torso_w // 2, top + torso_h), actor.shirt, -1
    )
    # A collar and buttons: texture, so a person is not a flat blob.
    cv2.line(frame, (cx, top + 4), (cx, top + torso_h - 4), (230, 230, 230), 2)
    cv2.circle(frame, (cx, top - head_r + 2), head_r, (120, 160, 205), -1)
    cv2.ellipse(frame, (cx, top - head_r - 4), (head_r, head_r // 2), 0, 180, 360, (25, 25, 30), -1)


def draw_barcode(frame: Image, index: int) -> None:
    """Frame index as 16 black/white cells in the top-right corner (bit 15 first)."""
    width = frame.shape[1]
    x0 = width - BARCODE_BITS * BARCODE_CELL
    cv2.rectangle(frame, (x0 - 2, 0), (width - 1, BARCODE_CELL * 2 + 2), (128, 128, 128), -1)
    for bit in range(BARCODE_BITS):
        on = (index >> (BARCODE_BITS - 1 - bit)) & 1
        x = x0 + bit * BARCODE_CELL
        colour = (255, 255, 255) if on else (0, 0, 0)
        cv2.rectangle(frame, (x, 1), (x + BARCODE_CELL - 1, BARCODE_CELL * 2), colour, -1)


def read_barcode(frame: Image) -> int:
    """Inverse of ``draw_barcode`` on a decoded (possibly lossy) frame of the same width."""
    width = frame.shape[1]
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    x0 = width - BARCODE_BITS * BARCODE_CELL
    value = 0
    for bit in range(BARCODE_BITS):
        x = x0 + bit * BARCODE_CELL
        cell = gray[2 : BARCODE_CELL * 2 - 1, x + 1 : x + BARCODE_CELL - 1]
        value = (value << 1) | int(float(cell.mean()) > 128)
    return value


def hall_scene(still_s: float = 600.0, break_s: float = 60.0, lead_s: float = 0.0) -> HallScene:
    """The acceptance scene: a staff member sits perfectly still for ``still_s``, leaves for
    ``break_s`` and returns; a citizen comes to the window and leaves; key presses find them
    there or nobody. Window 2's staff stays all along and fidgets like a person; two people
    sit in the waiting area (one from the start, one later). ``lead_s`` adds an empty hall
    before it all (time for a late-joining reader to take its empty references)."""
    s, b = still_s, break_s
    back_return = 12 + s + b  # E: staff of window 1 is seated again
    e = back_return
    layout = HALL_LAYOUT
    left_off = (-0.1, 0.25)
    right_off = (1.1, 0.7)
    actors = [
        Actor("staff", layout.seat_spots[1], left_off, 6, 8 + s, window=1, shirt=(150, 60, 40)),
        Actor(
            "staff",
            layout.seat_spots[1],
            left_off,
            10 + s + b,
            e + 40,
            window=1,
            shirt=(150, 60, 40),
        ),
        Actor(
            "staff",
            layout.seat_spots[2],
            (0.34, -0.2),
            6,
            e + 40,
            window=2,
            shirt=(40, 120, 40),
            fidget_every_s=7.0,
        ),
        Actor("citizen", layout.citizen_spots[2], right_off, 10, 20, window=2, shirt=(30, 30, 160)),
        Actor(
            "citizen",
            layout.citizen_spots[1],
            right_off,
            e + 2,
            e + 12,
            window=1,
            shirt=(160, 30, 130),
        ),
        Actor("waiting", layout.waiting_spots[0], right_off, 4, e + 40, shirt=(100, 100, 30)),
        Actor("waiting", layout.waiting_spots[3], right_off, e, e + 10, shirt=(20, 140, 200)),
    ]
    presses = [
        KeyPress(16.0, 2, "present"),
        KeyPress(e + 8, 1, "present"),
        KeyPress(e + 17, 1, "absent"),
    ]
    if lead_s:
        actors = [replace(a, arrive=a.arrive + lead_s, leave=a.leave + lead_s) for a in actors]
        presses = [replace(p, t=p.t + lead_s) for p in presses]
    return HallScene(actors=actors, presses=presses, duration=e + 24 + lead_s)


def passer_by(t: float, y: float = 0.24, walk_s: float = 5.0, rightwards: bool = True) -> Actor:
    """Someone crossing the whole view at height ``y`` from ``t`` (behind the seats at the
    default height): in view for ``walk_s``, never settled anywhere in the picture."""
    left, right = (-0.15, y), (1.15, y)
    start, end = (left, right) if rightwards else (right, left)
    return Actor("passer", end, start, t, 1e9, walk_s=walk_s, shirt=(70, 70, 70))


def flicker(amplitude: float, hz: float = 1.37) -> Callable[[float], float]:
    """Lamp flicker as seen at a low frame rate: brightness × (1 ± ``amplitude``)."""
    return lambda t: 1.0 + amplitude * math.sin(2 * math.pi * hz * t)


def light_steps(steps: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """Lights switched: from each ``(t, gain)`` on, brightness × gain (1.0 before the first)."""
    ordered = sorted(steps)

    def gain(t: float) -> float:
        current = 1.0
        for at, value in ordered:
            if t >= at:
                current = value
        return current

    return gain


# --- MJPEG over HTTP ----------------------------------------------------------------------------


class FrameFeed:
    """Pre-encoded JPEG frames played at ``fps`` in real time, looping."""

    def __init__(self, jpegs: Sequence[bytes], fps: float, loop: bool = True) -> None:
        if not jpegs:
            raise ValueError("a feed needs frames")
        self.jpegs = list(jpegs)
        self.fps = fps
        self.loop = loop

    @classmethod
    def from_scene(cls, scene: HallScene, fps: float, quality: int = 85) -> FrameFeed:
        jpegs = []
        for _, _, image in scene.frames(fps):
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            jpegs.append(bytes(buf.tobytes()))
        return cls(jpegs, fps, loop=False)

    @classmethod
    def from_video(
        cls, path: Path, fps: float | None = None, width: int | None = None, limit: int = 10_000
    ) -> FrameFeed:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path}")
        rate = fps or capture.get(cv2.CAP_PROP_FPS) or 10.0
        jpegs: list[bytes] = []
        try:
            while len(jpegs) < limit:
                ok, image = capture.read()
                if not ok:
                    break
                if width is not None and image.shape[1] != width:
                    height = round(image.shape[0] * width / image.shape[1])
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                if ok:
                    jpegs.append(bytes(buf.tobytes()))
        finally:
            capture.release()
        return cls(jpegs, rate)

    def write_sequence(self, directory: Path) -> str:
        """Write ``frame_00000.jpg`` … for the RTSP server; returns the printf pattern."""
        directory.mkdir(parents=True, exist_ok=True)
        for index, jpeg in enumerate(self.jpegs):
            (directory / f"frame_{index:05d}.jpg").write_bytes(jpeg)
        return str(directory / "frame_%05d.jpg")


@dataclass(frozen=True, slots=True)
class Sent:
    mono: float
    index: int
    client: int


class MjpegServer:
    """A camera's MJPEG endpoint: ``GET /stream.mjpg`` (and ``/snapshot.jpg``)."""

    BOUNDARY = b"hallwatchframe"

    def __init__(self, feed: FrameFeed, host: str = "127.0.0.1", port: int = 0) -> None:
        self.feed = feed
        self._stalled = threading.Event()
        self._frozen: int | None = None  # resend this frame index (a frozen encoder)
        self._drop_generation = 0
        self._lock = threading.Lock()
        self.sent: list[Sent] = []
        self.clients = 0
        self._started = time.monotonic()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                if self.path.startswith("/snapshot"):
                    server._snapshot(self)
                elif self.path.startswith("/stream"):
                    server._stream(self)
                else:
                    self.send_error(404)

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/stream.mjpg"

    def start(self) -> MjpegServer:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.drop_clients()
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stall(self) -> None:
        """Keep connections open but send nothing (a hung encoder)."""
        self._stalled.set()

    def freeze(self) -> None:
        """Keep sending, but always the frame of this moment (as a hung encoder or recorder
        does): the connection stays healthy, the picture never changes."""
        self._frozen = self._frame_index(time.monotonic() - self._started) or 0

    def thaw(self) -> None:
        self._frozen = None

    def resume(self) -> None:
        self._stalled.clear()

    def drop_clients(self) -> None:
        """Close every open stream (a camera reboot)."""
        with self._lock:
            self._drop_generation += 1

    def index_at(self, mono: float) -> int | None:
        """The frame index last sent at or before ``mono`` (ground truth lookup for tests)."""
        best: int | None = None
        with self._lock:
            for item in self.sent:
                if item.mono <= mono:
                    best = item.index
                else:
                    break
        return best

    def _frame_index(self, elapsed: float) -> int | None:
        index = int(elapsed * self.feed.fps)
        if index >= len(self.feed.jpegs):
            if not self.feed.loop:
                return None
            index %= len(self.feed.jpegs)
        return index

    def _jpeg(self, index: int) -> bytes:
        return self.feed.jpegs[index]

    def _snapshot(self, handler: BaseHTTPRequestHandler) -> None:
        index = self._frame_index(time.monotonic() - self._started) or 0
        jpeg = self._jpeg(index)
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(jpeg)))
        handler.end_headers()
        handler.wfile.write(jpeg)

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.clients += 1
            client = self.clients
            generation = self._drop_generation
        handler.send_response(200)
        handler.send_header("Content-Type", content_type(self.BOUNDARY))
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        period = 1.0 / self.feed.fps
        next_due = time.monotonic()
        last_index = -1
        try:
            while True:
                with self._lock:
                    if generation != self._drop_generation:
                        return
                if self._stalled.is_set():
                    time.sleep(0.05)
                    next_due = time.monotonic()
                    continue
                now = time.monotonic()
                if now < next_due:
                    time.sleep(min(period, next_due - now))
                    continue
                next_due += period
                frozen = self._frozen
                index = frozen if frozen is not None else self._frame_index(now - self._started)
                if index is None:
                    return
                if index == last_index and frozen is None:
                    continue
                last_index = index
                handler.wfile.write(encode_part(self._jpeg(index), self.BOUNDARY))
                handler.wfile.flush()
                with self._lock:
                    self.sent.append(Sent(time.monotonic(), index, client))
        except (BrokenPipeError, ConnectionResetError):
            return


# --- RTSP through GStreamer --------------------------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"

# Runs under Debian's python3 (python3-gi); argv: port mount location fps shared
_RTSP_SCRIPT = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

port, mount, location, fps, shared = sys.argv[1:6]
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f'( multifilesrc location="{location}" index=0 loop=true '
    f'caps="image/jpeg,framerate={fps}/1" ! jpegdec ! videoconvert ! video/x-raw,format=I420 '
    f'! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=1500 '
    f'! rtph264pay name=pay0 pt=96 config-interval=1 )'
)
factory.set_shared(shared == "1")
server.get_mount_points().add_factory(mount, factory)
if server.attach(None) == 0:
    sys.exit("cannot bind RTSP port " + port)
print("ready", flush=True)
GLib.MainLoop().run()
"""


def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} is missing"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('x264enc', 'rtph264pay', 'jpegdec', 'multifilesrc')"
        " if Gst.ElementFactory.find(e) is None];"
        "raise SystemExit(' '.join(missing) or 0)"
    )
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [result.stdout.strip()])[-1:]
        return f"GStreamer RTSP server not usable: {' '.join(detail) or 'unknown error'}"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class RtspServer:
    """``rtsp://127.0.0.1:<port>/stream`` playing a JPEG sequence as H.264, looping."""

    def __init__(
        self,
        location: str,
        fps: int = 10,
        port: int | None = None,
        mount: str = "/stream",
        shared: bool = True,
    ) -> None:
        self.location = location
        self.fps = fps
        self.port = port or free_port()
        self.mount = mount
        self.shared = shared
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout: float = 20.0) -> RtspServer:
        args = [
            str(self.port),
            self.mount,
            self.location,
            str(self.fps),
            "1" if self.shared else "0",
        ]
        # stderr to a file: GStreamer may log a lot, and a full pipe would block the server.
        self._stderr = tempfile.NamedTemporaryFile(prefix="rtsp-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", _RTSP_SCRIPT, *args],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"RTSP server exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"RTSP server did not listen on {self.port} within {timeout} s")

    def pause(self) -> None:
        """SIGSTOP: the connection stays open and nothing more arrives (a stall)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the server dies (a camera losing power)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._close_pipes()

    def restart(self, timeout: float = 20.0) -> RtspServer:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("RTSP server is not running")
        self._process.send_signal(signum)

    def log_tail(self, limit: int = 500) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        return Path(self._stderr.name).read_bytes()[-limit:].decode(errors="replace").strip()

    def _close_pipes(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
