#!/usr/bin/env bash
# Checks the Prometheus config, the alert rules and the rules' unit tests with promtool.
# promtool comes from Debian's `prometheus` package; install.sh installs it when it is missing (as
# root on Debian, without starting the package's service).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
    bash "$here/install.sh"
fi

cd "$here"
promtool check config prometheus.yml     # also checks the rule files it names
promtool check rules alerts.yml
promtool test rules alerts_test.yml
