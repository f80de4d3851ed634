"""Staff presence and camera health against rendered scenes with ground truth: passers-by,
lamp flicker, light switched, a resolution change, a dark or flickering hall, no reference.

The analyser has no clock, so each scene (minutes of hall time) runs in a second or two at the
analysed rate; the presence timeline is compared with the truth the renderer knows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge.camera.analytics import Analysis, CameraAnalyzer, analysis_gray
from edge.camera.config import CameraConfig
from edge.camera.presence import PresenceChange, PresenceTracker
from edge.camera.references import ReferenceFiles
from firmware_bridges.camera.simulator import (
    HallScene,
    flicker,
    hall_scene,
    light_steps,
    passer_by,
)
from tests.edge.camera.scenes import hall_camera

FPS = 2.0
AWAY_AFTER_S = 30.0
SLACK_S = 5.0  # the bound: decided within away_after_s + 5 s of the truth


Frame = tuple[float, dict[int, bool | None], dict[int, bool | None], Analysis]


def run(
    scene: HallScene,
    config: CameraConfig,
    *,
    size: Callable[[float], HallScene] | None = None,
    analyzer: CameraAnalyzer | None = None,
) -> tuple[list[PresenceChange], list[Frame]]:
    analyzer = analyzer or CameraAnalyzer(config)
    trackers = {
        w.window: PresenceTracker(
            w.window, config.away_after_s, config.present_after_s, config.occlusion_s
        )
        for w in config.windows
    }
    changes: list[PresenceChange] = []
    frames: list[Frame] = []
    for index in range(int(scene.duration * FPS)):
        t = index / FPS
        shown = size(t) if size else scene
        analysis = analyzer.analyse(analysis_gray(shown.render(t, index), 320), t)
        for obs in analysis.windows:
            change = trackers[obs.window].update(t, obs.staff_occupied)
            if change:
                changes.append(change)
        truth = scene.truth(t)
        frames.append((t, truth.staff, truth.citizen, analysis))
    return changes, frames


def absences(frames: list[Frame], window: int) -> list[tuple[float, float]]:
    """The truth's empty-seat periods (start, end) of a window: from the first frame with
    nobody there (not walking out, None) to the first with someone seated again; a passer-by
    crossing the seat (None) does not end it."""
    periods: list[tuple[float, float]] = []
    start = None
    seated_before = False
    for t, staff, _, _ in frames:
        seated = staff[window] is True
        if staff[window] is False and start is None and seated_before:
            start = t
        if seated and start is not None:
            periods.append((start, t))
            start = None
        seated_before = seated_before or seated
    if start is not None:
        periods.append((start, frames[-1][0]))
    return periods


def check_timeline(changes: list[PresenceChange], frames: list[Frame], window: int) -> int:
    """Every absence ≥ away_after_s is reported away within the bound; nothing else is."""
    long = [(a, b) for a, b in absences(frames, window) if b - a >= AWAY_AFTER_S + SLACK_S]
    aways = [c for c in changes if c.window == window and c.state == "away"]
    assert len(aways) == len(long), (long, aways)
    for (start, _end), away in zip(long, aways, strict=True):
        # "since" is the first empty frame (the truth counts walking out as empty already)
        assert start - 1.0 <= away.since <= start + 1.0, (start, away)
        assert away.decided <= start + AWAY_AFTER_S + SLACK_S, (start, away)
    return len(long)


def check_judgements(frames: list[Frame], skip_before: float = 0.0) -> int:
    """Seat and counter per frame equal the truth wherever both are decided."""
    wrong, judged = [], 0
    for t, staff, citizen, analysis in frames:
        if t < skip_before:
            continue
        for obs in analysis.windows:
            for got, want in (
                (obs.staff_occupied, staff[obs.window]),
                (obs.citizen_occupied, citizen[obs.window]),
            ):
                if want is not None and got is not None:
                    judged += 1
                    if got != want:
                        wrong.append((t, obs.window, got, want))
    assert wrong == [], wrong[:10]
    return judged


def busy_hall(still_s: float, break_s: float) -> HallScene:
    """Window 1's clerk leaves for ``break_s``; colleagues cross behind both seats during it."""
    scene = hall_scene(still_s=still_s, break_s=break_s)
    left = 8 + still_s
    scene.actors += [
        passer_by(left + 8.0),
        passer_by(left + 19.0, rightwards=False, walk_s=7.0),
        passer_by(left + AWAY_AFTER_S - 1.0),  # just as "away" is due
        passer_by(left + 45.0, walk_s=4.0),
    ]
    return scene


def test_passers_by_and_flicker_neither_hide_an_absence_nor_fake_one() -> None:
    scene = busy_hall(still_s=40.0, break_s=60.0)
    scene.light_gain = flicker(0.10)  # ±10 %, beating with the 2 frames/s sampling
    config = hall_camera(away_after_s=AWAY_AFTER_S, bootstrap_still_s=3.0, occlusion_s=8.0)
    changes, frames = run(scene, config)
    assert check_timeline(changes, frames, 1) == 1
    assert check_timeline(changes, frames, 2) == 0  # window 2's clerk never leaves
    assert [c.state for c in changes if c.window == 2] == ["present"]
    assert check_judgements(frames) >= 0.9 * 4 * (len(frames) - 3 * FPS)
    assert all(a.windows[0].staff_occupied is not None for _, _, _, a in frames[int(4 * FPS) :])


