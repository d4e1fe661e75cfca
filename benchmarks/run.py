"""Replication benchmark on the real services: one command, a table and JSON.

    python benchmarks/run.py [--short] [--json PATH] [--transports rabbitmq,kombu,kafka]
                             [--reps N] [--skip-master]

Measures, per transport (RabbitMQ, kombu on Redis, Kafka on Tansu) on PostgreSQL:
  2. consumer apply rate from a pre-filled backlog, and the consumer's peak RSS (VmHWM);
  3. end to end: single-row saves with the consumer running; events/s and replica lag;
  4. master bulk_create / bulk_update of many rows until replicated, against the master call;
  5. ceilings: raw client publish and consume rate on the same broker, raw bulk upsert rate of
     the same database;
and (1) the master's per-save cost beside a plain Django model on PostgreSQL and SQLite, by
running `benchmarks/bench_master_save.py` (the outbox benchmark) once per repetition.

Each repetition of 2-4 runs in a child process with its own database (`cqrs_bench_<uuid>` on
PostgreSQL) and unique broker names, which are removed at the end. Medians over repetitions,
with min and max. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROJECT = HERE / "benchproject"
CQRS_ID = "bench_row"
RABBIT_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TRANSPORTS = ("rabbitmq", "kombu", "kafka")


# -- sizes ------------------------------------------------------------------------------------


def sizes(short: bool) -> dict[str, int]:
    if short:
        return {
            "backlog": 1000,
            "e2e": 300,
            "bulk": 1000,
            "ceiling": 2000,
            "master": 100,
            "reps": 1,
        }
    return {
        "backlog": 10000,
        "e2e": 5000,
        "bulk": 10000,
        "ceiling": 10000,
        "master": 1000,
        "reps": 3,
    }


REPLICA_SETTINGS = {"batch_size": 500, "batch_timeout": 0.02}
PREFETCH = 1000
"""`CQRS['consumer_prefetch_count']`: RabbitMQ batches are at most this many messages."""


# -- broker names per run ---------------------------------------------------------------------


@contextlib.contextmanager
def broker(kind: str, bootstrap: str | None) -> Iterator[dict[str, Any]]:
    """CQRS settings (without the replica section) with names no one else uses; cleaned up."""
    tag = uuid.uuid4().hex[:10]
    if kind == "rabbitmq":
        from cqrs_rabbitmq.testing import temporary_vhost

        with temporary_vhost("cqrs_bench") as vhost:
            yield {
                "transport": "rabbitmq",
                "url": RABBIT_URL + quote(vhost or "/", safe=""),
                "exchange": f"bench_x_{tag}",
                "queue": f"bench_q_{tag}",
            }
    elif kind == "kombu":
        prefix = f"cqrs_bench_{tag}:"
        try:
            yield {
                "transport": "kombu",
                "url": REDIS_URL,
                "exchange": f"bench_x_{tag}",
                "queue": f"bench_q_{tag}",
                "transport_options": {"global_keyprefix": prefix},
            }
        finally:
            from cqrs_kombu._testing import cleanup_redis

            cleanup_redis(prefix)
            time.sleep(1.0)  # kombu may still write binding keys as its connections close
            cleanup_redis(prefix)
    elif kind == "kafka":
        assert bootstrap is not None
        prefix = f"bench{tag}."
        queue = f"bench_q_{tag}"
        try:
            yield {
                "transport": "kafka",
                "bootstrap_servers": bootstrap,
                "queue": queue,
                "kafka": {"topic_prefix": prefix, "partitions": 1, "replication_factor": 1},
            }
        finally:
            from cqrs_kafka.testing import cleanup

            cleanup(bootstrap, prefix, [queue])
    else:
        raise SystemExit(f"unknown transport {kind!r}: use one of {', '.join(TRANSPORTS)}")


# -- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def database(engine: str) -> Iterator[str]:
    """A fresh database name (PostgreSQL) or file (SQLite), dropped afterwards."""
    if engine == "sqlite":
        path = f"/tmp/cqrs_bench_{uuid.uuid4().hex[:10]}.sqlite3"
        try:
            yield path
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(path + suffix)
        return
    import psycopg

    name = f"cqrs_bench_{uuid.uuid4().hex[:10]}"
    dsn = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(engine: str, db_name: str, cqrs: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCH_DB=engine,
        BENCH_DB_NAME=db_name,
        BENCH_CQRS=json.dumps(cqrs),
        DJANGO_SETTINGS_MODULE="bench_settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")])),
    )
    return env


# -- the child: stages 2-4 and the database ceiling, in its own database ----------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    out: dict[str, Any] = {}
    out["db_upsert_rate"] = db_upsert_ceiling(spec["ceiling"], REPLICA_SETTINGS["batch_size"])
    prefill(spec["backlog"])
    with consumer_process() as consumer:
        rate = wait_replicated(lambda: replica_count(), spec["backlog"], consumer.ready_at)
        out["apply_rate"] = rate
        out["consumer_rss_mib"] = consumer.peak_rss_mib()
        with relay_process():
            out.update(end_to_end(spec["e2e"]))
            out.update(bulk(spec["bulk"]))
        out["consumer_rss_after_all_mib"] = consumer.peak_rss_mib()
    return out


def db_upsert_ceiling(count: int, chunk: int) -> float:
    """Rows/s of INSERT ... ON CONFLICT DO UPDATE in chunks, one transaction per chunk."""
    from bench_app.models import UpsertRow
    from django.db import connection, transaction
    from django.utils import timezone

    now = timezone.now()
    rows = [
        UpsertRow(id=i, name=f"r{i}", value=i, cqrs_revision=0, cqrs_updated=now)
        for i in range(count)
    ]
    kwargs: dict[str, Any] = {}
    if connection.features.supports_update_conflicts_with_target:
        kwargs = {
            "update_conflicts": True,
            "unique_fields": ["id"],
            "update_fields": ["name", "value", "saved_at", "cqrs_revision", "cqrs_updated"],
        }
    started = time.perf_counter()
    for start in range(0, count, chunk):
        with transaction.atomic():
            UpsertRow.objects.bulk_create(rows[start : start + chunk], **kwargs)
    return count / (time.perf_counter() - started)


def prefill(count: int) -> None:
    """Publish `count` SAVEs straight to the broker (the replica queue is declared first)."""
    from cqrs_core.constants import SignalType
    from cqrs_core.payload import TransportPayload
    from dj_cqrs import conf

    stamp = "2026-01-01 00:00:00+00:00"
    payloads = [
        TransportPayload(
            signal_type=SignalType.SAVE,
            cqrs_id=CQRS_ID,
            instance_data={
                "id": i,
                "name": f"backlog {i}",
                "value": i,
                "saved_at": 0.0,
                "cqrs_revision": 0,
                "cqrs_updated": stamp,
            },
            instance_pk=i,
        )
        for i in range(1_000_000, 1_000_000 + count)
    ]
    transport = conf.get_transport()
    transport.declare([CQRS_ID])
    for start in range(0, count, 1000):
        transport.produce_many(payloads[start : start + 1000])
    transport.close()


def replica_count(where: str = "") -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM bench_app_benchrowref {where}")
        return int(cursor.fetchone()[0])


def wait_replicated(
    count_now: Callable[[], int], expected: int, since: float, limit: float = 600
) -> float:
    """Events/s from `since` until `count_now()` reaches `expected`."""
    deadline = time.monotonic() + limit
    while count_now() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count_now()} of {expected} rows replicated in {limit} s")
        time.sleep(0.01)
    return expected / (time.time() - since)


class _Process:
    def __init__(self, args: list[str], ready_pattern: str | None) -> None:
        profile = os.environ.get("BENCH_PROFILE_DIR")  # cProfile the consumer and relay
        prefix = ["-m", "cProfile", "-o", f"{profile}/{args[0]}.prof"] if profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", "django", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.output: list[str] = []
        self.pattern = ready_pattern
        threading.Thread(target=self._read, daemon=True).start()
        if ready_pattern is None:
            self.ready_at = time.time()
        elif not self.ready.wait(120):
            self.stop()
            raise RuntimeError("process not ready:\n" + "".join(self.output[-30:]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if self.pattern and self.pattern in line and not self.ready.is_set():
                self.ready_at = time.time()
                self.ready.set()

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def consumer_process() -> Iterator[_Process]:
    process = _Process(["cqrs_consume"], "ready for")
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def relay_process() -> Iterator[_Process]:
    """The outbox relay, for whatever the in-request fast path did not send."""
    process = _Process(["cqrs_relay"], None)
    try:
        yield process
    finally:
        process.stop()


def end_to_end(count: int) -> dict[str, Any]:
    """`count` single-row creates, each its own transaction; lag per event from the replica."""
    from bench_app.models import BenchRow
    from django.db import connection

    first_id = None
    started = time.time()
    for i in range(count):
        row = BenchRow(name=f"e2e {i}", value=i, saved_at=time.time())
        row.save()
        first_id = first_id or row.pk
    last_saved = time.time()
    where = f"WHERE id >= {first_id} AND id < 1000000"
    wait_replicated(lambda: replica_count(where), count, started)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT saved_at, replicated_at FROM bench_app_benchrowref {where}")
        pairs = [(saved, replicated.timestamp()) for saved, replicated in cursor.fetchall()]
    lags = sorted(replicated - saved for saved, replicated in pairs)
    last_replicated = max(replicated for _, replicated in pairs)
    return {
        "e2e_save_rate": count / (last_saved - started),
        "e2e_events_per_s": count / (last_replicated - started),
        "e2e_lag_after_last_s": max(0.0, last_replicated - last_saved),
        "e2e_lag_median_s": lags[len(lags) // 2],
        "e2e_lag_p99_s": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
    }


def bulk(count: int) -> dict[str, Any]:
    from bench_app.models import BenchRow

    start_id = 2_000_000
    objs = [BenchRow(id=start_id + i, name=f"bulk {i}", value=i) for i in range(count)]
    where = f"WHERE id >= {start_id}"
    started = time.time()
    BenchRow.cqrs.bulk_create(objs)
    create_call = time.time() - started
    wait_replicated(lambda: replica_count(where), count, started)
    create_total = time.time() - started
    started = time.time()
    BenchRow.cqrs.bulk_update(BenchRow.objects.filter(id__gte=start_id), value=-1)
    update_call = time.time() - started
    wait_replicated(lambda: replica_count(where + " AND cqrs_revision >= 1"), count, started)
    update_total = time.time() - started
    return {
        "bulk_create_call_s": create_call,
        "bulk_create_replicated_s": create_total,
        "bulk_create_ratio": create_total / create_call,
        "bulk_update_call_s": update_call,
        "bulk_update_replicated_s": update_total,
        "bulk_update_ratio": update_total / update_call,
    }


# -- ceilings of the client libraries (reusing each package's own benchmark) -----------------


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broker_ceiling(kind: str, cqrs: dict[str, Any], count: int) -> dict[str, float]:
    """Raw client publish and consume msg/s on the same broker (no CQRS code on the path)."""
    from cqrs_core import codec
    from cqrs_core.testing.suite import make_payload

    body = codec.encode(make_payload(1, CQRS_ID))
    if kind == "rabbitmq":
        import pika

        bench = _load(
            ROOT / "packages/cqrs-rabbitmq/benchmarks/bench_rabbitmq.py", "bench_rabbitmq"
        )
        url = cqrs["url"]
        exchange, queue = cqrs["exchange"] + "_raw", cqrs["queue"] + "_raw"
        conn = pika.BlockingConnection(pika.URLParameters(url))
        channel = conn.channel()
        channel.exchange_declare(exchange, "topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, bench.CQRS_ID)
        conn.close()
        publish = count / bench.raw_pipelined(url, exchange, body, count)
        consume = count / bench.raw_consume(url, queue, count, PREFETCH)
        conn = pika.BlockingConnection(pika.URLParameters(url))
        conn.channel().queue_delete(queue)
        conn.channel().exchange_delete(exchange)
        conn.close()
        return {"raw_publish_rate": publish, "raw_consume_rate": consume}
    if kind == "kombu":
        from cqrs_kombu import KombuTransport

        bench = _load(ROOT / "packages/cqrs-kombu/benchmarks/bench_kombu.py", "bench_kombu")
        transport = KombuTransport({**cqrs, "consumer_prefetch_count": PREFETCH})
        try:
            publish, consume = bench.raw_rate(transport, count, body)
        finally:
            transport.close()
        return {"raw_publish_rate": publish, "raw_consume_rate": consume}
    bench = _load(ROOT / "packages/cqrs-kafka/benchmarks/bench_kafka.py", "bench_kafka")
    topic = cqrs["kafka"]["topic_prefix"] + "raw"
    publish = count / bench.raw_produce(cqrs["bootstrap_servers"], topic, [body] * count)
    consume = count / bench.raw_consume(cqrs["bootstrap_servers"], topic, count)
    return {"raw_publish_rate": publish, "raw_consume_rate": consume}


# -- master per-save cost (the outbox helper's benchmark) -------------------------------------


def master_cost(engine: str, count: int) -> dict[str, dict[str, float]]:
    """us/save for create and update per mode, parsed from benchmarks/bench_master_save.py."""
    script = HERE / "bench_master_save.py"
    env = dict(os.environ, CQRS_TEST_DB=engine, DJANGO_SETTINGS_MODULE="cqrs_testproject.settings")
    env.pop("CQRS_TEST_DB_NAME", None)
    env.pop("CQRS_TEST_RUN_ID", None)
    if engine == "postgres":
        env["CQRS_TEST_DB_NAME"] = f"cqrs_bench_{uuid.uuid4().hex[:10]}"
    done = subprocess.run(
        [sys.executable, str(script), str(count)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        raise RuntimeError(f"{script.name} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    modes: dict[str, dict[str, float]] = {}
    for line in done.stdout.splitlines():
        match = re.match(r"^(.+?)\s{2,}(\d+)\s+(\d+)(?:\s+([\d.]+)\s+([\d.]+))?\s*$", line)
        if match:
            mode = modes[match.group(1).strip()] = {
                "create_us": float(match.group(2)),
                "update_us": float(match.group(3)),
            }
            if match.group(4):  # ratios of paired saves (see bench_master_save.py)
                mode["create_x"] = float(match.group(4))
                mode["update_x"] = float(match.group(5))
    return modes


# -- aggregation and output -------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def fmt(stats: dict[str, float] | None, unit: str = "", digits: int = 0) -> str:
    if not stats:
        return "n/a"
    spec = f",.{digits}f"
    text = f"{stats['median']:{spec}}{unit}"
    if stats["n"] > 1:
        text += f" [{stats['min']:{spec}}-{stats['max']:{spec}}]"
    return text


def run_transport(kind: str, size: dict[str, int], bootstrap: str | None) -> dict[str, Any]:
    reps: dict[str, list[float]] = {}
    for rep in range(size["reps"]):
        with broker(kind, bootstrap) as cqrs, database("postgres") as db_name:
            settings = {
                **cqrs,
                "consumer_prefetch_count": PREFETCH,
                "replica": dict(REPLICA_SETTINGS),
                "master": {},
            }
            env = child_env("postgres", db_name, settings)
            done = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(size)],
                env=env,
                check=False,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode:
                raise RuntimeError(
                    f"{kind} run {rep + 1} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
                )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result.update(broker_ceiling(kind, cqrs, size["ceiling"]))
        for key, value in result.items():
            reps.setdefault(key, []).append(value)
        print(f"  {kind} run {rep + 1}/{size['reps']} done", file=sys.stderr, flush=True)
    return {key: summary(values) for key, values in reps.items()}


def machine() -> dict[str, Any]:
    import django

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "django": django.get_version(),
    }
    for module in ("psycopg", "pika", "kombu", "confluent_kafka"):
        with contextlib.suppress(Exception):
            mod = importlib.import_module(module)
            version = getattr(mod, "__version__", None)
            if module == "confluent_kafka":
                version = mod.version()[0] + " (librdkafka " + mod.libversion()[0] + ")"
            info[module] = version
    with contextlib.suppress(Exception):
        info["postgresql"] = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return info


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nmachine: {json.dumps(report['machine'])}")
    master = report.get("master", {})
    if master:
        print("\n(1) master per-save cost, us/save, median [min-max] over runs")
        print(
            f"{'database':<10} {'mode':<22} {'create':>22} {'update':>22} {'create x':>9} {'update x':>9}"
        )
        for engine, modes in master.items():
            plain = modes.get("plain Django model", {})
            for mode, stats in modes.items():
                ratio_c = ratio_u = ""
                if "create_x" in stats:  # paired with plain saves in the same loop
                    ratio_c = f"{stats['create_x']['median']:.2f}"
                    ratio_u = f"{stats['update_x']['median']:.2f}"
                elif plain and mode.startswith("SQL floor, outbox"):
                    floor = modes.get("SQL floor, plain", plain)
                    ratio_c = f"{stats['create_us']['median'] / floor['create_us']['median']:.2f}"
                    ratio_u = f"{stats['update_us']['median'] / floor['update_us']['median']:.2f}"
                print(
                    f"{engine:<10} {mode:<22} {fmt(stats['create_us']):>22} {fmt(stats['update_us']):>22} "
                    f"{ratio_c:>9} {ratio_u:>9}"
                )
    rows = [
        ("(2) consumer apply rate, ev/s", "apply_rate", "", 0),
        ("(2) consumer peak RSS, MiB", "consumer_rss_mib", "", 1),
        ("(3) e2e saves/s (master)", "e2e_save_rate", "", 0),
        ("(3) e2e events/s replicated", "e2e_events_per_s", "", 0),
        ("(3) e2e lag after last save, s", "e2e_lag_after_last_s", "", 3),
        ("(3) e2e per-event lag median, s", "e2e_lag_median_s", "", 3),
        ("(3) e2e per-event lag p99, s", "e2e_lag_p99_s", "", 3),
        ("(4) bulk_create call, s", "bulk_create_call_s", "", 2),
        ("(4) bulk_create replicated, s", "bulk_create_replicated_s", "", 2),
        ("(4) bulk_create replicated / call", "bulk_create_ratio", "", 2),
        ("(4) bulk_update call, s", "bulk_update_call_s", "", 2),
        ("(4) bulk_update replicated, s", "bulk_update_replicated_s", "", 2),
        ("(4) bulk_update replicated / call", "bulk_update_ratio", "", 2),
        ("(5) raw publish, msg/s", "raw_publish_rate", "", 0),
        ("(5) raw consume, msg/s", "raw_consume_rate", "", 0),
        ("(5) raw DB bulk upsert, rows/s", "db_upsert_rate", "", 0),
        ("apply rate / lower ceiling", "apply_vs_ceiling", "", 2),
    ]
    transports = report.get("transports", {})
    if not transports:
        return
    names = list(transports)
    print("\nPostgreSQL, one consumer process; median [min-max] over runs")
    print(f"{'measure':<36} " + " ".join(f"{name:>28}" for name in names))
    for label, key, unit, digits in rows:
        cells = [fmt(transports[name].get(key), unit, digits) for name in names]
        print(f"{label:<36} " + " ".join(f"{cell:>28}" for cell in cells))


def bulk_load(rows: int) -> str:
    """(6) `cqrs_bulk_load` row by row and bulk, beside the consumer applying the same rows, on
    PostgreSQL: the table printed by benchmarks/bench_bulk_load.py (run in a child process)."""
    script = HERE / "bench_bulk_load.py"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, str(script), str(rows)],
        env={**env, "CQRS_TEST_DB": "postgres"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        return f"cqrs_bulk_load benchmark failed: {(done.stdout + done.stderr)[-1500:]}"
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="small counts, one run (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --short 1)")
    parser.add_argument("--skip-master", action="store_true", help="leave out (1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        print(json.dumps(result))
        return 0
    size = sizes(args.short)
    if args.reps:
        size["reps"] = args.reps
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")
    sys.path.insert(0, str(PROJECT))
    started = time.monotonic()
    report: dict[str, Any] = {"machine": machine(), "sizes": size, "transports": {}, "master": {}}
    if not args.skip_master:
        for engine in ("postgres", "sqlite"):
            runs = [master_cost(engine, size["master"]) for _ in range(size["reps"])]
            report["master"][engine] = {
                mode: {
                    key: summary([run[mode][key] for run in runs if key in run.get(mode, {})])
                    for key in ("create_us", "update_us", "create_x", "update_x")
                    if key in runs[0][mode]
                }
                for mode in runs[0]
            }
            print(f"  master cost on {engine} done", file=sys.stderr, flush=True)
    wanted = [name.strip() for name in args.transports.split(",") if name.strip()]
    kafka_context: Any = contextlib.nullcontext(None)
    if "kafka" in wanted:
        from cqrs_kafka.testing import kafka_bootstrap

        kafka_context = kafka_bootstrap()
    with kafka_context as bootstrap:
        for kind in wanted:
            try:
                stats = run_transport(kind, size, bootstrap)
            except Exception as exc:  # noqa: BLE001  (report the others all the same)
                print(f"  {kind} failed: {exc}", file=sys.stderr, flush=True)
                report.setdefault("errors", {})[kind] = str(exc)[-2000:]
                continue
            lower = min(stats["raw_consume_rate"]["median"], stats["db_upsert_rate"]["median"])
            ratio = stats["apply_rate"]["median"] / lower
            stats["apply_vs_ceiling"] = {"median": ratio, "min": ratio, "max": ratio, "n": 1}
            report["transports"][kind] = stats
    report["bulk_load"] = bulk_load(size["bulk"])
    report["seconds"] = time.monotonic() - started
    print_tables(report)
    print(f"\n{report['bulk_load']}")
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
