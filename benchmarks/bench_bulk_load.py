"""`cqrs_bulk_load` rate: the bulk path against row-by-row `cqrs_save(sync=True)`, same file,
beside the replica consumer applying the same rows as SYNC events (what `cqrs_sync` makes it do).

    CQRS_TEST_DB=sqlite|postgres python benchmarks/bench_bulk_load.py [N] [--batch B] [--short]

Uses the test project (packages/cqrs-django/tests) in a throw-away test database: writes a
dump of N rows of the `item` replica (a stock replica model), then loads it into an empty table
row by row (`CQRS_BULK_APPLY` False: what every load did before) and through the bulk path (the
default), and prints rows/s of each. Numbers are printed, never asserted.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "cqrs-django" / "tests"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_testproject.settings")

import django  # noqa: E402  (the settings module must be on sys.path first)
from django.conf import settings  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402


def main() -> None:
    argv = sys.argv[1:]
    count = 2_000 if "--short" in argv else 50_010
    batch = 10_000
    positional = [a for a in argv if not a.startswith("--")]
    if "--batch" in argv:
        batch = int(argv[argv.index("--batch") + 1])
        positional.remove(str(batch))
    if positional:
        count = int(positional[0])
    django.setup()
    setup_test_environment()
    from cqrs_testproject.replica_app.models import Item
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        now = str(timezone.now())
        with tempfile.NamedTemporaryFile("w", suffix=".dump", delete=False) as dump:
            dump.write("item\n")
            for pk in range(1, count + 1):
                row = {"id": pk, "name": f"n{pk}", "cqrs_revision": 0, "cqrs_updated": now}
                dump.write(json.dumps(row) + "\n")
        results = {}
        for label, bulk in (("row by row", False), ("bulk path", True)):
            Item.objects.all().delete()
            replica = {**settings.CQRS.get("replica", {}), "CQRS_BULK_APPLY": bulk}
            with override_settings(CQRS={**settings.CQRS, "replica": replica}):
                started = time.perf_counter()
                call_command(
                    "cqrs_bulk_load", "-i", dump.name, "-b", str(batch), stderr=io.StringIO()
                )
                elapsed = time.perf_counter() - started
            assert Item.objects.count() == count
            results[label] = (elapsed, count / elapsed)
        results["consumer, same rows"] = _through_the_consumer(count, now, Item)
        print(f"cqrs_bulk_load of {count} rows, batch {batch}, on {connection.vendor}")
        for label, (elapsed, rate) in results.items():
            print(f"  {label:<19} {elapsed:8.2f} s  {rate:10.0f} rows/s")
        os.unlink(dump.name)
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


def _through_the_consumer(count: int, now: str, model: type) -> tuple[float, float]:
    """The same rows as SYNC events through a broker and the replica consumer (default settings):
    what `cqrs_sync` of the master would make the replica do, for a same-run comparison."""
    from cqrs_core.constants import SignalType
    from cqrs_core.payload import TransportPayload
    from cqrs_core.transports.memory import MemoryBroker, MemoryTransport
    from dj_cqrs.consumer import consume

    model.objects.all().delete()  # type: ignore[attr-defined]
    name = f"bench_bulk_{os.getpid()}"
    transport = MemoryTransport({"url": f"memory://{name}", "queue": "bench"})
    try:
        transport.declare(["item"])
        transport.produce_many(
            TransportPayload(
                SignalType.SYNC,
                "item",
                {"id": pk, "name": f"n{pk}", "cqrs_revision": 0, "cqrs_updated": now},
                pk,
            )
            for pk in range(1, count + 1)
        )
        started = time.perf_counter()

        def caught_up() -> None:
            if model.objects.count() >= count:  # type: ignore[attr-defined]
                transport.stop()

        consume(["item"], transport=transport, on_tick=caught_up)
        elapsed = time.perf_counter() - started
    finally:
        transport.close()
        MemoryBroker.drop(name)
    return elapsed, count / elapsed


if __name__ == "__main__":
    main()
