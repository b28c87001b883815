"""A one-line progress bar for long replays, drawn on a terminal only.

Scripts and logs get no bar (stderr is not a terminal); the report on stdout is the same either way.
The bar is tqdm's: bytes read, rows so far, the rate and the time left, redrawn in place.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from tqdm import tqdm

MIN_BYTES_FOR_BAR = 1024 * 1024
"""Files smaller than this are replayed in well under a second; a bar would only flicker."""

MAX_LABEL = 40


class Progress(Protocol):
    def update(self, done_bytes: int, rows: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """What replay reports to when no bar is wanted: nothing."""

    def update(self, done_bytes: int, rows: int) -> None:
        return None

    def finish(self) -> None:
        return None


class ProgressBar:
    """``label:  45%|####......| 28.8M/64.0M [00:03<00:04, 8.20MB/s, 120,000 rows]`` redrawn in place
    at most every ``min_interval_s``, and erased by :meth:`finish`."""

    def __init__(self, label: str, total_bytes: int, stream: TextIO, *, min_interval_s: float = 0.2) -> None:
        short = label if len(label) <= MAX_LABEL else "..." + label[-(MAX_LABEL - 3) :]
        self._bar = tqdm(
            total=max(total_bytes, 1),
            desc=short,
            file=stream,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            mininterval=min_interval_s,
            miniters=0,
            dynamic_ncols=True,
            leave=False,  # the report follows on stdout; a finished bar would only repeat it
        )

    def update(self, done_bytes: int, rows: int) -> None:
        self._bar.set_postfix_str(f"{rows:,} rows", refresh=False)
        # Replay reports the offset reached; tqdm counts increments.
        self._bar.update(done_bytes - self._bar.n)

    def finish(self) -> None:
        self._bar.close()


def progress_for(label: str, total_bytes: int, stream: TextIO | None = None) -> Progress:
    """A bar on ``stream`` (stderr) if it is a terminal and the file is long enough, else nothing."""
    out = stream if stream is not None else sys.stderr
    if total_bytes < MIN_BYTES_FOR_BAR or not out.isatty():
        return NoProgress()
    return ProgressBar(label, total_bytes, out)
