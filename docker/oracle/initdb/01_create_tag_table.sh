#!/bin/bash
# Creates the collector's table when the database is first initialised.
#
# The image runs every script in /container-entrypoint-initdb.d once, after it has created the
# database and the application user (APP_USER) in the pluggable database FREEPDB1. SQL*Plus
# connects as SYS to the root container, so the script switches to the pluggable database and to
# the application's schema before running the DDL (tag_data.ddl, the output of
# `collector schema --dialect oracle`). The marker file it leaves on the data volume is what the
# compose health check waits for: the database is "healthy" only once the table exists.
set -euo pipefail

PDB="FREEPDB1"
MARKER="/opt/oracle/oradata/tag_data.ready"
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ -z "${APP_USER:-}" ]; then
    echo "APP_USER is not set: no application schema to create TAG_DATA in" >&2
    exit 1
fi

sqlplus -s / as sysdba <<SQL
WHENEVER SQLERROR EXIT SQL.SQLCODE
ALTER SESSION SET CONTAINER = ${PDB};
ALTER SESSION SET CURRENT_SCHEMA = ${APP_USER};
@${HERE}/tag_data.ddl
EXIT
SQL

touch "${MARKER}"
echo "TAG_DATA created in ${PDB} for ${APP_USER}"
