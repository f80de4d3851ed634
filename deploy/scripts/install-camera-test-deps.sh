#!/usr/bin/env bash
# Install what the camera tests need and fetch Debian's vtest.avi into the project cache.
# Idempotent: installs only missing Debian packages; re-fetches the video only when absent.
#   - GStreamer RTSP server for Debian's own python3 (python3-gi is not in the venv): the
#     simulator runs the RTSP server script as a /usr/bin/python3 subprocess;
#   - x264enc (plugins-ugly) and jpegdec/rtp payloaders (plugins-good) for the served streams;
#   - opencv-doc's vtest.avi (768×576, 10 fps, real pedestrians), unpacked with dpkg -x.
# Usage: deploy/scripts/install-camera-test-deps.sh [cache dir, default <repo>/var/cache/camera]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${1:-$repo/var/cache/camera}"

packages=(
    python3-gi
    gir1.2-gstreamer-1.0
    gir1.2-gst-plugins-base-1.0
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly
    gstreamer1.0-libav
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

updated=0
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    updated=1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
fi

mkdir -p "$cache"
if [ ! -s "$cache/vtest.avi" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    chmod 0755 "$work"  # apt-get download runs as _apt and must be able to write there
    if [ "$updated" -eq 0 ]; then as_root apt-get update -qq; fi
    (cd "$work" && apt-get download -qq opencv-doc)
    dpkg -x "$work"/opencv-doc_*.deb "$work/x"
    found="$(find "$work/x" -name vtest.avi -print -quit)"
    if [ -z "$found" ]; then
        echo "vtest.avi not found in opencv-doc" >&2
        exit 1
    fi
    cp "$found" "$cache/vtest.avi.part"
    mv "$cache/vtest.avi.part" "$cache/vtest.avi"
fi

# A last check that the pieces the tests use are really there.
/usr/bin/python3 - <<'PY'
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401

Gst.init(None)
for element in ("x264enc", "rtph264pay", "jpegdec", "multifilesrc", "videoconvert"):
    if Gst.ElementFactory.find(element) is None:
        raise SystemExit(f"GStreamer element {element} is missing")
PY
echo "camera test dependencies ready; vtest.avi in $cache"
