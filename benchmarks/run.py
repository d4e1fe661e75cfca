"""Replication benchmark on the real services: one command, a table and JSON.

    python benchmarks/run.py [--short] [--json PATH] [--transports rabbitmq,kombu,kafka]
                             [--reps N] [--skip-master] [--skip-3x] [--skip-mariadb]

Every transport runs three scenarios in the same run: "defaults" (only the settings a django-cqrs
3.x service has: transport, url, exchange, queue; CONN_MAX_AGE 0), "tuned" (the recommended
tuning, `TUNED` below) and "3.1.0" (django-cqrs 3.1.0 from PyPI in a throwaway virtualenv made
with uv, same project, same settings as "defaults"; RabbitMQ and kombu, 3.x has no Kafka).
MariaDB runs "defaults" and "tuned" on RabbitMQ when mysqlclient is installed. A targets table
(issue 17, and the metrics cost of issue 16) closes the report.

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
import itertools
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
            "backlog_3x": 1000,
            "bulk_3x": 1000,
            "short": 1,
        }
    return {
        "backlog": 10000,
        "e2e": 5000,
        "bulk": 10000,
        "ceiling": 10000,
        "master": 1000,
        "reps": 3,
        "backlog_3x": 10000,
        "bulk_3x": 10000,
    }


REPLICA_SETTINGS = {"batch_size": 500, "batch_timeout": 0.02}
PREFETCH = 1000
"""`CQRS['consumer_prefetch_count']`: RabbitMQ batches are at most this many messages."""
TUNED_CONN_MAX_AGE = 600
TUNED: dict[str, Any] = {"consumer_prefetch_count": PREFETCH, "replica": dict(REPLICA_SETTINGS)}
"""The recommended tuning (benchmarks/README.md, docs/settings.md), with CONN_MAX_AGE 600."""

SCENARIOS = ("defaults", "tuned", "3.1.0")
UPSTREAM = "django-cqrs==3.1.0"
UPSTREAM_DIR = Path(os.environ.get("BENCH_3X_DIR", "/tmp/cqrs_bench_django_cqrs_3.1.0"))
"""The throwaway virtualenv with django-cqrs 3.1.0 (kept between runs, made again if broken)."""

TRANSPORT_PATHS = {
    "rabbitmq": "dj_cqrs.transport.RabbitMQTransport",
    "kombu": "dj_cqrs.transport.KombuTransport",
    "kafka": "kafka",
}
"""What a 3.x settings module says (we accept the 3.x dotted paths); Kafka is new."""


# -- broker names per run ---------------------------------------------------------------------


@contextlib.contextmanager
def broker(kind: str, bootstrap: str | None, upstream: bool = False) -> Iterator[dict[str, Any]]:
    """The settings a 3.x service has (transport, url, exchange, queue), with names no one else
    uses; everything is removed afterwards.

    django-cqrs 3.x ignores the vhost of a RabbitMQ url, so `upstream` runs use `/` with unique
    names. kombu/Redis runs use no `global_keyprefix` (3.x cannot set one): every key holds the
    run's tag and is deleted by pattern.
    """
    tag = uuid.uuid4().hex[:10]
    exchange, queue = f"bench_x_{tag}", f"bench_q_{tag}"
    if kind == "rabbitmq":
        from cqrs_rabbitmq.testing import temporary_vhost

        vhost_context: Any = (
            contextlib.nullcontext(None) if upstream else temporary_vhost("cqrs_bench")
        )
        with vhost_context as vhost:
            try:
                yield {
                    "transport": TRANSPORT_PATHS[kind],
                    "url": RABBIT_URL + quote(vhost or "/", safe=""),
                    "exchange": exchange,
                    "queue": queue,
                }
            finally:
                if vhost is None:
                    rabbit_cleanup(RABBIT_URL, exchange, queue)
    elif kind == "kombu":
        try:
            yield {
                "transport": TRANSPORT_PATHS[kind],
                "url": REDIS_URL,
                "exchange": exchange,
                "queue": queue,
            }
        finally:
            redis_cleanup(tag)
            time.sleep(1.0)  # kombu may still write binding keys as its connections close
            redis_cleanup(tag)
    elif kind == "kafka":
        assert bootstrap is not None
        prefix = f"bench{tag}."
        try:
            yield {
                "transport": TRANSPORT_PATHS[kind],
                "bootstrap_servers": bootstrap,
                "queue": queue,
                "kafka": {"topic_prefix": prefix, "partitions": 1, "replication_factor": 1},
            }
        finally:
            from cqrs_kafka.testing import cleanup

            cleanup(bootstrap, prefix, [queue])
    else:
        raise SystemExit(f"unknown transport {kind!r}: use one of {', '.join(TRANSPORTS)}")


def rabbit_cleanup(url: str, exchange: str, queue: str) -> None:
    """Delete one run's exchanges and queues on `/` (3.x and our names for them)."""
    import pika

    with contextlib.suppress(Exception):
        conn = pika.BlockingConnection(pika.URLParameters(url))
        for name in (queue, f"dead_letter_{queue}", f"{queue}.delay", f"{queue}_raw"):
            with contextlib.suppress(Exception):
                conn.channel().queue_delete(name)
        for name in (exchange, f"{exchange}.delay", f"{exchange}_raw"):
            with contextlib.suppress(Exception):
                conn.channel().exchange_delete(name)
        conn.close()


