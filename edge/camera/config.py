"""Camera configuration: one model per camera, validated at start with the path of a bad field.

Region coordinates are fractions of the frame width and height (0…1, origin top-left), so the
same configuration survives a change of the camera's substream resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Fraction, Fraction]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Polygon(_Model):
    """A closed polygon of at least three points, in frame fractions."""

    points: list[Point] = Field(min_length=3, max_length=64)

    @field_validator("points")
    @classmethod
    def _has_area(cls, points: list[Point]) -> list[Point]:
        area = 0.0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
            area += x0 * y1 - x1 * y0
        if abs(area) / 2 < 1e-4:
            raise ValueError("polygon has (almost) no area")
        return points

    @classmethod
    def rect(cls, x0: float, y0: float, x1: float, y1: float) -> Polygon:
        return cls(points=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


class WindowRegions(_Model):
    """One service window (窗口) as the camera sees it."""

    window: int = Field(
        ge=1, le=99_999, description="window number, as on the evaluator and queue machine"
    )
    staff_seat: Polygon = Field(description="where the staff member sits when serving")
    citizen_side: Polygon = Field(description="where a citizen stands or sits at the counter")


class CameraConfig(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    url: str = Field(min_length=1, description="rtsp://… or http://… (MJPEG); a file for tests")
    backend: Literal["auto", "opencv", "mjpeg"] = "auto"
    fps: float = Field(default=2.0, gt=0, le=15, description="analysed frames per second")
    windows: list[WindowRegions] = Field(default_factory=list)
    waiting_area: Polygon | None = None
    away_after_s: float = Field(
        default=120.0, gt=0, description="an empty seat for this long makes staff 'away'"
    )
    present_after_s: float = Field(
        default=2.0, ge=0, description="an occupied seat for this long makes staff 'present'"
    )
    occlusion_s: float = Field(
        default=8.0,
        ge=0,
        description="a seat judged otherwise for less than this (a passer-by, a citizen leaning "
        "in) does not interrupt a present or away run",
    )
    open_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=3.0, gt=0)
    analysis_width: int = Field(default=320, ge=80, le=1280)
    person_area: float = Field(
        default=0.008,
        gt=0,
        lt=0.5,
        description="one person's blob in the waiting area, as a fraction of the frame area",
    )
    bootstrap_still_s: float = Field(
        default=10.0,
        gt=0,
        description="with no empty-seat reference yet, a region still this long becomes it",
    )
    no_reference_after_s: float = Field(
        default=60.0,
        gt=0,
        description="a seat or counter still without an empty reference this long after the "
        "start is reported (health no_reference: calibrate it)",
    )
    relearn_still_s: float = Field(
        default=1800.0,
        gt=0,
        description="an 'occupied' region without the least motion this long is an object "
        "(a moved chair), not a person: the reference is taken again",
    )

    @model_validator(mode="after")
    def _distinct_windows(self) -> CameraConfig:
        numbers = [w.window for w in self.windows]
        if len(numbers) != len(set(numbers)):
            raise ValueError(f"camera {self.id}: a window appears twice in {numbers}")
        return self


class EvidenceConfig(_Model):
    retention_days: float = Field(default=30.0, gt=0)
    min_free_bytes: int = Field(
        default=2 * 1024**3, ge=0, description="below this free space, oldest evidence goes first"
    )
    max_bytes: int | None = Field(
        default=None, ge=0, description="optional cap on the evidence directory's own size"
    )
    snapshot_quality: int = Field(default=85, ge=30, le=100)
    clip_before_s: float = Field(default=5.0, ge=0)
    clip_after_s: float = Field(default=3.0, ge=0)


class VerdictConfig(_Model):
    before_s: float = Field(default=3.0, ge=0, description="seconds before the press looked at")
    after_s: float = Field(default=1.0, ge=0, description="seconds after the press looked at")
    min_frames: int = Field(default=3, ge=1)
    present_fraction: float = Field(default=0.25, gt=0, le=1)
    max_wait_s: float = Field(default=3.0, ge=0, description="longest wait for late frames")


class CameraServiceConfig(_Model):
    cameras: list[CameraConfig]
    evidence_dir: Path
    evidence: EvidenceConfig = EvidenceConfig()
    verdict: VerdictConfig = VerdictConfig()
    cameras_per_worker: int = Field(default=1, ge=1, le=32)
    worker_max_rss_mb: int = Field(
        default=512,
        ge=32,
        description="a camera worker using more memory than this (a leak "
        "in a decoder) is restarted",
    )
    worker_timeout_s: float = Field(
        default=10.0, gt=0, description="a worker silent this long is killed and restarted"
    )
    state_dir: Path | None = Field(
        default=None,
        description="empty-seat references kept across restarts; default <evidence>/state",
    )
    retention_every_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _distinct_cameras(self) -> CameraServiceConfig:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError(f"a camera id appears twice in {ids}")
        return self
