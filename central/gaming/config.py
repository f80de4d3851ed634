"""Thresholds of the gaming detector; every default is argued in README.md beside this file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GamingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fdr_q: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Benjamini–Hochberg level, per pattern, across every subject of the run",
    )
    min_presses: int = Field(
        default=20, ge=2, description="a window/staff with fewer presses is not tested"
    )
    min_sessions: int = Field(
        default=20, ge=2, description="a window/staff with fewer sessions is not tested"
    )
    # 1. pressing for citizens
    max_variance_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="REGULAR_TIMING: the subject's variance of log delays at most this share "
        "of the hall's",
    )
    instant_s: float = Field(
        default=1.0, gt=0, description="INSTANT_PRESS: a key this soon after the invitation"
    )
    instant_floor: float = Field(
        default=0.01, gt=0, le=1, description="INSTANT_PRESS: the hall's share is at least this"
    )
    min_instant_ratio: float = Field(
        default=5.0, ge=1, description="INSTANT_PRESS: the subject's share this many times"
    )
    min_streak: int = Field(default=15, ge=2, description="KEY_STREAK: shortest run tested")
    streak_tolerance: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="KEY_STREAK: the other keys taken as this share of their probability "
        "(an honest staff member may draw fewer of them than the hall)",
    )
    idle_grace_s: float = Field(
        default=120.0,
        ge=0,
        description="PRESS_WITHOUT_CITIZEN: a press this long after a service ended, with no "
        "one called since, had no citizen in front of the window",
    )
    idle_floor: float = Field(
        default=0.002, gt=0, le=1, description="PRESS_WITHOUT_CITIZEN: hall rate at least this"
    )
    min_idle_presses: int = Field(
        default=5, ge=1, description="PRESS_WITHOUT_CITIZEN: fewer such presses never open"
    )
    # 2. selective inviting
    long_quantile: float = Field(
        default=0.75,
        gt=0,
        lt=1,
        description="SELECTIVE_INVITING: a service longer than this quantile of its category "
        "in the hall counts as long",
    )
    min_odds_ratio: float = Field(
        default=4.0, ge=1, description="SELECTIVE_INVITING: odds of skipping long ones at least"
    )
    cancel_floor: float = Field(
        default=0.05, gt=0, le=1, description="CANCELLED_INVITATIONS: hall rate at least this"
    )
    min_cancel_ratio: float = Field(
        default=4.0, ge=1, description="CANCELLED_INVITATIONS: subject's rate this many times"
    )
    max_rate_ratio: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="LOW_EVALUATION_RATE: 评价率 at most this share of the hall's for the same "
        "services",
    )
    # 3. 恶意差评
    min_bad_reviews: int = Field(
        default=3, ge=2, description="恶意差评 patterns: fewer bad reviews from a source never open"
    )
    bad_floor: float = Field(
        default=0.02, ge=0, le=1, description="恶意差评: the hall's bad-review share at least this"
    )
    abandoned_floor: float = Field(
        default=0.002,
        gt=0,
        le=1,
        description="MALICIOUS_ABANDONED_CASES: the hall's share of presses that are bad reviews "
        "of abandoned cases at least this",
    )
    abandoned_span_days: int = Field(
        default=2, ge=1, description="MALICIOUS_ABANDONED_CASES: the short span, in days"
    )
    # 4. distribution shifts
    min_total_variation: float = Field(
        default=0.12,
        gt=0,
        le=1,
        description="DISTRIBUTION_SHIFT: total variation distance from the hall at least this",
    )
    tolerated_variation: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="DISTRIBUTION_SHIFT: a departure up to this total variation is what staff "
        "differences make normal; the test is against the hall's distribution moved this far "
        "towards the subject's",
    )
