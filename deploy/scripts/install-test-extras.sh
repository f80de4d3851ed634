#!/usr/bin/env bash
# Installs what the test suite needs beyond the Python packages: every
# deploy/scripts/install-*-test-deps.sh (cameras, browser, time-series store), each idempotent
# and installing only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for script in "$here"/install-*-test-deps.sh; do
  [ -e "$script" ] || continue
  bash "$script"
done
