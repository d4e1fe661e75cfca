"""Summarize cProfile files of benchmark processes (`BENCH_PROFILE_DIR`): where the time went.

    python benchmarks/profile_summary.py /tmp/prof/cqrs_consume-03-*.prof [--top 15]

Prints, per file, the share of the process's time spent in each layer (the database driver,
Django, dj_cqrs, the broker client, JSON, waiting for messages) and the functions with the most
time of their own. Time in a C function (a socket read, `execute`) is charged to the layer of
the Python code that called it, so a driver's network waits count as the driver's.

A consumer's profile covers its whole life: start-up, the backlog, then waiting until the
benchmark stops it. The "idle" layer is that wait (the transport's blocking receive with
nothing to receive), so shares are also given without it.
"""

from __future__ import annotations

import argparse
import pstats
from collections import defaultdict
from collections.abc import Iterable

Func = tuple[str, int, str]

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database driver", ("/psycopg/", "/psycopg_binary/", "/MySQLdb/", "sqlite3/")),
    ("Django ORM", ("/django/db/",)),
    ("Django (other)", ("/django/",)),
    ("dj_cqrs replica", ("/dj_cqrs/replica/",)),
    ("dj_cqrs (other)", ("/dj_cqrs/",)),
    ("cqrs_core", ("/cqrs_core/",)),
    ("transport plugin", ("/cqrs_rabbitmq/", "/cqrs_kombu/", "/cqrs_kafka/")),
    ("broker client", ("/pika/", "/kombu/", "/redis/", "/confluent_kafka/", "/amqp/")),
    ("JSON", ("/json/", "orjson")),
    ("metrics", ("/prometheus_client/", "/opentelemetry/")),
)
IDLE_NAMES = ("poll", "select", "consume", "sleep", "acquire", "wait")
"""C functions that block until a message, a timer or another thread arrives (outside the
database driver, whose waits are for the database's answer)."""


def layer_of(func: Func) -> str:
    filename = func[0]
    for name, needles in LAYERS:
        if any(needle in filename for needle in needles):
            return name
    return "other"


def is_builtin(func: Func) -> bool:
    return func[0] == "~"


def is_idle_wait(func: Func) -> bool:
    """A blocking C call: a receive, a sleep, a lock (the caller's layer decides whose wait)."""
    return is_builtin(func) and any(name in func[2] for name in IDLE_NAMES)


def layer_times(stats: pstats.Stats) -> dict[str, float]:
    """Own time per layer; a C function's time goes to its callers' layers, per call edge."""
    totals: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, own, _cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not is_builtin(func) or not callers:
            totals[layer_of(func)] += own
            continue
        for caller, edge in callers.items():
            edge_own = edge[2]
            caller_layer = layer_of(caller)
            if is_idle_wait(func) and caller_layer not in ("database driver", "Django ORM"):
                totals["idle (waiting for messages)"] += edge_own
            else:
                totals[caller_layer] += edge_own
    return dict(totals)


def cumulative(stats: pstats.Stats, name: str) -> float:
    """Largest cumulative time of a function called `name` (0 if never called)."""
    found = [
        cum
        for func, (_cc, _nc, _own, cum, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if func[2] == name
    ]
    return max(found, default=0.0)


def summarize(path: str, top: int, marks: Iterable[str]) -> str:
    stats = pstats.Stats(path)
    layers = layer_times(stats)
    total = sum(layers.values()) or 1.0
    idle = layers.get("idle (waiting for messages)", 0.0)
    busy = (total - idle) or 1.0
    lines = [f"{path}: {total:.2f} s profiled, {busy:.2f} s busy"]
    lines.append(f"  {'layer':<30} {'s':>8} {'% all':>7} {'% busy':>7}")
    for name, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        busy_share = "" if name.startswith("idle") else f"{100 * seconds / busy:6.1f}%"
        lines.append(f"  {name:<30} {seconds:8.2f} {100 * seconds / total:6.1f}% {busy_share:>7}")
    for name in marks:
        seconds = cumulative(stats, name)
        if seconds:
            lines.append(
                f"  cumulative {name}(): {seconds:.2f} s ({100 * seconds / busy:.1f}% busy)"
            )
    lines.append(f"  top {top} by own time:")
    own = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: -item[1][2],
    )[:top]
    for func, (_cc, calls, own_time, _cum, _callers) in own:
        where = (
            func[2]
            if is_builtin(func)
            else f"{func[0].split('site-packages/')[-1]}:{func[1]} {func[2]}"
        )
        lines.append(f"    {own_time:7.2f} s {calls:>9} calls  {where[-90:]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="cProfile output files")
    parser.add_argument("--top", type=int, default=12, help="how many functions to list")
    parser.add_argument(
        "--mark",
        action="append",
        default=["apply_model_batch", "apply_batch", "upsert", "_read", "_lock_keys"],
        help="also print the cumulative time of functions with this name",
    )
    args = parser.parse_args(argv)
    for path in args.paths:
        print(summarize(path, args.top, args.mark))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