def redis_cleanup(tag: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# -- databases --------------------------------------------------------------------------------


def mariadb_missing() -> str | None:
    """Why the MariaDB scenario cannot run here, or None."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        return (
            "MariaDB skipped: mysqlclient is not installed in this environment (it compiles "
            "against libmariadb-dev and pkg-config). To include it: uv pip install --python "
            f"{sys.executable} 'mysqlclient>=2.2.1'"
        )
    try:
        mariadb_connect().close()
    except Exception as exc:  # noqa: BLE001
        return f"MariaDB skipped: cannot connect to {MARIADB['host']}:{MARIADB['port']} ({exc})"
    return None


MARIADB = {
    "host": os.environ.get("BENCH_MARIADB_HOST", "127.0.0.1"),
    "port": int(os.environ.get("BENCH_MARIADB_PORT", "3306")),
    "user": os.environ.get("BENCH_MARIADB_USER", "root"),
    "password": os.environ.get("BENCH_MARIADB_PASSWORD", ""),
}


def mariadb_connect() -> Any:
    import MySQLdb

    return MySQLdb.connect(
        host=MARIADB["host"],
        port=MARIADB["port"],
        user=MARIADB["user"],
        password=MARIADB["password"],
        connect_timeout=5,
    )


@contextlib.contextmanager
def database(engine: str) -> Iterator[str]:
    """A fresh database name (PostgreSQL, MariaDB) or file (SQLite), dropped afterwards."""
    if engine == "sqlite":
        path = f"/tmp/cqrs_bench_{uuid.uuid4().hex[:10]}.sqlite3"
        try:
            yield path
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(path + suffix)
        return
    name = f"cqrs_bench_{uuid.uuid4().hex[:10]}"
    if engine == "mariadb":
        conn = mariadb_connect()
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()
        try:
            yield name
        finally:
            conn = mariadb_connect()
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
            conn.close()
        return
    import psycopg

    dsn = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(
    engine: str, db_name: str, cqrs: dict[str, Any], conn_max_age: int = 0, upstream: bool = False
) -> dict[str, str]:
    """The environment of a child process; `upstream`: no PYTHON*/VIRTUAL_ENV of ours, so that
    the 3.x interpreter can import only its own dj_cqrs (and the benchmark project)."""
    env = dict(os.environ)
    if upstream:
        env = {
            k: v
            for k, v in env.items()
            if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DJANGO_", "CQRS_"))
        }
    env.update(
        BENCH_DB=engine,
        BENCH_DB_NAME=db_name,
        BENCH_CQRS=json.dumps(cqrs),
        BENCH_CONN_MAX_AGE=str(conn_max_age),
        DJANGO_SETTINGS_MODULE="bench_settings",
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(PROJECT), None if upstream else env.get("PYTHONPATH")])
        ),
    )
    return env


# -- django-cqrs 3.1.0 in a throwaway virtualenv ------------------------------------------------


def compile_bytecode(python: str) -> None:
    """Write the bytecode caches of `python`'s packages (and this repository's) before timing.

    pip compiles on install, so services start from .pyc files; with PYTHONDONTWRITEBYTECODE
    set (as on this machine) every consumer would compile ~800 modules from source at start,
    which adds seconds of start-up and ~4 MiB to its peak RSS, for both libraries alike.
    """
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    sources = [purelib, *(str(path) for path in (HERE.parent / "packages").glob("*/src"))]
    command = [python, "-m", "compileall", "-q", "-j0", *sources, str(PROJECT)]
    subprocess.run(command, capture_output=True, check=False, timeout=900)


def upstream_python() -> tuple[str | None, str]:
    """The interpreter of a virtualenv with django-cqrs 3.1.0 (made with uv), or None and why.

    Django and psycopg are pinned to the versions this run uses, so that only dj_cqrs differs.
    """
    import importlib.util as iu
    import shutil

    import django

    python = UPSTREAM_DIR / "venv" / "bin" / "python"
    probe = [
        str(python),
        "-I",
        "-c",
        "import dj_cqrs.transport, django, psycopg, redis, packaging"
        + (", opentelemetry.sdk" if iu.find_spec("opentelemetry.sdk") else "")
        + "; print(django.get_version())",
    ]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode == 0 and done.stdout.strip() == django.get_version():
            return str(python), "reused"
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv is not installed (pip install uv)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    shutil.rmtree(UPSTREAM_DIR, ignore_errors=True)
    UPSTREAM_DIR.mkdir(parents=True)
    done = subprocess.run(
        [uv, "venv", "-q", "--python", sys.executable, str(UPSTREAM_DIR / "venv")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode:
        return None, f"uv venv failed: {done.stderr[-1000:]}"
    # django-cqrs 3.1.0 does not depend on redis (a kombu/Redis service installs it) and
    # kombu's Redis transport needs packaging: without them its consumer never starts.
    pins = [UPSTREAM, f"Django=={django.get_version()}", "packaging"]
    with contextlib.suppress(Exception):
        import psycopg

        pins.append(f"psycopg[binary]=={psycopg.__version__}")
    with contextlib.suppress(Exception):
        import redis

        pins.append(f"redis=={redis.__version__}")
    # redis-py imports the OpenTelemetry SDK whenever it is installed (~1.7 MiB): installed
    # here (the test extras), so there too, or the consumers' RSS would not compare.
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        pins.append(f"opentelemetry-sdk=={version('opentelemetry-sdk')}")
    done = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), *pins],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode:
        return None, f"installing {UPSTREAM} failed (PyPI reachable?): {done.stderr[-1500:]}"
    done = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode:
        return None, f"{UPSTREAM} does not import: {done.stderr[-1500:]}"
    return str(python), "installed"


# -- the child: stages 2-4 and the database ceiling, in its own database ----------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs under the interpreter of the scenario (ours or 3.1.0's): Django and stdlib only,
    except `prefill`, which needs our transports (the parent does it for a 3.1.0 run)."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    out: dict[str, Any] = {}
    out["db_upsert_rate"] = db_upsert_ceiling(spec["ceiling"], REPLICA_SETTINGS["batch_size"])
    backlog = spec["backlog"]
    if spec.get("prefill", True):
        prefill(backlog, BACKLOG_BASE)
    with consumer_process() as consumer:
        out["apply_rate"] = apply_rate(BACKLOG_BASE, backlog, consumer)
        out["consumer_rss_mib"] = consumer.peak_rss_mib()
        relay: Any = relay_process() if spec.get("relay", True) else contextlib.nullcontext()
        with relay:
            if spec.get("e2e", True):
                out.update(end_to_end(spec["e2e"]))
            out.update(bulk(spec["bulk"]))
        out["consumer_rss_after_all_mib"] = consumer.peak_rss_mib()
    if spec.get("metrics_compare"):
        # Issue 16: the same backlog with the metrics endpoint on, then off again.
        for label, extra, base in (
            ("apply_rate_metrics_on", ["--metrics-port", "0"], 3_000_000),
            ("apply_rate_metrics_off", [], 4_000_000),
        ):
            prefill(backlog, base)
            with consumer_process(extra) as consumer:
                out[label] = apply_rate(base, backlog, consumer)
    return out


BACKLOG_BASE = 1_000_000
"""First pk of the pre-filled backlog (e2e rows are below it, bulk rows from 2,000,000)."""


def apply_rate(base: int, count: int, consumer: _Process, limit: float = 900) -> float:
    """Events/s from the first backlog row in the replica to the last.

    Measured from the first row, not from the process start, so that start-up (imports,
    django-cqrs 3.x's worker spawn) counts for neither library; the rows of the first
    transaction are left out of the count as well.
    """
    where = f"WHERE id >= {base} AND id < {base + 1_000_000}"
    deadline = time.monotonic() + limit
    first_count, first_at = 0, 0.0
    while True:
        now = time.time()
        current = replica_count(where)
        if current and not first_count:
            first_count, first_at = current, now
        if current >= count:
            break
        if time.monotonic() > deadline or consumer.proc.poll() is not None:
            raise RuntimeError(
                f"only {current} of {count} backlog rows replicated; consumer output:\n"
                + "".join(consumer.output[-30:])
            )
        time.sleep(0.005)
    if now <= first_at or count <= first_count:
        return float("nan")
    return (count - first_count) / (now - first_at)


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
    fields = ["name", "value", "saved_at", "cqrs_revision", "cqrs_updated"]
    if connection.features.supports_update_conflicts_with_target:
        kwargs = {"update_conflicts": True, "unique_fields": ["id"], "update_fields": fields}
    elif connection.features.supports_update_conflicts:  # MySQL/MariaDB: ON DUPLICATE KEY
        kwargs = {"update_conflicts": True, "update_fields": fields}
    started = time.perf_counter()
    for start in range(0, count, chunk):
        with transaction.atomic():
            UpsertRow.objects.bulk_create(rows[start : start + chunk], **kwargs)
    return count / (time.perf_counter() - started)


def prefill(count: int, base: int = BACKLOG_BASE) -> None:
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
        for i in range(base, base + count)
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


_STARTED = itertools.count(1)


class _Process:
    def __init__(self, args: list[str], ready_pattern: str | None) -> None:
        profile = os.environ.get("BENCH_PROFILE_DIR")  # cProfile the consumer and relay
        # one file per process and phase (backlog, end to end, bulk), numbered in start order
        name = f"{profile}/{args[0]}-{next(_STARTED):02d}-{time.time():.0f}.prof"
        prefix = ["-m", "cProfile", "-o", name] if profile else []
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
        """The largest VmHWM in the process tree: django-cqrs 3.x consumes in a worker process
        that its `cqrs_consume` spawns, ours in the process itself (with `-w 1`)."""
        peaks = []
        pending = [self.proc.pid]
        while pending:
            pid = pending.pop()
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                match = re.search(r"VmHWM:\s+(\d+) kB", status)
                if match:
                    peaks.append(int(match.group(1)) / 1024)
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        pending += [int(c) for c in (task / "children").read_text().split()]
        return max(peaks) if peaks else float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def consumer_process(extra: list[str] | None = None) -> Iterator[_Process]:
    process = _Process(["cqrs_consume", *(extra or [])], None)
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
    stdout = run_script([sys.executable, str(script), str(count)], env, script.name, timeout=900)
    modes: dict[str, dict[str, float]] = {}
    for line in stdout.splitlines():
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


def scenario_settings(scenario: str, cqrs: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The CQRS dict and CONN_MAX_AGE of a scenario (3.1.0 runs with the defaults)."""
    if scenario == "tuned":
        return {**cqrs, **json.loads(json.dumps(TUNED))}, TUNED_CONN_MAX_AGE
    return dict(cqrs), 0


def run_child(python: str, env: dict[str, str], spec: dict[str, Any], what: str) -> dict[str, Any]:
    stdout = run_script([python, __file__, "--child", json.dumps(spec)], env, what, timeout=1800)
    return last_json_line(stdout)


def run_script(command: list[str], env: dict[str, str], what: str, *, timeout: float) -> str:
    """Run a benchmark script in a child process; its stdout, or RuntimeError with its output."""
    done = subprocess.run(
        command, env=env, check=False, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done.stdout


def last_json_line(stdout: str) -> dict[str, Any]:
    """The result a child script prints as JSON on its last line."""
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def run_scenario(
    kind: str,
    scenario: str,
    size: dict[str, int],
    bootstrap: str | None,
    engine: str = "postgres",
    upstream: str | None = None,
) -> dict[str, Any]:
    """One scenario of one transport, `size["reps"]` times; medians with min and max."""
    reps: dict[str, list[float]] = {}
    is_3x = scenario == "3.1.0"
    short = size.get("short", 0) == 1
    for rep in range(size["reps"]):
        with broker(kind, bootstrap, upstream=is_3x) as cqrs, database(engine) as db_name:
            settings, conn_max_age = scenario_settings(scenario, cqrs)
            spec: dict[str, Any] = {
                **size,
                "backlog": size["backlog_3x"] if is_3x else size["backlog"],
                "bulk": size["bulk_3x"] if is_3x else size["bulk"],
                "prefill": not is_3x,
                "relay": not is_3x,
                # --short (CI): end to end and the metrics cost in the tuned run only
                "e2e": size["e2e"]
                if engine == "postgres" and not is_3x and (scenario == "tuned" or not short)
                else 0,
                "metrics_compare": scenario == "tuned" and engine == "postgres" and not short,
            }
            what = f"{kind} {scenario} on {engine}, run {rep + 1}"
            if is_3x:
                assert upstream is not None
                # The backlog goes in with our transport (the wire is the same), then 3.1.0
                # migrates and consumes it.
                env = child_env(engine, db_name, settings)
                prefill_command = [sys.executable, __file__, "--prefill", str(spec["backlog"])]
                run_script(prefill_command, env, f"{what}: prefill", timeout=600)
                env = child_env(engine, db_name, settings, conn_max_age, upstream=True)
                result = run_child(upstream, env, spec, what)
            else:
                env = child_env(engine, db_name, settings, conn_max_age)
                result = run_child(sys.executable, env, spec, what)
            if scenario == "tuned" and engine == "postgres":
                result.update(broker_ceiling(kind, cqrs, size["ceiling"]))
        for key, value in result.items():
            reps.setdefault(key, []).append(value)
        print(f"  {what}/{size['reps']} done", file=sys.stderr, flush=True)
    return {key: summary(values) for key, values in reps.items()}


def master_compare(
    engine: str, count: int, upstream: str | None, short: bool = False
) -> dict[str, dict[str, float]]:
    """Master save cost of both libraries with the same script and models (and metrics on);
    `short` (CI): our memory-transport row and, with a 3.1.0 interpreter, its TransportMock."""
    import importlib.util as iu

    script = HERE / "bench_master_compare.py"
    memory = {"transport": "memory", "url": "memory://bench", "queue": "bench"}
    runs: list[tuple[str, str, dict[str, Any], list[str]]] = [
        ("ours, memory transport", sys.executable, memory, []),
        ("ours, memory, metrics on", sys.executable, memory, ["--metrics"]),
    ]
    if iu.find_spec("dj_cqrs.observability.tracing") is not None:
        runs.append(("ours, memory, tracing on", sys.executable, memory, ["--tracing"]))
    if short:
        runs = runs[:1]
    tag = uuid.uuid4().hex[:10]
    rabbit = {
        "transport": TRANSPORT_PATHS["rabbitmq"],
        "url": RABBIT_URL,
        "exchange": f"bench_x_{tag}",
        "queue": f"bench_q_{tag}",
    }
    if not short:
        runs.append(("ours, RabbitMQ", sys.executable, rabbit, []))
    if upstream:
        mock = {"transport": "dj_cqrs.transport.mock.TransportMock", "queue": "bench"}
        runs.append(("3.1.0, TransportMock", upstream, mock, []))
        if not short:
            runs.append(("3.1.0, RabbitMQ", upstream, rabbit, []))
    out: dict[str, dict[str, float]] = {}
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    channel = conn.channel()  # a bound queue, so that both libraries' events are routable
    channel.exchange_declare(rabbit["exchange"], "topic", durable=True)
    channel.queue_declare(rabbit["queue"], durable=True)
    channel.queue_bind(rabbit["queue"], rabbit["exchange"], CQRS_ID)
    conn.close()
    try:
        for label, python, cqrs, flags in runs:
            with database(engine) as db_name:
                env = child_env(engine, db_name, cqrs, 0, upstream=python != sys.executable)
                command = [python, str(script), str(count), *flags]
                stdout = run_script(command, env, f"{label} on {engine}", timeout=900)
                out[label] = last_json_line(stdout)
    finally:
        rabbit_cleanup(RABBIT_URL, rabbit["exchange"], rabbit["queue"])
    return out


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


ROWS = [
    ("(2) consumer apply rate, ev/s", "apply_rate", 0),
    ("(2) apply rate / 3.1.0's", "x_3x", 1),
    ("(2) apply rate / raw consume", "x_raw_consume", 2),
    ("(2) apply rate / DB upsert floor", "x_db_floor", 2),
    ("(2) consumer peak RSS, MiB", "consumer_rss_mib", 1),
    ("(2) peak RSS after all, MiB", "consumer_rss_after_all_mib", 1),
    ("(2) apply, metrics endpoint on, ev/s", "apply_rate_metrics_on", 0),
    ("(2) apply, same run, metrics off, ev/s", "apply_rate_metrics_off", 0),
    ("(3) e2e saves/s (master)", "e2e_save_rate", 0),
    ("(3) e2e events/s replicated", "e2e_events_per_s", 0),
    ("(3) e2e lag after last save, s", "e2e_lag_after_last_s", 3),
    ("(3) e2e per-event lag median, s", "e2e_lag_median_s", 3),
    ("(3) e2e per-event lag p99, s", "e2e_lag_p99_s", 3),
    ("(4) bulk_create call, s", "bulk_create_call_s", 2),
    ("(4) bulk_create replicated, s", "bulk_create_replicated_s", 2),
    ("(4) bulk_create replicated / call", "bulk_create_ratio", 2),
    ("(4) bulk_update call, s", "bulk_update_call_s", 2),
    ("(4) bulk_update replicated, s", "bulk_update_replicated_s", 2),
    ("(4) bulk_update replicated / call", "bulk_update_ratio", 2),
    ("(5) raw publish, msg/s", "raw_publish_rate", 0),
    ("(5) raw consume, msg/s", "raw_consume_rate", 0),
    ("(5) raw DB bulk upsert, rows/s", "db_upsert_rate", 0),
]


def one(value: float) -> dict[str, float]:
    return {"median": value, "min": value, "max": value, "n": 1}


def med(stats: dict[str, Any] | None, key: str) -> float | None:
    if not stats or key not in stats:
        return None
    value = stats[key]["median"]
    return None if value != value else float(value)  # NaN: not measured


def derive(report: dict[str, Any]) -> None:
    """Same-run ratios: against 3.1.0 (Kafka: against 3.1.0 on RabbitMQ), the raw client's
    consume rate (the tuned run's) and the database floor of the same child."""
    transports = report["transports"]
    for kind, scenarios in transports.items():
        base = scenarios.get("3.1.0")
        if kind == "kafka":  # 3.x has no Kafka transport
            base = transports.get("rabbitmq", {}).get("3.1.0")
        raw = med(scenarios.get("tuned"), "raw_consume_rate")
        for name, stats in scenarios.items():
            rate = med(stats, "apply_rate")
            if rate is None:
                continue
            if base and name != "3.1.0" and med(base, "apply_rate"):
                stats["x_3x"] = one(rate / med(base, "apply_rate"))  # type: ignore[operator]
            if raw:
                stats["x_raw_consume"] = one(rate / raw)
            if med(stats, "db_upsert_rate"):
                stats["x_db_floor"] = one(rate / med(stats, "db_upsert_rate"))  # type: ignore[operator]
    for stats in report.get("mariadb", {}).get("scenarios", {}).values():
        rate, floor = med(stats, "apply_rate"), med(stats, "db_upsert_rate")
        if rate and floor:
            stats["x_db_floor"] = one(rate / floor)


def print_scenarios(title: str, scenarios: dict[str, Any]) -> None:
    names = list(scenarios)
    print(f"\n{title}; median [min-max] over runs")
    print(f"{'measure':<40} " + " ".join(f"{name:>26}" for name in names))
    for label, key, digits in ROWS:
        cells = [fmt(scenarios[name].get(key), "", digits) for name in names]
        if all(cell == "n/a" for cell in cells):
            continue
        print(f"{label:<40} " + " ".join(f"{cell:>26}" for cell in cells))


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nmachine: {json.dumps(report['machine'])}")
    master = report.get("master", {})
    if master:
        print(
            "\n(1) master per-save cost (benchmarks/bench_master_save.py, this library only), us/save"
        )
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
    compare = report.get("master_compare", {})
    if compare:
        print(
            "\n(1b) master save against a paired plain save, both libraries, same script and models"
            " (benchmarks/bench_master_compare.py; outbox on, our default)"
        )
        print(
            f"{'database':<10} {'library, transport':<28} {'plain create us':>16} {'create us':>12}"
            f" {'plain update us':>16} {'update us':>12} {'create x':>9} {'update x':>9}"
        )
        for engine, labels in compare.items():
            for label, stats in labels.items():
                print(
                    f"{engine:<10} {label:<28} {fmt(stats['plain_create_us']):>16}"
                    f" {fmt(stats['create_us']):>12} {fmt(stats['plain_update_us']):>16}"
                    f" {fmt(stats['update_us']):>12} {fmt(stats['create_x'], '', 2):>9}"
                    f" {fmt(stats['update_x'], '', 2):>9}"
                )
    for kind, scenarios in report.get("transports", {}).items():
        note = (
            " (3.x has no Kafka transport: x 3.1.0 is against 3.1.0 on RabbitMQ)"
            if kind == "kafka"
            else ""
        )
        print_scenarios(f"{kind} on PostgreSQL, one consumer process{note}", scenarios)
    mariadb = report.get("mariadb", {})
    if mariadb.get("scenarios"):
        print_scenarios("rabbitmq on MariaDB, one consumer process", mariadb["scenarios"])
    if mariadb.get("note"):
        print(f"\n{mariadb['note']}")
    if report.get("targets"):
        print_targets(report["targets"])


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\nTargets (issue 17; metrics cost: issue 16), same-run figures")
    print(f"{'target':<58} {'goal':<16} {'measured':<26} met")
    for row in targets:
        if row["met"] is None:
            continue
        met = "yes" if row["met"] else "NO"
        print(f"{row['target']:<58} {row['goal']:<16} {row['measured']:<26} {met}")
    missing = sum(row["met"] is None for row in targets)
    if missing:
        print(f"({missing} targets not measured in this run; see --json)")


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with its goal, the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    transports = report.get("transports", {})

    def add(target: str, goal: str, value: float | None, ok: bool | None, text: str = "") -> None:
        measured = text or ("n/a" if value is None else f"{value:,.2f}")
        out.append(
            {
                "target": target,
                "goal": goal,
                "value": value,
                "measured": measured,
                "met": None if value is None else ok,
            }
        )

    def get(kind: str, scenario: str, key: str) -> float | None:
        return med(transports.get(kind, {}).get(scenario), key)

    # 1. apply from a backlog against 3.1.0 (Kafka against 3.1.0 on RabbitMQ)
    for kind, goal in (("rabbitmq", 15), ("kafka", 15), ("kombu", 8)):
        x = get(kind, "defaults", "x_3x")
        add(
            f"1 defaults apply vs 3.1.0, {kind}",
            f">= {goal}x",
            x,
            x is not None and x >= goal,
            "" if x is None else f"{x:.1f}x",
        )
    for kind in ("rabbitmq", "kafka"):
        x = get(kind, "tuned", "x_3x")
        add(
            f"1 tuned apply vs 3.1.0, {kind}",
            ">= 30x",
            x,
            x is not None and x >= 30,
            "" if x is None else f"{x:.1f}x",
        )
    for kind in ("rabbitmq", "kombu", "kafka"):
        x = get(kind, "tuned", "x_raw_consume")
        add(f"1 tuned apply / raw client consume, {kind}", ">= 0.50", x, x is not None and x >= 0.5)
    # 2. master save, outbox on, against a paired plain save, and against 3.1.0's ratio
    for engine, labels in report.get("master_compare", {}).items():
        ours = labels.get("ours, memory transport")
        for op, goal in (("create", 1.3), ("update", 1.4)):
            x = med(ours, f"{op}_x")
            add(
                f"2 master {op} / plain save, {engine}",
                f"<= {goal}x",
                x,
                x is not None and x <= goal,
            )
        for ours_label, theirs_label in (
            ("ours, memory transport", "3.1.0, TransportMock"),
            ("ours, RabbitMQ", "3.1.0, RabbitMQ"),
        ):
            for op in ("create", "update"):
                x, y = (
                    med(labels.get(ours_label), f"{op}_x"),
                    med(labels.get(theirs_label), f"{op}_x"),
                )
                value = None if x is None or y is None else x
                add(
                    f"2 master {op} ratio <= 3.1.0's, {engine}, {ours_label.split(', ')[1]}",
                    "<= 3.1.0",
                    value,
                    value is not None and x <= y,  # type: ignore[operator]
                    "" if value is None else f"{x:.2f} vs {y:.2f}",
                )
    # 3. bulk within 2x (RabbitMQ, Kafka) / 3x (kombu) of the master call
    for kind, goal in (("rabbitmq", 2), ("kafka", 2), ("kombu", 3)):
        for scenario in ("defaults", "tuned"):
            for op in ("create", "update"):
                x = get(kind, scenario, f"bulk_{op}_ratio")
                add(
                    f"3 bulk_{op} replicated / call, {kind} {scenario}",
                    f"<= {goal}x",
                    x,
                    x is not None and x <= goal,
                )
    # 4. kombu/Redis >= 5,000 ev/s; peak RSS at or below 3.1.0's
    for scenario in ("defaults", "tuned"):
        x = get("kombu", scenario, "apply_rate")
        add(
            f"4 kombu/Redis apply from a backlog, {scenario}",
            ">= 5,000 ev/s",
            x,
            x is not None and x >= 5000,
            "" if x is None else f"{x:,.0f} ev/s",
        )
    for kind in ("rabbitmq", "kombu", "kafka"):
        theirs = get(kind if kind != "kafka" else "rabbitmq", "3.1.0", "consumer_rss_after_all_mib")
        for scenario in ("defaults", "tuned"):
            mine = get(kind, scenario, "consumer_rss_after_all_mib")
            value = None if mine is None or theirs is None else mine
            add(
                f"4 consumer peak RSS <= 3.1.0's, {kind} {scenario}",
                "<= 3.1.0",
                value,
                value is not None and mine <= theirs,  # type: ignore[operator]
                "" if value is None else f"{mine:.1f} vs {theirs:.1f} MiB",
            )
    # 5. MariaDB within 2x of PostgreSQL (RabbitMQ)
    maria = report.get("mariadb", {}).get("scenarios", {})
    for scenario in ("defaults", "tuned"):
        pg, my = transports.get("rabbitmq", {}).get(scenario), maria.get(scenario)
        a, b = med(pg, "apply_rate"), med(my, "apply_rate")
        x = None if not a or not b else a / b
        add(
            f"5 MariaDB apply, PostgreSQL's / MariaDB's, {scenario}",
            "<= 2x",
            x,
            x is not None and x <= 2,
            "" if x is None else f"{x:.2f}x ({b:,.0f} vs {a:,.0f} ev/s)",
        )
        for op in ("create", "update"):
            a, b = med(pg, f"bulk_{op}_replicated_s"), med(my, f"bulk_{op}_replicated_s")
            x = None if not a or not b else b / a
            add(
                f"5 MariaDB bulk_{op} replicated, / PostgreSQL's, {scenario}",
                "<= 2x",
                x,
                x is not None and x <= 2,
                "" if x is None else f"{x:.2f}x ({b:.2f} vs {a:.2f} s)",
            )
    # Issue 16: metrics (and tracing) cost under 5%
    for kind in ("rabbitmq", "kombu", "kafka"):
        on, off = (
            get(kind, "tuned", "apply_rate_metrics_on"),
            get(kind, "tuned", "apply_rate_metrics_off"),
        )
        x = None if not on or not off else off / on - 1
        add(
            f"16 consumer apply, --metrics-port cost, {kind}",
            "< 5%",
            x,
            x is not None and x < 0.05,
            "" if x is None else f"{x:+.1%} ({on:,.0f} vs {off:,.0f} ev/s)",
        )
    for engine, labels in report.get("master_compare", {}).items():
        for label in ("ours, memory, metrics on", "ours, memory, tracing on"):
            if label not in labels:
                continue
            for op in ("create", "update"):
                on, off = (
                    med(labels[label], f"{op}_x"),
                    med(labels.get("ours, memory transport"), f"{op}_x"),
                )
                x = None if not on or not off else on / off - 1
                add(
                    f"16 master {op}, {label.split(', ')[-1]} cost, {engine}",
                    "< 5%",
                    x,
                    x is not None and x < 0.05,
                    "" if x is None else f"{x:+.1%} ({on:.2f}x vs {off:.2f}x)",
                )
    return out


def bulk_load(rows: int) -> str:
    """(6) `cqrs_bulk_load` row by row and bulk, beside the consumer applying the same rows, on
    PostgreSQL: the table printed by benchmarks/bench_bulk_load.py (run in a child process)."""
    script = HERE / "bench_bulk_load.py"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [sys.executable, str(script), str(rows)]
    try:
        stdout = run_script(command, {**env, "CQRS_TEST_DB": "postgres"}, script.name, timeout=1800)
    except RuntimeError as exc:
        return f"cqrs_bulk_load benchmark failed: {str(exc)[-1500:]}"
    return stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="small counts, one run (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --short 1)")
    parser.add_argument("--skip-master", action="store_true", help="leave out (1)")
    parser.add_argument(
        "--skip-3x", action="store_true", help="leave out django-cqrs 3.1.0 (--short does)"
    )
    parser.add_argument("--with-3x", action="store_true", help="include 3.1.0 with --short")
    parser.add_argument("--skip-mariadb", action="store_true", help="leave out MariaDB")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="which of defaults,tuned,3.1.0 to run"
    )
    parser.add_argument("--skip-bulk-load", action="store_true", help="leave out (6)")
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="KEY=N",
        help="override a size: backlog, e2e, bulk, ceiling, master, backlog_3x, bulk_3x "
        "(django-cqrs 3.1.0 applies one transaction per message: on a busy machine its 10,000 "
        "take minutes)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prefill", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        print(json.dumps(result))
        return 0
    if args.prefill:
        import django

        django.setup()
        prefill(args.prefill, BACKLOG_BASE)
        return 0
    size = sizes(args.short)
    if args.reps:
        size["reps"] = args.reps
    for item in args.size:
        key, _, value = item.partition("=")
        if key not in size:
            raise SystemExit(f"--size {item}: the keys are {', '.join(size)}")
        size[key] = int(value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")
    sys.path.insert(0, str(PROJECT))
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": machine(),
        "sizes": size,
        "settings": {
            "defaults": "transport, url, exchange, queue; CONN_MAX_AGE 0",
            "tuned": {**TUNED, "CONN_MAX_AGE": TUNED_CONN_MAX_AGE},
        },
        "transports": {},
        "master": {},
        "master_compare": {},
        "notes": [],
    }
    upstream: str | None = None
    if args.skip_3x or (args.short and not args.with_3x):
        report["notes"].append("django-cqrs 3.1.0 baseline skipped (--short or --skip-3x)")
    else:
        upstream, how = upstream_python()
        if upstream is None:
            report["notes"].append(f"django-cqrs 3.1.0 baseline skipped: {how}")
        else:
            compile_bytecode(upstream)
        print(f"  django-cqrs 3.1.0: {how} ({upstream})", file=sys.stderr, flush=True)
    compile_bytecode(sys.executable)
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
            compare = [
                master_compare(engine, size["master"], upstream, bool(size.get("short")))
                for _ in range(size["reps"])
            ]
            report["master_compare"][engine] = {
                label: {
                    key: summary([run[label][key] for run in compare]) for key in compare[0][label]
                }
                for label in compare[0]
            }
            print(f"  master cost on {engine} done", file=sys.stderr, flush=True)
    wanted = [name.strip() for name in args.transports.split(",") if name.strip()]
    kafka_context: Any = contextlib.nullcontext(None)
    if "kafka" in wanted:
        from cqrs_kafka.testing import kafka_bootstrap

        kafka_context = kafka_bootstrap()
    with kafka_context as bootstrap:
        for kind in wanted:
            scenarios = [
                name
                for name in SCENARIOS
                if name in args.scenarios.split(",")
                and (name != "3.1.0" or (upstream and kind in ("rabbitmq", "kombu")))
            ]
            for scenario in scenarios:
                try:
                    stats = run_scenario(kind, scenario, size, bootstrap, upstream=upstream)
                except Exception as exc:  # noqa: BLE001  (report the others all the same)
                    print(f"  {kind} {scenario} failed: {exc}", file=sys.stderr, flush=True)
                    report.setdefault("errors", {})[f"{kind} {scenario}"] = str(exc)[-3000:]
                    continue
                report["transports"].setdefault(kind, {})[scenario] = stats
                if args.json:  # so far, in case the run is cut short
                    Path(args.json).write_text(json.dumps(report, indent=2))
    missing = "MariaDB skipped (--skip-mariadb)" if args.skip_mariadb else mariadb_missing()
    if missing:
        report["mariadb"] = {"note": missing}
        report["notes"].append(missing)
    else:
        report["mariadb"] = {"scenarios": {}}
        for scenario in ("defaults", "tuned"):
            try:
                stats = run_scenario("rabbitmq", scenario, size, None, engine="mariadb")
            except Exception as exc:  # noqa: BLE001
                print(f"  MariaDB {scenario} failed: {exc}", file=sys.stderr, flush=True)
                report.setdefault("errors", {})[f"mariadb {scenario}"] = str(exc)[-3000:]
                continue
            report["mariadb"]["scenarios"][scenario] = stats
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=2))
    derive(report)
    report["targets"] = targets(report)
    if not args.skip_bulk_load:
        report["bulk_load"] = bulk_load(size["bulk"])
    report["seconds"] = time.monotonic() - started
    print_tables(report)
    if report.get("bulk_load"):
        print(f"\n{report['bulk_load']}")
    for note in report["notes"]:
        print(f"note: {note}")
    for what, error in report.get("errors", {}).items():
        print(f"ERROR {what}: {error.splitlines()[0] if error else ''}")
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
