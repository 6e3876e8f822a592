#!/usr/bin/env bash
# Checks the Prometheus config, the alert rules and the rules' unit tests with promtool.
# promtool comes from Debian's `prometheus` package; as root on Debian it is installed when
# missing. (Where systemd runs, installing the package also starts a Prometheus server on :9090.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "check.sh: promtool missing; installing Debian's prometheus package" >&2
        export DEBIAN_FRONTEND=noninteractive
        # the package lists may be empty or stale on a fresh machine
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends prometheus >&2
    else
        echo "check.sh: promtool not found; install Debian's 'prometheus' package" \
             "(apt-get install prometheus, as root)" >&2
        exit 2
    fi
fi

cd "$here"
promtool check config prometheus.yml     # also checks the rule files it names
promtool check rules alerts.yml
promtool test rules alerts_test.yml
