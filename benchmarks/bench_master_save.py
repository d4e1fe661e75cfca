"""Per-save cost of a master model: outbox vs on_commit vs a plain Django model, same run.

    CQRS_TEST_DB=sqlite|postgres python benchmarks/bench_master_save.py [N] [--atomic]

Uses the test project (packages/cqrs-django/tests) and the in-process memory transport, so the
numbers are the master's own cost (serialization, outbox write, fast path), not the broker's.

Each CQRS mode saves N new `Author` rows and then updates them (autocommit: one transaction per
save; with `--atomic`, every save in its own `transaction.atomic()` block), each save paired
with a save of `PlainAuthor` (the same fields without CQRS) just before it. The ratios are of
those pairs; the microseconds are medians per save, and everything is the median of 3 rounds.

The "SQL floor" rows run the same writes as plain SQL on the driver: the row alone
(autocommit), then with an outbox row in a transaction (BEGIN, the row, the outbox row,
COMMIT) and, on PostgreSQL, in one `WITH` statement (what a save outside a transaction does
here): the least an outbox written that way can cost on that database.

The outbox publishes in a background thread after commit: the timed saves measure what the
saving thread pays (its critical path), while the publisher competes for the CPU and the GIL;
it is flushed, untimed, after each loop.
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
    from django.utils import timezone

    block = transaction.atomic if atomic else nullcontext

    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from cqrs_testproject.master_app.models import Author, PlainAuthor

        from cqrs_core.transports.memory import MemoryTransport
        from dj_cqrs import conf
        from dj_cqrs.outbox import background_publisher
        from dj_cqrs.outbox.models import OutboxEvent

        base = dict(settings.CQRS)
        replica = MemoryTransport(conf.transport_options())  # a bound queue: events are routable
        replica.declare(["author"])

        def cqrs(mode: str, **outbox: object) -> dict:
            master = {**base.get("master", {}), "publish": mode, "outbox": outbox}
            return {**base, "master": master}

        def run_paired(mode: str, **outbox: object) -> dict[str, float]:
            """Each CQRS save right after a plain save of the same fields, timed apart.

            Pairs see the same machine state (the disk's fsync latency on these VMs drifts
            by 2x within minutes), so their ratio holds where separate loops would not.
            """
            plain_c: list[float] = []
            cqrs_c: list[float] = []
            plain_u: list[float] = []
            cqrs_u: list[float] = []
            clock = time.perf_counter
            with override_settings(CQRS=cqrs(mode, **outbox)):
                plains, masters = [], []
                for i in range(count):
                    start = clock()
                    with block():
                        plains.append(PlainAuthor.objects.create(name=f"n{i}"))
                    middle = clock()
                    with block():
                        masters.append(Author.objects.create(name=f"n{i}"))
                    plain_c.append(middle - start)
                    cqrs_c.append(clock() - middle)
                for plain, master in zip(plains, masters, strict=True):
                    plain.name = master.name = "changed"
                    start = clock()
                    with block():
                        plain.save()
                    middle = clock()
                    with block():
                        master.save()
                    plain_u.append(middle - start)
                    cqrs_u.append(clock() - middle)
                if not background_publisher.flush(30):  # the publisher thread: not the saves
                    print(f"warning: {mode} events still queued after 30s", file=sys.stderr)
            Author.objects.all().delete()
            background_publisher.flush(30)  # the DELETE events, before their rows go
            PlainAuthor.objects.all().delete()
            OutboxEvent.objects.all().delete()
            median = statistics.median
            return {
                "plain_create": median(plain_c) * 1e6,
                "plain_update": median(plain_u) * 1e6,
                "create": median(cqrs_c) * 1e6,
                "update": median(cqrs_u) * 1e6,
                "create_x": median(cqrs_c) / median(plain_c),
                "update_x": median(cqrs_u) / median(plain_u),
            }

        def run_sql_floor(outbox: str) -> tuple[float, float]:
            """The same writes as plain SQL on the driver: what no ORM code can go below.

            `outbox`: "" (the row alone, autocommit), "transaction" (BEGIN, the row, the
            outbox row, COMMIT) or "with" (both in one statement, PostgreSQL).
            """
            connection.ensure_connection()
            cursor = connection.connection.cursor()
            quote = connection.ops.quote_name
            table = quote(PlainAuthor._meta.db_table)
            outbox_table = quote(OutboxEvent._meta.db_table)
            mark = "?" if connection.vendor == "sqlite" else "%s"
            body = "x" * 300  # about an event's wire JSON
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            outbox_insert = (
                f"INSERT INTO {outbox_table} (cqrs_id, instance_pk, signal_type, body, created_at,"
                " attempts, last_error, claimed_by)"
            )

            def write(statement: str, params: list[object]) -> None:
                if outbox == "with":
                    cursor.execute(
                        f"WITH m AS ({statement} RETURNING id) {outbox_insert}"
                        f" SELECT 'author', m.id::text, 'SAVE', {mark}, {mark}, 0, '', '' FROM m",
                        [*params, body, now],
                    )
                    return
                if outbox:
                    cursor.execute("BEGIN")
                cursor.execute(statement, params)
                if outbox:
                    cursor.execute(
                        f"{outbox_insert} VALUES ('author', {mark}, 'SAVE', {mark}, {mark}, 0, '', '')",
                        [str(params[-1]), body, now],
                    )
                    cursor.execute("COMMIT")

            names = [f"floor{i}" for i in range(count)]
            start = time.perf_counter()
            for name in names:
                write(
                    f"INSERT INTO {table} (name, email, birth_date) VALUES ({mark}, '', NULL)",
                    [name],
                )
            created = time.perf_counter() - start
            ids = list(PlainAuthor.objects.values_list("pk", flat=True))
            start = time.perf_counter()
            for pk in ids:
                write(f"UPDATE {table} SET name = 'changed' WHERE id = {mark}", [pk])
            updated = time.perf_counter() - start
            cursor.close()
            PlainAuthor.objects.all().delete()
            OutboxEvent.objects.all().delete()
            return created / count * 1e6, updated / count * 1e6

        paired = {
            "on_commit": lambda: run_paired("on_commit"),
            "outbox (default)": lambda: run_paired("outbox"),
            "outbox, relay only": lambda: run_paired("outbox", fast_path=False),
        }
        floors = {
            "SQL floor, plain": lambda: run_sql_floor(""),
            "SQL floor, outbox txn": lambda: run_sql_floor("transaction"),
        }
        if connection.vendor == "postgresql":
            floors["SQL floor, outbox WITH"] = lambda: run_sql_floor("with")
        for fn in [*paired.values(), *floors.values()]:  # warm-up
            fn()
        pairs: dict[str, list[dict[str, float]]] = {name: [] for name in paired}
        floor_runs: dict[str, list[tuple[float, float]]] = {name: [] for name in floors}
        for _ in range(3):
            for name, fn in paired.items():
                pairs[name].append(fn())
            for name, floor in floors.items():
                floor_runs[name].append(floor())
        median = statistics.median
        print(
            f"database={connection.vendor} transport={base['transport']} saves per round={count}"
            f" transaction={'atomic block per save' if atomic else 'autocommit (one per save)'}"
        )
        print(
            f"{'mode':<26} {'create us/save':>15} {'update us/save':>15}"
            f" {'create x':>9} {'update x':>9}"
        )
        every_pair = [run for runs in pairs.values() for run in runs]
        plain_c = median(run["plain_create"] for run in every_pair)
        plain_u = median(run["plain_update"] for run in every_pair)
        print(f"{'plain Django model':<26} {plain_c:>15.0f} {plain_u:>15.0f}")
        for name, runs in pairs.items():
            print(
                f"{name:<26} {median(r['create'] for r in runs):>15.0f}"
                f" {median(r['update'] for r in runs):>15.0f}"
                f" {median(r['create_x'] for r in runs):>9.2f}"
                f" {median(r['update_x'] for r in runs):>9.2f}"
            )
        for name, values in floor_runs.items():
            create = median(v[0] for v in values)
            update = median(v[1] for v in values)
            print(f"{name:<26} {create:>15.0f} {update:>15.0f}")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
