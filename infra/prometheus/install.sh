#!/usr/bin/env bash
# Installs Debian's prometheus and prometheus-alertmanager packages when their binaries are
# missing, as root on Debian; elsewhere it says what is missing and leaves the choice to the
# caller (check.sh stops; `make test` goes on, and the end-to-end test fails under CI=true).
#
# The packages ship services that start on install where systemd runs: a Prometheus on :9090
# and an Alertmanager on :9093 that nobody asked for. A policy-rc.d that refuses every start
# keeps them stopped while apt runs (only if the machine has none of its own), and the services
# this script installed are disabled afterwards, so nothing is left running or set to run at boot.
set -euo pipefail

declare -A binary_of=([prometheus]=promtool [prometheus-alertmanager]=prometheus-alertmanager)
missing=()
for package in prometheus prometheus-alertmanager; do
    command -v "${binary_of[$package]}" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} = 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: ${missing[*]} missing; install Debian's packages (apt-get install" \
         "${missing[*]}, as root)" >&2
    exit 2
fi

echo "install.sh: installing Debian's ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
# the package lists may be empty or stale on a fresh machine
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
if [ -d /run/systemd/system ]; then
    for package in "${missing[@]}"; do
        systemctl disable --now "$package.service" >&2 || true
    done
fi
