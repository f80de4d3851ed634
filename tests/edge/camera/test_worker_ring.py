"""The worker's ring of analysed frames: decoded pictures are encoded only when asked for."""

from __future__ import annotations

import numpy as np

from edge.camera.worker import RAW_RING_BYTES, RingFrame, ring_frame
from firmware_bridges.camera.driver import CapturedFrame, encode_jpeg


def test_a_decoded_picture_is_encoded_once_when_asked_for_and_as_before() -> None:
    image = np.random.default_rng(3).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    entry = ring_frame(CapturedFrame(1, 5.0, image=image), 30)
    assert entry.encoded is None and entry.frame is not None
    jpeg = entry.jpeg()
    assert jpeg == encode_jpeg(image)
    assert entry.frame is None  # the picture is let go once encoded
    assert entry.jpeg() is jpeg


def test_pictures_too_big_for_the_ring_budget_are_encoded_at_once() -> None:
    side = int((RAW_RING_BYTES / 3 / 4) ** 0.5) + 1  # four of them exceed the budget
    image = np.zeros((side, side, 3), np.uint8)
    entry = ring_frame(CapturedFrame(1, 5.0, image=image), 4)
    assert entry.frame is None and entry.encoded == encode_jpeg(image)


def test_mjpeg_frames_keep_the_bytes_as_they_came() -> None:
    jpeg = encode_jpeg(np.zeros((36, 64, 3), np.uint8))
    entry = RingFrame(2.0, CapturedFrame(1, 2.0, jpeg=jpeg))
    assert entry.jpeg() is jpeg
