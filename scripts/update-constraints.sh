#!/usr/bin/env bash
# Rebuilds constraints.txt: the exact versions that a fresh install of the service, its tests and its
# benchmarks resolves to today. Run it when a dependency range in pyproject.toml changes (or to take
# newer releases), then run the whole test suite before committing the new file.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check -U pip
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,bench]'
{
    echo "# The versions the service and its tests were tested with (Python $("$scratch/venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), Linux)."
    echo "# Used as pip constraints by the README's commands, .ci/run and the Dockerfile;"
    echo "# rebuilt by scripts/update-constraints.sh. pyproject.toml keeps the supported ranges."
    "$scratch/venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^pip=='
} > constraints.txt
echo "constraints.txt: $(grep -cv '^#' constraints.txt) pins"
