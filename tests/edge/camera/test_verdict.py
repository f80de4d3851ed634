"""Citizen verdict rules: absent only on clear evidence."""

from __future__ import annotations

from edge.camera.config import VerdictConfig
from edge.camera.verdict import Observation, decide

CFG = VerdictConfig(before_s=3.0, after_s=1.0, min_frames=3)


def series(pattern: str, at: float = 100.0, fps: float = 2.0) -> list[Observation]:
    """'x' occupied, '.' empty, '?' no judgement; the series ends at at + 1 s."""
    out = []
    for i, ch in enumerate(reversed(pattern)):
        mono = at + 1.0 - i / fps
        occupied = None if ch == "?" else ch == "x"
        out.append(
            Observation(mono, occupied, None if occupied is None else (0.3 if occupied else 0.01))
        )
    return list(reversed(out))


def test_citizen_seen_around_the_press_is_present() -> None:
    d = decide(series("xxxxxxxxx"), 100.0, CFG)
    assert d.verdict == "present" and d.confidence >= 0.9 and d.frames == 9


def test_nobody_in_every_frame_is_absent() -> None:
    d = decide(series("........."), 100.0, CFG)
    assert d.verdict == "absent" and d.confidence >= 0.8 and d.occupied_frames == 0


def test_frames_outside_the_window_do_not_count() -> None:
    # A citizen who left 10 s before the press does not make it "present".
    obs = series("xxxxxxxxxxxxxxxxxxxx" + ".........", at=100.0)
    assert decide(obs, 100.0, CFG).verdict == "absent"


def test_a_brief_glimpse_is_not_an_accusation() -> None:
    assert decide(series("....x...."), 100.0, CFG).verdict == "unknown"
    assert decide(series("..xxx...."), 100.0, CFG).verdict == "present"  # 3 of 9


def test_too_few_frames_is_unknown_with_the_cameras_trouble() -> None:
    d = decide(series("??????..."[-2:]), 100.0, CFG, camera_trouble="camera stalled: no frame")
    assert d.verdict == "unknown" and "stalled" in d.reason and d.confidence == 0.0
    assert decide([], 100.0, CFG).verdict == "unknown"
    assert decide(series("?????????"), 100.0, CFG).verdict == "unknown"
