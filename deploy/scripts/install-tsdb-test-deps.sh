#!/usr/bin/env bash
# Install what the time-series tests need: Debian's VictoriaMetrics, which accepts the InfluxDB v2
# write API that central's sink uses (InfluxDB 2.x itself is not packaged in Debian).
# Idempotent: installs only when missing. The package's own service is not used: the tests start
# private instances on free ports (and a host without systemd does not start it at all).
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! dpkg-query -W -f='${Status}' victoria-metrics 2>/dev/null | grep -q "install ok installed"
then
    echo "installing: victoria-metrics"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        victoria-metrics
    # the package enables a system instance on :8428; the tests never use it
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now victoria-metrics >/dev/null 2>&1 || true
    fi
fi
test -x /usr/bin/victoria-metrics || { echo "/usr/bin/victoria-metrics is missing" >&2; exit 1; }
echo "time-series test dependencies ready"
