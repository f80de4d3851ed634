#!/usr/bin/env bash
# Install what the browser tests of the hall page need: Debian's Chromium (driven by the Python
# playwright package through executable_path; no browser download) and a CJK font, without
# which Chinese renders as empty boxes.
# Idempotent: installs only the Debian packages that are missing.
set -euo pipefail

packages=(
    chromium
    fonts-wqy-microhei
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

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
    fc-cache -f >/dev/null 2>&1 || true
fi

# A last check that the pieces the tests use are really there.
if [ ! -x /usr/bin/chromium ]; then
    echo "/usr/bin/chromium is missing" >&2
    exit 1
fi
if ! fc-list :lang=zh family | grep -qi "wenquanyi"; then
    echo "no CJK font (WenQuanYi Micro Hei) known to fontconfig" >&2
    exit 1
fi
echo "browser test dependencies ready: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
