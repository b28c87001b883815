"""A backup file on a disk that fills up holds only whole, counted rows.

A full disk accepts part of a write and then refuses the rest. The child process below gets a file
size limit (RLIMIT_FSIZE), which the kernel enforces the same way: a short write up to the limit,
then an error (EFBIG; Python ignores the SIGXFSZ that would otherwise end the process). It appends
batches until the spool gives up and reports what it counted; the file must then hold exactly the
rows counted, with no partial line, and a file whose header did not fit must not be left behind.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# The limit is set only after the imports, so it can never cut short a bytecode file Python
# writes while importing (and the child writes none anyway).
CHILD = """
import json, resource, sys
from collector.backup import CsvSpool, SpoolError
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
spool = CsvSpool(sys.argv[1])
appended = 0
for batch in range(200):
    rows = [(f"G01.T{batch:03d}{i:02d}", "é" * (i % 7), "2026-11-28T21:37:59.123456+00:00", "GOOD", "x")
            for i in range(10)]
    try:
        spool.append(rows)
    except SpoolError:
        break
    appended += len(rows)
stats = spool.stats()
spool.close()
report = {"appended": appended, "rows": stats.rows, "bytes": stats.bytes, "failures": stats.failures}
print(json.dumps(report))
"""


def run_child(directory: Path, size_limit: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), str(size_limit)],
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_batch_that_does_not_fit_is_cut_back_off_the_file(tmp_path: Path) -> None:
    report = run_child(tmp_path, 10_000)

    files = list(tmp_path.glob("backup_*.csv"))
    assert len(files) == 1
    content = files[0].read_bytes()
    assert content.endswith(b"\n")  # no partial line
    assert len(content) == report["bytes"] + len(
        b"tag_name,tag_value,timestamp,quality,insertion_attempt_time\n"
    )
    with open(files[0], encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert report["failures"] > 0
    assert len(rows) == report["rows"] == report["appended"]
    assert all(len(row) == 5 for row in rows)


def test_a_file_whose_header_does_not_fit_is_not_left_behind(tmp_path: Path) -> None:
    report = run_child(tmp_path, 20)

    assert report["rows"] == 0
    assert list(tmp_path.iterdir()) == []
