#!/bin/sh
# The `collector` command as the systemd unit runs it: as the service's user, in its working
# directory, with its configuration. Installed as /usr/local/bin/collector (docs/deployment.md),
# so that `collector backups` and `collector replay` in the runbook read the service's files and
# database, and every file they create belongs to the service, whoever types them.
#
# The values match collector.service; SERVICE_USER, SERVICE_DIR and SERVICE_BIN override them
# (they are not COLLECTOR_* variables, which the collector reads as settings).
set -eu

user="${SERVICE_USER:-collector}"
dir="${SERVICE_DIR:-/var/lib/collector}"
bin="${SERVICE_BIN:-/opt/collector/bin/collector}"
config="${COLLECTOR_CONFIG:-/etc/collector/collector.yaml}"

if [ "$(id -un)" = "$user" ]; then
    exec env -C "$dir" COLLECTOR_CONFIG="$config" "$bin" "$@"
elif [ "$(id -u)" -eq 0 ]; then
    exec runuser -u "$user" -- env -C "$dir" COLLECTOR_CONFIG="$config" "$bin" "$@"
else
    exec sudo -u "$user" -- env -C "$dir" COLLECTOR_CONFIG="$config" "$bin" "$@"
fi
