"""Master per-save cost against a plain model, the same script for this library and django-cqrs 3.x.

    BENCH_DB=postgres|sqlite BENCH_DB_NAME=... BENCH_CQRS='{...}' DJANGO_SETTINGS_MODULE=bench_settings \
        PYTHONPATH=benchmarks/benchproject python benchmarks/bench_master_compare.py N [--metrics] [--tracing]

Runs under whichever interpreter has the `dj_cqrs` to measure (this repository's, or django-cqrs
3.1.0 in a throwaway virtualenv that `benchmarks/run.py` makes), on the benchmark project:
each `BenchRow` save (create, then update; autocommit, one transaction per save) is paired with a
save of `PlainRow` (the same columns without CQRS) right before it, and the ratios are of those
pairs (the medians per save of each), median of 3 rounds after a warm-up round. Prints one JSON
line: create_x, update_x and the microseconds.

`--metrics` turns the Prometheus hooks on first (`dj_cqrs.observability.metrics.enable()`);
`--tracing` sets `CQRS['tracing']` (when this dj_cqrs has `dj_cqrs.observability.tracing`) with
the OpenTelemetry SDK's tracer provider, spans batched and dropped.
Only the saving thread is timed: our outbox's background publisher is flushed, untimed, after
each loop; django-cqrs 3.x publishes in the save's `on_commit` (its RabbitMQ transport) or not at
all (`TransportMock`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 500
    if "--tracing" in sys.argv[1:]:
        cqrs = json.loads(os.environ["BENCH_CQRS"])
        cqrs["tracing"] = True
        os.environ["BENCH_CQRS"] = json.dumps(cqrs)
        sdk_tracer_provider()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    from bench_app.models import BenchRow, PlainRow

    if "--metrics" in sys.argv[1:]:
        from dj_cqrs.observability import metrics

        metrics.enable()
    flush = None
    if importlib.util.find_spec("dj_cqrs.outbox") is not None:  # this repository's dj_cqrs
        from dj_cqrs.outbox import background_publisher

        flush = background_publisher.flush

    clock = time.perf_counter
    median = statistics.median

    def round_(n: int) -> dict[str, float]:
        plain_c: list[float] = []
        cqrs_c: list[float] = []
        plain_u: list[float] = []
        cqrs_u: list[float] = []
        plains, masters = [], []
        for i in range(n):
            start = clock()
            plains.append(PlainRow.objects.create(name=f"n{i}", value=i))
            middle = clock()
            masters.append(BenchRow.objects.create(name=f"n{i}", value=i))
            plain_c.append(middle - start)
            cqrs_c.append(clock() - middle)
        for plain, master in zip(plains, masters, strict=True):
            plain.name = master.name = "changed"
            start = clock()
            plain.save()
            middle = clock()
            master.save()
            plain_u.append(middle - start)
            cqrs_u.append(clock() - middle)
        if flush is not None and not flush(30):
            print("warning: events still queued after 30 s", file=sys.stderr)
        BenchRow.objects.all().delete()
        PlainRow.objects.all().delete()
        if flush is not None:
            from dj_cqrs.outbox.models import OutboxEvent

            flush(30)  # the DELETE events of the rows above, before their outbox rows go

            OutboxEvent.objects.all().delete()
        return {
            "plain_create_us": median(plain_c) * 1e6,
            "plain_update_us": median(plain_u) * 1e6,
            "create_us": median(cqrs_c) * 1e6,
            "update_us": median(cqrs_u) * 1e6,
            "create_x": median(cqrs_c) / median(plain_c),
            "update_x": median(cqrs_u) / median(plain_u),
        }

    round_(max(50, count // 5))  # warm-up: connections, caches, the publisher thread
    rounds = [round_(count) for _ in range(3)]
    print(json.dumps({key: median(r[key] for r in rounds) for key in rounds[0]}))


def sdk_tracer_provider() -> None:
    """A real SDK provider (spans recorded, batched, then dropped), as a traced service has:
    with only opentelemetry-api, spans would be no-ops and cost nothing."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)


if __name__ == "__main__":
    main()
