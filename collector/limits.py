"""The process's open-file limit: raised to its hard limit at start, and read to size the API.

Every database connection, backup file, log segment and API connection is a file descriptor. A
soft limit left at a distribution's default (often 1 024, sometimes 64 in containers or under
``ulimit -n``) is the first thing a burst of clients or a long outage exhausts, and an exhausted
table means backup files that cannot be opened: lost values. The hard limit is what the
administrator allows; the soft limit is only a default, so the service raises it (as nginx's
``worker_rlimit_nofile`` and systemd's services commonly do).
"""

from __future__ import annotations

import logging
import os
import resource

from collector.logs import log_event

log = logging.getLogger("collector.limits")

CEILING = 1 << 20
"""An unlimited hard limit is taken as this many: the kernel refuses more (``nr_open``)."""


def open_file_limit() -> int | None:
    """The soft limit on open files, or None when it is unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def open_files() -> int:
    """How many file descriptors the process has open now (0 where it cannot be counted)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return 0


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit to the hard limit; returns (before, after), or None where
    it is unlimited already. A refusal is logged and the old limit kept."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = CEILING if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY:
        return None
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log_event(log, logging.WARNING, "open_file_limit_kept", soft=soft, hard=hard, error=str(exc))
            return soft, soft
        log_event(log, logging.INFO, "open_file_limit_raised", before=soft, after=target)
        return soft, target
    return soft, soft
