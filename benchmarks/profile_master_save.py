"""Where a master save's time goes: cProfile of N creates of a plain model, then of a CQRS one.

    CQRS_TEST_DB=sqlite|postgres python benchmarks/profile_master_save.py [N] [--relay-only]

Uses the test project and the memory transport, like `bench_master_save.py`. Prints the
microseconds per save in each layer (`profile_summary.layer_times`: the database driver,
Django, dj_cqrs, JSON) for both models, then the dj_cqrs functions by cumulative time.
`--relay-only` turns the fast path off, so no publisher thread competes with the saves.
Profiling slows Python code more than database waits: read shares, not absolute times.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "cqrs-django" / "tests"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_testproject.settings")

import django  # noqa: E402  (the settings module must be on sys.path first)
from django.conf import settings  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402
from profile_summary import layer_times  # noqa: E402

WARM_UP = 200


def profile_creates(model: type, count: int) -> tuple[float, pstats.Stats]:
    """(wall seconds, profile) of `count` creates of `model`, one transaction each."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for i in range(count):
        model.objects.create(name=f"n{i}")  # type: ignore[attr-defined]
    profiler.disable()
    return time.perf_counter() - start, pstats.Stats(profiler)


def print_layers(label: str, stats: pstats.Stats, count: int) -> None:
    layers = layer_times(stats)
    total = sum(layers.values()) or 1.0
    print(f"-- {label}: microseconds per save by layer")
    for name, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        print(f"   {name:<30} {seconds / count * 1e6:8.1f}  {100 * seconds / total:5.1f}%")


def print_cqrs_functions(stats: pstats.Stats, count: int, top: int = 14) -> None:
    print("-- CQRS model: dj_cqrs and cqrs_core functions by cumulative microseconds per save")
    found = [
        (cumulative, calls, func)
        for func, (_cc, calls, _own, cumulative, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if "/dj_cqrs/" in func[0] or "/cqrs_core/" in func[0]
    ]
    for cumulative, calls, func in sorted(found, reverse=True)[:top]:
        where = f"{func[0].split('/src/')[-1]}:{func[1]} {func[2]}"
        print(f"   {cumulative / count * 1e6:8.1f}  {calls / count:4.1f}/save  {where}")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 1000
    django.setup()
    setup_test_environment()
    from django.db import connection

    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from cqrs_testproject.master_app.models import Author, PlainAuthor

        from cqrs_core.transports.memory import MemoryTransport
        from dj_cqrs import conf
        from dj_cqrs.outbox import background_publisher

        base = dict(settings.CQRS)
        outbox = {"fast_path": False} if "--relay-only" in sys.argv[1:] else {}
        with override_settings(
            CQRS={**base, "master": {**base.get("master", {}), "outbox": outbox}}
        ):
            MemoryTransport(conf.transport_options()).declare(["author"])  # events are routable
            for i in range(WARM_UP):
                PlainAuthor.objects.create(name=f"w{i}")
                Author.objects.create(name=f"w{i}")
            background_publisher.flush(30)
            plain_wall, plain = profile_creates(PlainAuthor, count)
            cqrs_wall, cqrs = profile_creates(Author, count)
            background_publisher.flush(30)
        print(
            f"database={connection.vendor} creates={count} fast path="
            f"{'off' if outbox else 'on'} (profiled: Python runs slower than unprofiled)"
        )
        print(f"plain model  {plain_wall / count * 1e6:7.0f} us/save")
        print(
            f"CQRS model   {cqrs_wall / count * 1e6:7.0f} us/save  ({cqrs_wall / plain_wall:.2f}x)"
        )
        print_layers("plain model", plain, count)
        print_layers("CQRS model", cqrs, count)
        print_cqrs_functions(cqrs, count)
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
