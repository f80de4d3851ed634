"""A tested subject before false-discovery control: the anomaly it would open, and whether its
effect and sample are large enough to open one at all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from central.gaming.context import HallView, Subject
from central.gaming.model import Anomaly, JSONValue, Pattern, PressFact


@dataclass(frozen=True, slots=True)
class Finding:
    anomaly: Anomaly
    notable: bool  # the effect passes its floor (the test alone never opens a case)


def press_refs(presses: Iterable[PressFact]) -> list[JSONValue]:
    return [[gw, seq] for gw, seq in sorted({p.ref for p in presses})]


def finding(
    view: HallView,
    pattern: Pattern,
    subject: Subject | None,
    *,
    p_value: float,
    effect: float,
    effect_name: str,
    method: str,
    summary: str,
    evidence: Mapping[str, JSONValue],
    notable: bool,
) -> Finding:
    window, staff = subject if subject is not None else (None, None)
    return Finding(
        Anomaly(
            pattern=pattern,
            hall_id=view.facts.hall_id,
            window=window,
            staff=staff,
            period=view.facts.period,
            p_value=p_value,
            effect=round(effect, 6),
            effect_name=effect_name,
            method=method,
            summary=summary,
            evidence=dict(evidence),
        ),
        notable,
    )


def where(subject: Subject) -> str:
    """The subject in a summary: the window only (a staff number is personal data)."""
    return f"{subject[0]}号窗口"
