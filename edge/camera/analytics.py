# Long module: CameraAnalyzer is one frame pipeline whose stages (motion gate, light, references,
# occupancy, waiting count) share per-region state across frames.
"""Per-frame analysis of one camera: seat and counter occupancy, waiting-area count, motion.

No I/O and no clock of its own: frames come in with their monotonic stamp, so the same code
runs in the worker on a live stream and in tests on a rendered ten-minute scene in seconds.

Occupancy compares a region with its *empty reference* (the seat with nobody in it), not with a
background model: MOG2 absorbs a person who sits still in ~12 s at 2 fps
(docs/field-notes.md#opencv), and a clerk reading a file for ten minutes is present. The reference
comes from a technician's calibration, from a previous run, or, failing both, from the first long
still period (the hall empty at start). While a region is judged empty and still it follows slow
lighting drift; a region "occupied" without the least motion for ``relearn_still_s`` is an object (a
moved chair), and is relearnt.

Motion gating: frame differencing on the reduced grayscale frame (~0.1 ms) decides what else
runs. A still region keeps its last score, MOG2 runs only when the waiting area moves.

Light: lamps flicker and clouds pass. Both frame differencing and the comparison with a
reference first scale the older image by the frame's brightness ratio (a robust median), so a
uniform change of light is neither motion nor presence. What cannot be compensated (a frame too
dark to see into, brightness swinging more than the compensation can follow, a region with no
reference) is reported by ``blindness()`` so the camera's health says it, instead of judging
quietly wrong or quietly nothing.

References are kept per analysis size: a camera switched to a substream of another shape uses
the references taken at that shape if there are any, else its old ones rescaled (and says so).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.camera.config import CameraConfig, Polygon

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]
ScalarT = TypeVar("ScalarT", bound=np.generic)
RegionKind = Literal["staff", "citizen", "waiting"]

MOTION_LEVEL = 14  # grey levels between analysed frames that count as motion (noise σ≈2–4)
MOTION_FRACTION = 0.01  # share of a region's pixels that must move to call it moving
DIFF_LEVEL = 22  # grey levels from the reference that count as "something is here"
DIFF_RELATIVE = 0.15  # … or this share of the reference level, for bright regions
OCCUPIED_SCORE = 0.10  # share of a seat region that differs from empty: someone is there
REFRESH_S = 5.0  # even a still region is re-scored this often (lighting drifts)
DRIFT_ALPHA = 0.05  # how fast an empty, still region's reference follows slow light changes
SETTLE_S = 2.0  # still this long after motion before a region counts as settled
MOG_WARMUP = 6  # frames before MOG2's foreground means anything
DARK_LEVEL = 22.0  # a frame darker than this (median grey) hides people: no judgement
SWING_LIMIT = 0.25  # median |log brightness ratio| between frames beyond which light is chaos
SWING_FRAMES = 8  # frames the light's swing and the frame-wide motion are judged over
SAME_LEVEL = 2  # grey levels a re-encoded copy of one picture may differ by
SAME_SHARE = 0.0005  # … on at most this share of pixels (a live sensor's noise moves far more)
FRAME_WIDE_MOTION = 0.6  # more than this share of the frame "moving" is light or a shaken camera

Shape = tuple[int, int]  # analysis (height, width)


@dataclass(slots=True)
class Reference:
    image: NDArray[np.float32]
    level: float  # the frame's brightness when taken, for gain compensation
    source: Literal["bootstrap", "calibrated", "persisted", "relearned", "rescaled"]
    taken: float


@dataclass(frozen=True, slots=True)
class Blindness:
    """Why the analysis cannot judge (some of) what it watches: a camera health state."""

    state: Literal["too_dark", "flicker", "no_reference"]
    reason: str
    advice: str


@dataclass(slots=True)
class Region:
    name: str
    kind: RegionKind
    window: int
    polygon: Polygon
    mask: Image = field(default_factory=lambda: np.zeros((1, 1), np.uint8))
    box: tuple[int, int, int, int] = (0, 0, 1, 1)  # x0, y0, x1, y1 at analysis size
    area: int = 1
    reference: Reference | None = None
    last_motion: float | None = None
    score: float | None = None
    scored_at: float = -1e18
    occupied_since_still: float | None = None

    def crop(self, image: NDArray[ScalarT]) -> NDArray[ScalarT]:
        x0, y0, x1, y1 = self.box
        return image[y0:y1, x0:x1]


@dataclass(frozen=True, slots=True)
class WindowObservation:
    window: int
    staff_occupied: bool | None
    staff_score: float | None
    citizen_occupied: bool | None
    citizen_score: float | None


@dataclass(frozen=True, slots=True)
class WaitingEstimate:
    count: int
    confidence: float
    basis: str


@dataclass(frozen=True, slots=True)
class Analysis:
    mono: float
    windows: tuple[WindowObservation, ...]
    waiting: WaitingEstimate | None
    motion: float  # share of all regions' pixels that moved
    gated: bool  # nothing moved: only the cheap path ran
    notes: tuple[str, ...] = ()


class CameraAnalyzer:
    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.regions: list[Region] = []
        for w in config.windows:
            self.regions.append(Region(f"w{w.window}-staff", "staff", w.window, w.staff_seat))
            self.regions.append(Region(f"w{w.window}-citizen", "citizen", w.window, w.citizen_side))
        self.waiting: Region | None = None
        if config.waiting_area is not None:
            self.waiting = Region("waiting", "waiting", 0, config.waiting_area)
            self.regions.append(self.waiting)
        self._shape: tuple[int, int] | None = None
        self._previous: Image | None = None
        self._started: float | None = None
        self._mog: cv2.BackgroundSubtractorMOG2 | None = None
        self._mog_frames = 0
        self._counts: deque[int] = deque(maxlen=5)
        self._waiting_last: WaitingEstimate | None = None
        self._previous_level = 0.0
        self.frames_mono = 0.0
        self._swings: deque[float] = deque(maxlen=SWING_FRAMES)
        self._wide_motion: deque[bool] = deque(maxlen=SWING_FRAMES)
        self._blind: Blindness | None = None
        # references of the other analysis sizes this camera was seen at
        self._by_shape: dict[Shape, dict[str, Reference]] = {}
        self._unsized: dict[str, Reference] = {}  # from files that did not say their size
        self.frames = 0
        self.gated_frames = 0

    # -- references ------------------------------------------------------------------------

    def calibrate(
        self,
        gray: Image,
        mono: float,
        regions: list[str] | None = None,
        windows: list[int] | None = None,
    ) -> list[str]:
        """Take the current frame as the empty reference (a technician says: nobody there),
        of the named regions, or of the given windows' seat and counter, or of everything."""
        self._ensure_geometry(gray)
        smooth = _smooth(gray)
        level = _level(smooth)
        taken = []
        for region in self.regions:
            chosen = (regions is None or region.name in regions) and (
                windows is None or (region.kind != "waiting" and region.window in windows)
            )
            if chosen:
                region.reference = Reference(
                    region.crop(smooth).astype(np.float32), level, "calibrated", mono
                )
                region.score = None
                taken.append(region.name)
        return taken

    def references(self) -> dict[Shape, dict[str, Reference]]:
        """Every reference held, by the analysis size it belongs to."""
        every = {shape: dict(refs) for shape, refs in self._by_shape.items()}
        if self._shape is not None:
            current = {r.name: r.reference for r in self.regions if r.reference is not None}
            if current:
                every[self._shape] = current
        return every

    def restore(self, name: str, reference: Reference, shape: Shape | None) -> bool:
        """Load a persisted reference taken at analysis size ``shape``; None for a file saved
        before sizes were kept: it is used at the first size whose region it fits."""
        if not any(region.name == name for region in self.regions):
            return False
        if shape is None:
            self._unsized[name] = reference
            return True
        if shape == self._shape:
            region = self._region(name)
            x0, y0, x1, y1 = region.box
            if reference.image.shape != (y1 - y0, x1 - x0):
                return False
            region.reference = reference
            region.score = None  # judged against it from the next frame on
        else:
            self._by_shape.setdefault(shape, {})[name] = reference
        return True

    def blindness(self) -> Blindness | None:
        """What the analysis cannot judge right now, worst first; None when all is judged."""
        if self._blind is not None:
            return self._blind
        if self._started is None or self._shape is None:
            return None
        missing = [r for r in self.regions if r.kind != "waiting" and r.reference is None]
        waited = self.frames_mono - self._started
        if missing and waited >= self.config.no_reference_after_s:
            windows = sorted({r.window for r in missing})
            names = "、".join(r.name for r in missing)
            return Blindness(
                "no_reference",
                f"无空座参照，无法判断 / no empty reference for {names}",
                "座位和柜台无人时校准 / calibrate while seat and counter are empty: "
                f"hallwatch-edge camera calibrate --window {windows[0]}",
            )
        return None

    # -- the per-frame path ----------------------------------------------------------------

    def analyse(self, gray: Image, mono: float) -> Analysis:
        notes: list[str] = []
        note = self._ensure_geometry(gray)
        if note:
            notes.append(note)
        self.frames += 1
        self.frames_mono = mono
        if self._started is None:
            self._started = mono
        smooth = _smooth(gray)
        level = _level(smooth)
        moving = None
        if self._previous is not None:
            ratio = level / self._previous_level if self._previous_level > 1 else 1.0
            self._swings.append(abs(float(np.log(max(ratio, 1e-3)))))
            previous = self._previous
            if abs(ratio - 1.0) > 0.005:
                # Compensate a uniform change of light before differencing.
                previous = np.asarray(cv2.convertScaleAbs(previous, alpha=ratio), np.uint8)
            moving = cv2.absdiff(smooth, previous) > MOTION_LEVEL
            share = np.count_nonzero(moving[::2, ::2]) / max(1, moving[::2, ::2].size)
            self._wide_motion.append(bool(share > FRAME_WIDE_MOTION))
        self._previous = smooth
        self._previous_level = level
        self._blind = self._judge_light(level)
        if self._blind is not None:
            # Nothing here can be trusted: no scores, no references, no motion history.
            for region in self.regions:
                region.score = None
                region.last_motion = mono
            windows = tuple(self._observe(w.window) for w in self.config.windows)
            return Analysis(mono, windows, None, 0.0, False, tuple(notes))
        moved_px = 0
        total_px = 0
        for region in self.regions:
            total_px += region.area
            if moving is None:
                continue
            moved = int(np.count_nonzero(region.crop(moving) & (region.crop(region.mask) > 0)))
            moved_px += moved
            if moved > MOTION_FRACTION * region.area:
                region.last_motion = mono
        gated = moving is not None and moved_px <= MOTION_FRACTION * total_px * 0.1
        if gated:
            self.gated_frames += 1
        for region in self.regions:
            if region.kind != "waiting":
                self._score(region, smooth, level, mono, notes)
        windows = tuple(self._observe(w.window) for w in self.config.windows)
        waiting = None
        if self.waiting is not None:
            waiting = self._count_waiting(self.waiting, smooth, level, mono, gated)
        motion = moved_px / max(1, total_px)
        return Analysis(mono, windows, waiting, motion, gated, tuple(notes))

    def _judge_light(self, level: float) -> Blindness | None:
        if level < DARK_LEVEL:
            return Blindness(
                "too_dark",
                f"画面过暗（亮度 {level:.0f}），无法判断 / too dark to judge (level {level:.0f})",
                "检查大厅照明、摄像头红外或曝光设置 / check the hall lights or the camera's "
                "exposure / infrared",
            )
        full = len(self._swings) == SWING_FRAMES
        if full and float(np.median(np.asarray(self._swings))) > SWING_LIMIT:
            return Blindness(
                "flicker",
                "光线剧烈闪烁，无法判断 / light flickers too strongly to judge",
                "更换闪烁灯管或调整摄像头防闪烁(50Hz)设置 / replace the flickering lamp or set "
                "the camera's anti-flicker to 50 Hz",
            )
        if len(self._wide_motion) == SWING_FRAMES and sum(self._wide_motion) >= SWING_FRAMES - 2:
            return Blindness(
                "flicker",
                "整个画面持续变化（闪烁条纹或摄像头晃动），无法判断 / the whole picture keeps "
                "changing (flicker bands or a shaking camera)",
                "检查灯光防闪烁设置和摄像头固定 / check anti-flicker and the camera's mount",
            )
        return None

    def _score(
        self, region: Region, smooth: Image, level: float, mono: float, notes: list[str]
    ) -> None:
        still_for = mono - (region.last_motion if region.last_motion is not None else self._t0())
        if region.reference is None:
            if still_for >= self.config.bootstrap_still_s:
                region.reference = Reference(
                    region.crop(smooth).astype(np.float32), level, "bootstrap", mono
                )
                notes.append(f"{region.name}: empty reference taken after {still_for:.0f} s still")
            else:
                return
        recently_moved = still_for < SETTLE_S
        if not recently_moved and region.score is not None and mono - region.scored_at < REFRESH_S:
            return  # gated: nothing moved, the last score stands
        reference = region.reference
        crop = region.crop(smooth).astype(np.float32)
        gain = level / reference.level if reference.level > 1 else 1.0
        expected = reference.image * gain
        threshold = np.maximum(DIFF_LEVEL, DIFF_RELATIVE * expected)
        differs = (np.abs(crop - expected) > threshold) & (region.crop(region.mask) > 0)
        region.score = float(np.count_nonzero(differs)) / region.area
        region.scored_at = mono
        occupied = region.score >= OCCUPIED_SCORE
        if occupied and not recently_moved:
            if region.occupied_since_still is None:
                region.occupied_since_still = mono - still_for
            if mono - region.occupied_since_still >= self.config.relearn_still_s:
                region.reference = Reference(crop, level, "relearned", mono)
                region.score = 0.0
                region.occupied_since_still = None
                notes.append(f"{region.name}: unchanged for {still_for:.0f} s, reference relearned")
        else:
            region.occupied_since_still = None
        if not occupied and not recently_moved and region.score < OCCUPIED_SCORE / 2:
            # Empty and still: follow slow lighting changes.
            blended = cv2.addWeighted(
                reference.image, 1 - DRIFT_ALPHA, crop / max(gain, 1e-3), DRIFT_ALPHA, 0
            )
            reference.image = np.asarray(blended, dtype=np.float32)

    def _observe(self, window: int) -> WindowObservation:
        staff = self._region(f"w{window}-staff")
        citizen = self._region(f"w{window}-citizen")
        if self._blind is not None:
            return WindowObservation(window, None, None, None, None)
        return WindowObservation(
            window=window,
            staff_occupied=None if staff.score is None else staff.score >= OCCUPIED_SCORE,
            staff_score=staff.score,
            citizen_occupied=None if citizen.score is None else citizen.score >= OCCUPIED_SCORE,
            citizen_score=citizen.score,
        )

    def _count_waiting(
        self, region: Region, smooth: Image, level: float, mono: float, gated: bool
    ) -> WaitingEstimate:
        # No bootstrap here: a waiting area is rarely empty, and a person standing in a
        # "still" area (pedestrians move only a few % of its pixels) would stay as a ghost.
        # A reference comes only from a calibration (or its persisted copy).
        still_for = mono - (region.last_motion if region.last_motion is not None else self._t0())
        if (
            self._waiting_last is not None
            and still_for >= SETTLE_S
            and (mono - region.scored_at < REFRESH_S)
        ):
            return self._waiting_last
        crop = region.crop(smooth)
        inside = region.crop(region.mask) > 0
        if self._mog is None:
            # History in frames: ~60 s at the analysed rate.
            history = max(20, int(60 * self.config.fps))
            self._mog = cv2.createBackgroundSubtractorMOG2(history, 16.0, False)
            self._mog_frames = 0
        moving = np.asarray(self._mog.apply(crop)) > 0
        foreground = moving
        basis = "motion only: people sitting still may be missed"
        if region.reference is not None:
            gain = level / region.reference.level if region.reference.level > 1 else 1.0
            expected = region.reference.image * gain
            threshold = np.maximum(DIFF_LEVEL, DIFF_RELATIVE * expected)
            foreground = foreground | (np.abs(crop.astype(np.float32) - expected) > threshold)
            basis = "empty-area reference and motion"
        raw = (foreground & inside).astype(np.uint8) * 255
        kernel = np.ones((3, 3), np.uint8)
        opened = cv2.morphologyEx(raw, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel, iterations=2)
        self._mog_frames += 1
        if self._mog_frames < MOG_WARMUP and region.reference is None:
            # MOG2's first frames call everything foreground; say nothing rather than nonsense.
            return WaitingEstimate(0, 0.0, "warming up")
        count, single, people = _blob_people(np.asarray(mask, np.uint8), self._person_px())
        self._counts.append(count)
        smoothed = int(np.median(np.asarray(self._counts)))
        spread = float(np.std(np.asarray(self._counts))) if len(self._counts) > 1 else 0.0
        confidence = 1.0 if people == 0 else single / people
        confidence *= 1.0 / (1.0 + spread)
        if region.reference is None:
            confidence *= 0.6
        region.scored_at = mono
        estimate = WaitingEstimate(smoothed, round(min(1.0, max(0.0, confidence)), 2), basis)
        self._waiting_last = estimate
        return estimate

    # -- geometry --------------------------------------------------------------------------

    def _ensure_geometry(self, gray: Image) -> str | None:
        """Fit the regions to the frame's size; on a change, switch to that size's references
        (or rescale the old ones). Returns a note when the size changed."""
        shape = (int(gray.shape[0]), int(gray.shape[1]))
        if shape == self._shape:
            return None
        old_shape = self._shape
        kept = {r.name: r.reference for r in self.regions if r.reference is not None}
        if old_shape is not None:
            log.warning("camera %s: frame size changed %s → %s", self.config.id, old_shape, shape)
            if kept:
                self._by_shape[old_shape] = kept
        self._shape = shape
        self._previous = None
        self._mog = None
        waiting = self._by_shape.pop(shape, {})
        height, width = shape
        for region in self.regions:
            full = np.zeros(shape, np.uint8)
            points = np.array(
                [
                    (round(x * (width - 1)), round(y * (height - 1)))
                    for x, y in region.polygon.points
                ],
                dtype=np.int32,
            )
            cv2.fillPoly(full, [points], (255,))
            x, y, w, h = cv2.boundingRect(points)
            region.box = (x, y, x + w, y + h)
            region.mask = full
            region.area = max(1, int(np.count_nonzero(region.crop(full))))
            stored = waiting.get(region.name)
            unsized = self._unsized.get(region.name)
            if (
                (stored is None or stored.image.shape != (h, w))
                and unsized is not None
                and unsized.image.shape == (h, w)
            ):
                stored = self._unsized.pop(region.name)
            if stored is not None and stored.image.shape == (h, w):
                region.reference = stored
            else:
                other = region.reference if old_shape is not None else None
                if other is None:  # persisted at another size only
                    other = next(
                        (
                            refs[region.name]
                            for refs in self._by_shape.values()
                            if region.name in refs
                        ),
                        None,
                    )
                region.reference = (
                    None
                    if other is None
                    else Reference(
                        np.asarray(
                            cv2.resize(
                                other.image, (max(1, w), max(1, h)), interpolation=cv2.INTER_AREA
                            ),
                            np.float32,
                        ),
                        other.level,
                        "rescaled",
                        other.taken,
                    )
                )
            region.score = None
        rescaled = [
            r.name
            for r in self.regions
            if r.reference is not None and r.reference.source == "rescaled"
        ]
        if old_shape is None:
            return f"references of another frame size rescaled: {rescaled}" if rescaled else None
        how = "rescaled references of the old size" if rescaled else "references of this size"
        return f"frame size {old_shape[1]}×{old_shape[0]} → {shape[1]}×{shape[0]}: {how}"

    def _region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def _t0(self) -> float:
        return self._started if self._started is not None else 0.0

    def _person_px(self) -> float:
        if self._shape is None:
            return 1.0
        return self.config.person_area * self._shape[0] * self._shape[1]


