"""The writer: drains the buffer into a sink in batches, retrying, backing up and never stalling.

One job per module:

- :mod:`~collector.writer.scheduler`: :class:`BatchWriter`, the worker threads and what each does
  next, the spill guard, drain and stop;
- :mod:`~collector.writer.handler`: one batch's attempt in its span and the decision after it
  (settle, retry, back up, open the circuit), and the probe;
- :mod:`~collector.writer.retry_queue`: failed batches waiting for their next attempt;
- :mod:`~collector.writer.spooler`: batches to the backup CSV, refused rows to the rejected CSV;
- :mod:`~collector.writer.ledger`: the counters and the consistent snapshot (:class:`WriterStats`);
- :mod:`~collector.writer.events`: what listeners hear (:class:`BatchAttempt`) and the outcomes.

The rules for one call to the sink are :mod:`collector.write_attempt`, shared with replay.
"""

from collector.writer.events import AttemptOutcome, BatchAttempt, Destination, WriterListener
from collector.writer.ledger import WriterStats
from collector.writer.scheduler import BatchWriter

__all__ = [
    "AttemptOutcome",
    "BatchAttempt",
    "BatchWriter",
    "Destination",
    "WriterListener",
    "WriterStats",
]
