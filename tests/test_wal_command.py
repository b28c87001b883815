"""``collector wal``: what the log holds, read without changing it, and --verify for damage."""

from __future__ import annotations

import json

from collector.cli import main
from collector.wal import WriteAheadLog
from collector.wal.segments import list_segments
from tests.wal_support import ManualClock, crash, poll


def _crashed_log(directory) -> None:
    wal = WriteAheadLog(directory, segment_bytes=4096, max_bytes=1 << 20, clock=ManualClock())
    wal.open()
    for index in range(30):
        wal.append(poll(index))
    wal.release(0, 50)
    crash(wal)


def test_the_command_lists_segments_values_time_range_and_mark(tmp_path, capsys) -> None:
    _crashed_log(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert main(["wal", "--dir", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "unfinished      300 values in 30 records" in out
    assert "2025-11-02T08:00:00.000000+00:00 .. 2025-11-02T08:00:29.000000+00:00" in out
    assert "damage          none" in out
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # inspection changes nothing


def test_verify_fails_on_damage_and_names_it(tmp_path, capsys) -> None:
    _crashed_log(tmp_path)
    first = list_segments(tmp_path)[0][1]
    content = bytearray(first.read_bytes())
    content[200] ^= 0xFF
    first.write_bytes(bytes(content))
    assert main(["wal", "--dir", str(tmp_path)]) == 0  # listing alone reports, it does not judge
    assert f"{first.name} offset " in capsys.readouterr().out
    assert main(["wal", "--dir", str(tmp_path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "corrupt" in out and "10 unfinished values" in out


def test_json_report_counts_the_damage(tmp_path, capsys) -> None:
    _crashed_log(tmp_path)
    last = list_segments(tmp_path)[-1][1]
    last.write_bytes(last.read_bytes()[:-5])  # a torn tail
    assert main(["wal", "--dir", str(tmp_path), "--verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is False
    assert [d["kind"] for d in report["damage"]] == ["torn-tail"]
    assert report["pending_values"] == 290


def test_a_missing_directory_is_an_empty_log(tmp_path, capsys) -> None:
    assert main(["wal", "--dir", str(tmp_path / "nothing"), "--verify"]) == 0
    assert "no such directory" in capsys.readouterr().out