def same_picture(gray: Image, last: Image | None) -> bool:
    """The same picture again (a frozen stream re-encoding its last frame), not a still hall:
    a live sensor's noise changes far more than a few pixels between frames."""
    if last is None or last.shape != gray.shape:
        return False
    changed = np.count_nonzero(cv2.absdiff(gray, last) > SAME_LEVEL)
    return bool(changed <= SAME_SHARE * gray.size)


def _smooth(gray: Image) -> Image:
    return np.asarray(cv2.blur(gray, (3, 3)), dtype=np.uint8)


def _level(smooth: Image) -> float:
    """Frame brightness robust to people walking through: the median of a sparse grid."""
    return float(np.median(smooth[::4, ::4]))


def _blob_people(mask: Image, person_px: float) -> tuple[int, int, int]:
    """(people, people in single-person-sized blobs, people) from a foreground mask.

    ``person_px`` is a typical person; perspective makes near people up to ~2.5× bigger and
    far ones ~3× smaller, so one blob is one person across that range, and only a blob beyond
    it (people standing together) counts as several, with less confidence."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    people = 0
    single = 0
    for label in range(1, n):
        area = float(stats[label, cv2.CC_STAT_AREA])
        if area < 0.3 * person_px:
            continue
        if area <= 2.5 * person_px:
            people += 1
            single += 1
        else:
            people += max(2, round(area / (1.6 * person_px)))
    return people, single, people


def analysis_gray(image: Image, width: int) -> Image:
    """A BGR or grey frame reduced to the analysis width, grey."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if gray.shape[1] != width:
        height = round(gray.shape[0] * width / gray.shape[1])
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return np.asarray(gray, dtype=np.uint8)