def test_lights_switched_and_a_dimming_hall_change_nothing() -> None:
    scene = busy_hall(still_s=30.0, break_s=50.0)
    # lights 20 % down while the clerk is away, then up 10 % above the start
    scene.light_gain = light_steps([(20.0, 0.8), (60.0, 1.1), (85.0, 0.9)])
    config = hall_camera(away_after_s=AWAY_AFTER_S, bootstrap_still_s=3.0, occlusion_s=8.0)
    changes, frames = run(scene, config)
    assert check_timeline(changes, frames, 1) == 1
    assert [c.state for c in changes if c.window == 2] == ["present"]
    check_judgements(frames)


def test_a_resolution_change_keeps_judging_and_references_are_kept_per_size(tmp_path: Path) -> None:
    scene = busy_hall(still_s=30.0, break_s=50.0)
    d1 = scene.resized(704, 576)  # the substream switched to D1 (4:3): another analysis shape

    def size(t: float) -> HallScene:
        return d1 if 50.0 <= t < 90.0 else scene

    config = hall_camera(away_after_s=AWAY_AFTER_S, bootstrap_still_s=3.0, occlusion_s=8.0)
    analyzer = CameraAnalyzer(config)
    changes, frames = run(scene, config, size=size, analyzer=analyzer)
    assert check_timeline(changes, frames, 1) == 1
    check_judgements(frames)
    notes = [n for _, _, _, a in frames for n in a.notes if "frame size" in n]
    assert len(notes) == 2 and "rescaled" in notes[0] and "of this size" in notes[1], notes
    # judged on the very first frames after each switch (no 10 s of "unknown")
    for t, _, _, analysis in frames:
        if t in (50.0, 50.5, 90.0, 90.5):
            assert all(o.staff_occupied is not None for o in analysis.windows), t

    # Saved per size, restored by a fresh analyser (a restart) at either size.
    files = ReferenceFiles(tmp_path / config.id)
    files.save(analyzer)
    assert {p.name.split("@")[1] for p in files.directory.glob("*.npz")} == {"320x180.npz"}
    fresh = CameraAnalyzer(config)
    assert files.load(fresh) == 4
    empty = fresh.analyse(analysis_gray(scene.render(0.0, 0), 320), 0.0)
    assert all(o.staff_occupied is False for o in empty.windows)


def test_unjudgeable_pictures_say_so_with_advice() -> None:
    config = hall_camera(
        away_after_s=AWAY_AFTER_S, bootstrap_still_s=3.0, no_reference_after_s=20.0
    )

    dark = hall_scene(still_s=30.0, break_s=10.0)
    dark.light_gain = light_steps([(15.0, 0.08)])  # the lights go out
    _, frames = run(dark, config)
    blind = [a for t, _, _, a in frames if t >= 16.0]
    assert all(
        o.staff_occupied is None and o.citizen_occupied is None for a in blind for o in a.windows
    )

    analyzer = CameraAnalyzer(config)
    for index in range(40):
        t = index / FPS
        analyzer.analyse(analysis_gray(dark.render(t + 15.0, index), 320), t)
    blindness = analyzer.blindness()
    assert blindness is not None and blindness.state == "too_dark" and "照明" in blindness.advice

    strobe = hall_scene(still_s=30.0, break_s=10.0)
    strobe.light_gain = flicker(0.45)
    analyzer = CameraAnalyzer(config)
    for index in range(30):
        analyzer.analyse(analysis_gray(strobe.render(index / FPS, index), 320), index / FPS)
    blindness = analyzer.blindness()
    assert blindness is not None and blindness.state == "flicker" and "50" in blindness.advice

    # Staff already seated when the hall opens and never still long enough: no reference,
    # reported once the grace time is over, with the command that fixes it.
    seated = hall_scene(still_s=30.0, break_s=10.0)
    config = hall_camera(bootstrap_still_s=1000.0, no_reference_after_s=20.0)
    analyzer = CameraAnalyzer(config)
    for index in range(int(19 * FPS)):
        analyzer.analyse(analysis_gray(seated.render(index / FPS, index), 320), index / FPS)
    assert analyzer.blindness() is None  # not yet: the grace time
    analyzer.analyse(analysis_gray(seated.render(20.0, 40), 320), 20.0)
    blindness = analyzer.blindness()
    assert blindness is not None and blindness.state == "no_reference"
    assert "calibrate --window 1" in blindness.advice
    analyzer.calibrate(analysis_gray(seated.render(0.0, 0), 320), 21.0)  # the empty hall
    assert analyzer.blindness() is None


def test_references_saved_before_sizes_were_kept_are_still_used(tmp_path: Path) -> None:
    scene = hall_scene(still_s=30.0, break_s=10.0)
    config = hall_camera(bootstrap_still_s=1000.0)
    analyzer = CameraAnalyzer(config)
    analyzer.calibrate(analysis_gray(scene.render(0.0, 0), 320), 0.0)
    files = ReferenceFiles(tmp_path / config.id)
    files.save(analyzer)
    for path in files.directory.glob("*.npz"):  # as an older gateway named them
        path.rename(path.with_name(path.name.split("@")[0] + ".npz"))
    fresh = CameraAnalyzer(config)
    assert files.load(fresh) == 5
    seated = fresh.analyse(analysis_gray(scene.render(20.0, 40), 320), 20.0)
    assert [o.staff_occupied for o in seated.windows] == [True, True]
    files.save(fresh)  # now under the names that say their size
    assert len(list(files.directory.glob("*@320x180.npz"))) == 5
