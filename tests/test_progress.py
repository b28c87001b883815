"""The replay progress bar: drawn in place on a terminal, throttled, erased when done; absent elsewhere."""

from __future__ import annotations

import io

from collector.recovery.progress import NoProgress, ProgressBar, progress_for


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def draws(out: io.StringIO) -> list[str]:
    return [draw for draw in out.getvalue().split("\r") if draw.strip()]


def test_every_update_redraws_the_line_in_place_with_bytes_and_rows() -> None:
    out = Terminal()
    bar = ProgressBar("backup_x.csv", 1000, out, min_interval_s=0)
    bar.update(250, 300)
    bar.update(1000, 1200)
    assert "\n" not in out.getvalue()
    opening, quarter, done = draws(out)
    assert opening.startswith("backup_x.csv:   0%")
    assert quarter.startswith("backup_x.csv:  25%") and "300 rows" in quarter
    assert done.startswith("backup_x.csv: 100%") and "1,200 rows" in done
    bar.finish()


def test_updates_within_the_interval_are_not_drawn_and_finish_erases_the_line() -> None:
    out = Terminal()
    bar = ProgressBar("backup_x.csv", 1000, out, min_interval_s=3600)
    bar.update(500, 600)
    bar.update(900, 1100)
    assert len(draws(out)) == 1 and "rows" not in draws(out)[0]  # only the opening draw
    bar.finish()
    assert len(draws(out)) == 1  # finish draws nothing new
    last_draw = out.getvalue().rsplit("\r", 2)[-2]
    assert last_draw.strip() == "" and len(last_draw) >= len(draws(out)[0])  # it blanks the whole line


def test_a_long_label_is_shortened_from_the_left() -> None:
    out = Terminal()
    ProgressBar("d" * 60 + "backup_20260301T000000Z.csv", 10, out).finish()
    assert draws(out)[0].startswith("...") and "backup_20260301T000000Z.csv:" in draws(out)[0]


def test_no_progress_bar_when_not_on_a_terminal_or_for_a_short_file() -> None:
    assert isinstance(progress_for("f", 50 * 1024 * 1024, io.StringIO()), NoProgress)
    assert isinstance(progress_for("f", 10, Terminal()), NoProgress)
    bar = progress_for("f", 50 * 1024 * 1024, Terminal())
    assert isinstance(bar, ProgressBar)
    bar.finish()
