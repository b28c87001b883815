"""The retry schedule (FR-010) as a value: which attempt waits how long, and when to give up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_BACKOFF_S = (1.0, 2.0, 4.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A failed batch is retried ``max_retries`` times; retry *n* (1-based) waits ``backoff_s[n-1]``
    seconds after the failure, or the last listed delay when the list is shorter.

    The default is the specification's: three retries after 1 s, 2 s and 4 s, then backup.
    """

    max_retries: int = 3
    backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        if self.max_retries and not self.backoff_s:
            raise ValueError("backoff_s must list at least one delay when max_retries > 0")
        if any(delay < 0 for delay in self.backoff_s):
            raise ValueError(f"backoff_s delays must not be negative, got {self.backoff_s}")

    @classmethod
    def of(cls, max_retries: int, backoff_s: Sequence[float]) -> RetryPolicy:
        return cls(max_retries=max_retries, backoff_s=tuple(float(d) for d in backoff_s))

    def delay_after(self, attempts_made: int) -> float | None:
        """Seconds to wait before the next attempt, after ``attempts_made`` failed attempts, or
        None when the retries are exhausted and the batch must go to backup."""
        retry_number = attempts_made  # the first attempt is not a retry
        if attempts_made < 1 or retry_number > self.max_retries:
            return None
        return self.backoff_s[min(retry_number, len(self.backoff_s)) - 1]

    @property
    def window_s(self) -> float:
        """How long a batch can spend between its first attempt and its last retry."""
        return sum(self.delay_after(n) or 0.0 for n in range(1, self.max_retries + 1))
