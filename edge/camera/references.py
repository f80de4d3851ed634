"""Empty-seat references on disk, one file per region and analysis size.

    <state_dir>/<camera>/w1-staff@320x180.npz

Kept across restarts, and per size so that a camera switched between streams of different
shapes finds its references again. The worker saves and loads them; the command line's
calibration writes them from its own connection to the camera, and a running worker notices
the newer files and loads them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge.camera.analytics import CameraAnalyzer, Reference, Shape

log = logging.getLogger(__name__)


class ReferenceFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, analyzer: CameraAnalyzer) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for shape, references in analyzer.references().items():
            for name, ref in references.items():
                if ref.source == "rescaled":
                    continue  # a stand-in, not a reference of this size
                target = self.directory / f"{name}@{shape[1]}x{shape[0]}.npz"
                partial = target.with_name(target.name + ".part")
                with partial.open("wb") as handle:
                    np.savez(
                        handle,
                        image=ref.image,
                        level=np.float64(ref.level),
                        source=np.str_(ref.source),
                    )
                partial.replace(target)

    def load(self, analyzer: CameraAnalyzer) -> int:
        """Give the analyser every readable reference; returns how many it took."""
        taken = 0
        if not self.directory.is_dir():
            return 0
        for path in sorted(self.directory.glob("*.npz")):
            try:
                name, shape = reference_name(path.name)
                with np.load(path) as data:
                    reference = Reference(
                        image=data["image"].astype(np.float32),
                        level=float(data["level"]),
                        source="persisted",
                        taken=time.monotonic(),
                    )
            except (OSError, ValueError, KeyError) as error:
                log.warning("unreadable reference %s: %s", path, error)
                continue
            taken += analyzer.restore(name, reference, shape)
        return taken

    def newest_mtime(self) -> float:
        if not self.directory.is_dir():
            return 0.0
        return max((p.stat().st_mtime for p in self.directory.glob("*.npz")), default=0.0)


def reference_name(filename: str) -> tuple[str, Shape | None]:
    """``w1-staff@320x180.npz`` → ("w1-staff", (180, 320)); ``w1-staff.npz`` (saved before
    sizes were kept) → ("w1-staff", None)."""
    name, _, size = filename.removesuffix(".npz").partition("@")
    if not size:
        return name, None
    width, _, height = size.partition("x")
    return name, (int(height), int(width))
