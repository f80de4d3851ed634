"""A live camera for the demo: the hall scene rendered as things happen, served as MJPEG.

``LiveScene`` is the simulator's ``HallScene`` (same layout, people and noise) whose actors are
added while a simulated hall runs — staff sit down at login, a citizen walks up when called and
leaves after evaluating — so the gateway's camera analytics see what the ground truth says.
``LiveMjpegServer`` renders the current instant for each frame it sends (one render per frame
period, whatever the number of clients: a few milliseconds at 640×360).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import cv2

from firmware_bridges.camera.simulator import HALL_LAYOUT, Actor, FrameFeed, HallScene, MjpegServer

STAFF_SHIRTS = {1: (150, 60, 40), 2: (40, 120, 40)}
# Dark enough in grey (the analytics compare luminance with the empty counter) and varied.
CITIZEN_SHIRTS = ((30, 30, 160), (160, 30, 130), (120, 40, 40), (100, 100, 30))
STAFF_ENTRY = (-0.1, 0.25)
CITIZEN_ENTRY = (1.1, 0.7)


class LiveScene:
    """Actors on the monotonic clock since the scene was made; ``apply`` is called from the
    hall's event loop, ``jpeg`` from the server's threads."""

    def __init__(self, quality: int = 80) -> None:
        self._epoch = time.monotonic()
        self._lock = threading.Lock()
        self._scene = HallScene(actors=[], presses=[], duration=math.inf)
        self._present: dict[tuple[str, int], Actor] = {}
        self._visitors = 0
        self.quality = quality

    def now(self) -> float:
        return time.monotonic() - self._epoch

    def apply(self, what: str, window: int) -> None:
        """``staff_in`` / ``staff_out`` / ``citizen_in`` / ``citizen_out`` at ``window``."""
        role, _, move = what.partition("_")
        key = (role, window)
        t = self.now()
        with self._lock:
            current = self._present.pop(key, None)
            if current is not None:  # walks out from now on
                self._replace(
                    current, replace(current, leave=max(t, current.arrive + current.walk_s))
                )
            if move != "in":
                return
            if role == "staff":
                actor = Actor(
                    "staff",
                    HALL_LAYOUT.seat_spots[window],
                    STAFF_ENTRY,
                    t,
                    math.inf,
                    window=window,
                    shirt=STAFF_SHIRTS.get(window, (90, 90, 90)),
                    fidget_every_s=7.0,
                )
            else:
                self._visitors += 1
                actor = Actor(
                    "citizen",
                    HALL_LAYOUT.citizen_spots[window],
                    CITIZEN_ENTRY,
                    t,
                    math.inf,
                    window=window,
                    shirt=CITIZEN_SHIRTS[self._visitors % len(CITIZEN_SHIRTS)],
                    fidget_every_s=5.0,
                )
            self._present[key] = actor
            self._scene.actors.append(actor)
            # People who have left for good are dropped, so rendering stays cheap.
            self._scene.actors[:] = [
                a for a in self._scene.actors if a.leave == math.inf or a.leave + a.walk_s > t
            ]

    def waiting(self, count: int) -> None:
        """People on the waiting-area benches: the queue, as far as the benches go (the
        camera sees one corner of the hall)."""
        t = self.now()
        with self._lock:
            for spot_index, spot in enumerate(HALL_LAYOUT.waiting_spots):
                key = ("waiting", spot_index)
                seated = self._present.get(key)
                if spot_index < count and seated is None:
                    self._visitors += 1
                    actor = Actor(
                        "waiting",
                        spot,
                        CITIZEN_ENTRY,
                        t,
                        math.inf,
                        shirt=CITIZEN_SHIRTS[self._visitors % len(CITIZEN_SHIRTS)],
                        fidget_every_s=9.0,
                    )
                    self._present[key] = actor
                    self._scene.actors.append(actor)
                elif spot_index >= count and seated is not None:
                    del self._present[key]
                    self._replace(
                        seated, replace(seated, leave=max(t, seated.arrive + seated.walk_s))
                    )

    def _replace(self, old: Actor, new: Actor) -> None:
        actors = self._scene.actors
        for i, actor in enumerate(actors):
            if actor is old:
                actors[i] = new
                return

    def jpeg(self, index: int) -> bytes:
        with self._lock:
            image = self._scene.render(self.now(), index)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return bytes(buf.tobytes())


class LiveMjpegServer(MjpegServer):
    """``GET /stream.mjpg`` of a ``LiveScene`` at ``fps``."""

    def __init__(
        self, scene: LiveScene, fps: float = 4.0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(FrameFeed([b""], fps, loop=True), host, port)
        self.scene = scene
        self._rendered: tuple[int, bytes] | None = None
        self._render_lock = threading.Lock()

    def _frame_index(self, elapsed: float) -> int | None:
        return int(elapsed * self.feed.fps) % 65536  # the barcode's 16 bits

    def _jpeg(self, index: int) -> bytes:
        with self._render_lock:
            if self._rendered is None or self._rendered[0] != index:
                self._rendered = (index, self.scene.jpeg(index))
            return self._rendered[1]
