#!/bin/bash
# Creates the collector's table when the database is first initialised.
#
# The image runs every script in /container-entrypoint-initdb.d once, after it has created the
# database and the application user (APP_USER) in the pluggable database FREEPDB1: a script with
# the exec bit is executed, one without it (a checkout that lost the bit) is sourced. Both work
# here: the DDL is found beside this file through BASH_SOURCE (not $0, which is the entrypoint's
# name when sourced), and the work runs in a subshell, so `set -e` and `exit` never leak into the
# entrypoint.
#
# SQL*Plus connects as SYS to the root container, so the script switches to the pluggable
# database and to the application's schema before running the DDL (tag_data.ddl, the output of
# `collector schema --dialect oracle`). Then it checks that TAG_DATA really exists in that schema;
# only then does it leave the marker file the compose health check waits for. If the table is not
# there it says so on stderr, leaves no marker and fails, so the database never reports healthy
# without the table.

create_tag_table() (
    set -euo pipefail

    local pdb="${ORACLE_PDB:-FREEPDB1}"
    local marker="${TAG_DATA_MARKER:-/opt/oracle/oradata/tag_data.ready}"
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    local ddl="${here}/tag_data.ddl"

    rm -f "${marker}"
    if [ -z "${APP_USER:-}" ]; then
        echo "01_create_tag_table: APP_USER is not set: no application schema to create TAG_DATA in" >&2
        return 1
    fi
    if [ ! -r "${ddl}" ]; then
        echo "01_create_tag_table: ${ddl} is missing or unreadable" >&2
        return 1
    fi

    # WHENEVER stops at the first SQL or OS error (a file SQL*Plus cannot open, for one) with a
    # non-zero exit status; the count below catches anything that still slips through.
    local found
    found="$(
        sqlplus -s / as sysdba <<SQL
WHENEVER SQLERROR EXIT SQL.SQLCODE
WHENEVER OSERROR EXIT FAILURE
ALTER SESSION SET CONTAINER = ${pdb};
ALTER SESSION SET CURRENT_SCHEMA = ${APP_USER};
@${ddl}
SET HEADING OFF FEEDBACK OFF PAGESIZE 0 VERIFY OFF
SELECT 'TAG_DATA_TABLES=' || COUNT(*) FROM all_tables
 WHERE owner = UPPER('${APP_USER}') AND table_name = 'TAG_DATA';
EXIT
SQL
    )" || {
        echo "01_create_tag_table: SQL*Plus failed creating TAG_DATA in ${pdb} for ${APP_USER}:" >&2
        echo "${found:-}" >&2
        return 1
    }
    if ! grep -q '^ *TAG_DATA_TABLES=1 *$' <<<"${found}"; then
        echo "01_create_tag_table: TAG_DATA is not in schema ${APP_USER} of ${pdb} after the DDL ran:" >&2
        echo "${found}" >&2
        return 1
    fi

    touch "${marker}"
    echo "01_create_tag_table: TAG_DATA created in ${pdb} for ${APP_USER}"
)

# Executed: exit with the function's status. Sourced: return it to the entrypoint, which decides.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    create_tag_table
    exit $?
else
    create_tag_table || return $?
fi
