"""A one-line progress bar for long replays, drawn on a terminal only.

Scripts and logs get no bar (stderr is not a terminal); the report on stdout is the same either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

MIN_BYTES_FOR_BAR = 1024 * 1024
"""Files smaller than this are replayed in well under a second; a bar would only flicker."""


class Progress(Protocol):
    def update(self, done_bytes: int, rows: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def update(self, done_bytes: int, rows: int) -> None:
        return None

    def finish(self) -> None:
        return None


class ProgressBar:
    """``label [#########...........]  45%  120 000 rows`` redrawn in place, at most every
    ``min_interval_s``, and erased by :meth:`finish`."""

    def __init__(
        self,
        label: str,
        total_bytes: int,
        stream: TextIO,
        *,
        width: int = 30,
        min_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label if len(label) <= 40 else "..." + label[-37:]
        self._total = max(total_bytes, 1)
        self._stream = stream
        self._width = width
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_draw: float | None = None
        self._drawn = 0

    def update(self, done_bytes: int, rows: int) -> None:
        now = self._clock()
        if self._last_draw is not None and now - self._last_draw < self._min_interval_s:
            return
        self._last_draw = now
        fraction = min(max(done_bytes / self._total, 0.0), 1.0)
        filled = int(fraction * self._width)
        text = f"{self._label} [{'#' * filled}{'.' * (self._width - filled)}] {fraction:4.0%}  {rows:,} rows"
        self._stream.write("\r" + text.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(text)

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()
            self._drawn = 0


def progress_for(label: str, total_bytes: int, stream: TextIO | None = None) -> Progress:
    """A bar on ``stream`` (stderr) if it is a terminal and the file is long enough, else nothing."""
    out = stream if stream is not None else sys.stderr
    if total_bytes < MIN_BYTES_FOR_BAR or not out.isatty():
        return NoProgress()
    return ProgressBar(label, total_bytes, out)
