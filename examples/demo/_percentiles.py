"""Lag percentiles of the demo, read from the replica's Prometheus histogram.

The replica's `cqrs_consume` serves `/metrics` on a loopback port (`--metrics-port`); after
the run the demo reads `cqrs_replica_lag_seconds` there and estimates p50/p90/p99 from the
bucket counts as PromQL's `histogram_quantile` does (`dj_cqrs.observability.quantiles`), so
the numbers are those a dashboard would show, next to the exact per-event lags of the table
above them.
"""

from __future__ import annotations

import importlib.util
import math
import time
import urllib.request
from typing import IO

METRIC = "cqrs_replica_lag_seconds"
QS = (0.5, 0.9, 0.99)


def available() -> bool:
    """prometheus_client is installed (cqrs_consume needs it for --metrics-port)."""
    return importlib.util.find_spec("prometheus_client") is not None


def consumer_args(port: int | None) -> list[str]:
    """The arguments that make `cqrs_consume` serve its metrics on `port` (none if None)."""
    return [] if port is None else ["--metrics-port", str(port)]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


SETTLED = ("applied", "skipped", "dead")
"""Handler outcomes after which a message is done (a retry comes back)."""


def settled(port: int) -> int:
    """Messages the replica has finished with, from `cqrs_replica_messages_total`.

    Counted after the batch commits, so every message counted here is in the database (or a
    dead letter). Rows alone can match the master early: an event is serialized when it is sent,
    so a SAVE sent after a change already carries it, and the SYNC behind it is still in flight.
    """
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(scrape(port)):
        if family.name != "cqrs_replica_messages":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("outcome") in SETTLED:
                total += sample.value
    return int(total)


def lag_buckets(
    port: int, expected: int, wait: float = 10.0
) -> dict[str, list[tuple[float, float]]]:
    """The lag histogram by CQRS_ID, once it counts `expected` events (or after `wait` s).

    The consumer observes a batch's lags just after committing it, so the last batch can
    reach the database a moment before it reaches the histogram.
    """
    from dj_cqrs.observability.quantiles import buckets_from_text, merge

    deadline = time.monotonic() + wait
    while True:
        found = buckets_from_text(scrape(port), METRIC, "cqrs_id")
        total = merge(found.values())[-1][1] if found else 0
        if total >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _ms(seconds: float) -> str:
    return "    n/a" if math.isnan(seconds) else f"{seconds * 1000:7.1f} ms"


def print_percentiles(out: IO[str], port: int | None, expected: int) -> None:
    """The p50/p90/p99 lines, per CQRS_ID and for all of them (`expected` SAVEs applied)."""
    out.write(f"\nReplication lag percentiles ({METRIC} histogram of the replica's /metrics)\n")
    if port is None:
        out.write('  not available: install prometheus-client ("cqrs-django[prometheus]")\n')
        return
    from dj_cqrs.observability.quantiles import merge, quantiles

    try:
        found = lag_buckets(port, expected)
    except OSError as exc:
        out.write(f"  not available: cannot read http://127.0.0.1:{port}/metrics ({exc})\n")
        return
    if not found:
        out.write("  no SAVE event was applied\n")
        return
    out.write("  cqrs_id     events  lag percentiles\n")
    rows = [*sorted(found.items()), ("all", merge(found.values()))]
    for name, buckets in rows:
        estimate = quantiles(buckets, QS)
        count = int(buckets[-1][1])
        out.write(
            f"  {name:<10} {count:>7}  "  # e.g. "  all   23  p50  750.0 ms  p90 ..."
            + "  ".join(f"p{round(q * 100)} {_ms(estimate[q])}" for q in QS)
            + "\n"
        )
    out.write(
        "  (estimated from the bucket counts like PromQL histogram_quantile; SAVE events only)\n"
    )
