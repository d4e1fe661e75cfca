"""Per-save cost of a master model: outbox vs on_commit vs a plain Django model, same run.

    CQRS_TEST_DB=sqlite|postgres python benchmarks/bench_master_save.py [N] [--atomic]

Uses the test project (packages/cqrs-django/tests) and the in-process memory transport, so the
numbers are the master's own cost (serialization, outbox INSERT, fast path, marking sent), not
the broker's. Each mode saves N new rows (autocommit: one transaction per save) and then
updates them; the median of 3 rounds is printed in microseconds per save. With `--atomic`
every save (plain ones too) runs in its own `transaction.atomic()` block instead.

The outbox publishes in a background thread after commit: the timed loops measure what the
saving thread pays (its critical path); the publisher is flushed after each loop, untimed,
and competes for the CPU and the GIL while the loop runs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "cqrs-django" / "tests"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_testproject.settings")

import django  # noqa: E402  (the settings module must be on sys.path first)
from django.conf import settings  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 500
    atomic = "--atomic" in sys.argv[1:]
    django.setup()
    setup_test_environment()
    from contextlib import nullcontext

    from django.db import connection, transaction
    from django.test.utils import override_settings

    block = transaction.atomic if atomic else nullcontext

    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from cqrs_testproject.master_app.models import Author
        from django.contrib.auth.models import Group

        from cqrs_core.transports.memory import MemoryTransport
        from dj_cqrs import conf
        from dj_cqrs.outbox import fast_path
        from dj_cqrs.outbox.models import OutboxEvent

        base = dict(settings.CQRS)
        replica = MemoryTransport(conf.transport_options())  # a bound queue: events are routable
        replica.declare(["author"])

        def cqrs(mode: str, **outbox: object) -> dict:
            master = {**base.get("master", {}), "publish": mode, "outbox": outbox}
            return {**base, "master": master}

        def run_master(mode: str, **outbox: object) -> tuple[float, float]:
            with override_settings(CQRS=cqrs(mode, **outbox)):
                start = time.perf_counter()
                objs = []
                for i in range(count):
                    with block():
                        objs.append(Author.objects.create(name=f"n{i}"))
                created = time.perf_counter() - start
                start = time.perf_counter()
                for obj in objs:
                    obj.name = "changed"
                    with block():
                        obj.save()
                updated = time.perf_counter() - start
                if not fast_path.flush(30):  # the background publisher: not the saves' cost
                    print(f"warning: {mode} events still queued after 30s", file=sys.stderr)
            Author.objects.all().delete()
            OutboxEvent.objects.all().delete()
            return created / count * 1e6, updated / count * 1e6

        def run_plain() -> tuple[float, float]:
            start = time.perf_counter()
            objs = []
            for i in range(count):
                with block():
                    objs.append(Group.objects.create(name=f"g{i}-{time.monotonic_ns()}"))
            created = time.perf_counter() - start
            start = time.perf_counter()
            for obj in objs:
                obj.name = obj.name + "x"
                with block():
                    obj.save()
            updated = time.perf_counter() - start
            Group.objects.all().delete()
            return created / count * 1e6, updated / count * 1e6

        runs = {
            "plain Django model": run_plain,
            "on_commit": lambda: run_master("on_commit"),
            "outbox (default)": lambda: run_master("outbox"),
            "outbox, relay only": lambda: run_master("outbox", fast_path=False),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(3):
            for name, fn in runs.items():
                results[name].append(fn())
        vendor = connection.vendor
        print(
            f"database={vendor} transport={base['transport']} saves per round={count}"
            f" transaction={'atomic block per save' if atomic else 'autocommit (one per save)'}"
        )
        print(f"{'mode':<20} {'create us/save':>15} {'update us/save':>15}")
        for name, values in results.items():
            create = statistics.median(v[0] for v in values)
            update = statistics.median(v[1] for v in values)
            print(f"{name:<20} {create:>15.0f} {update:>15.0f}")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
