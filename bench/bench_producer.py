"""What a producer pays per value to hand it to the buffer, against the OpenTelemetry SDK's
batch processor (a widely used component of the same shape: a bounded deque drained by a worker).

    python3 bench/bench_producer.py [--values 1000000] [--repeat 5]

Measured: ``TagBuffer.put`` one value at a time, ``TagBuffer.put_many`` a poll (100 values) at a
time, and ``BatchProcessor.emit`` one item at a time, all into queues big enough that nothing is
dropped, with no consumer running (the cost is the producer's alone). Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, polls
from collector.buffer import TagBuffer
from collector.model import TagValue


def best_ns_per_value(run: Callable[[], int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter_ns()
        count = run()
        best = min(best, (time.perf_counter_ns() - started) / count)
    return best


def otel_emit(items: Sequence[TagValue]) -> tuple[Callable[[], int], Callable[[], None]] | None:
    """A timed run of BatchProcessor.emit, and a cleanup that shuts the processors down afterwards."""
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        return None

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    processors: list[BatchSpanProcessor] = []

    def run() -> int:
        processor = BatchSpanProcessor(
            Discard(), max_queue_size=len(items) + 1, max_export_batch_size=500, schedule_delay_millis=60_000
        )
        processors.append(processor)
        shared = processor._batch_processor  # the SDK's generic BatchProcessor behind the span wrapper
        # Keep the worker asleep so only the producer's cost is measured, as for TagBuffer.
        shared._worker_awaken.set = lambda: None  # type: ignore[method-assign]
        emit = shared.emit
        for item in items:
            emit(item)  # type: ignore[arg-type]
        return len(items)

    def cleanup() -> None:
        for processor in processors:
            del processor._batch_processor._worker_awaken.set
            processor._batch_processor._queue.clear()
            processor.shutdown()  # type: ignore[no-untyped-call]

    return run, cleanup


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = polls(args.values // 100)
    flat = [v for poll in data for v in poll]

    def put() -> int:
        buffer = TagBuffer(len(flat) + 1)
        add = buffer.put
        for item in flat:
            add(item)
        return len(flat)

    def put_many() -> int:
        buffer = TagBuffer(len(flat) + 1)
        add = buffer.put_many
        for poll in data:
            add(poll)
        return len(flat)

    print(f"machine: {machine()}")
    print(f"values: {len(flat)}, best of {args.repeat}")
    put_ns = best_ns_per_value(put, args.repeat)
    many_ns = best_ns_per_value(put_many, args.repeat)
    print(f"TagBuffer.put:                 {put_ns:7.1f} ns/value")
    print(f"TagBuffer.put_many (100/poll): {many_ns:7.1f} ns/value")
    otel = otel_emit(flat)
    if otel is not None:
        run, cleanup = otel
        otel_ns = best_ns_per_value(run, args.repeat)
        cleanup()
        print(f"OTel BatchProcessor.emit:      {otel_ns:7.1f} ns/value")
        print(f"ratio emit/put:      {otel_ns / put_ns:.2f}x  (above 1: TagBuffer is faster)")
        print(f"ratio emit/put_many: {otel_ns / many_ns:.2f}x")


if __name__ == "__main__":
    main()
