#!/usr/bin/env python
"""One command demo: a master and a replica Django service replicating through a broker.

    python examples/demo/run.py                      # embedded: kombu filesystem:// in a temp dir
    python examples/demo/run.py --transport rabbitmq --url amqp://guest:guest@127.0.0.1:5672/%2F
    python examples/demo/run.py --serve              # then keep both services up on loopback

Migrates both services (separate SQLite databases), starts the replica's `cqrs_consume` and the
master's `cqrs_relay` as separate processes, drives the master, waits for the replica to catch
up, then prints events per type, both sides' rows, the replication lag (per event, and the
p50/p90/p99 of the replica's lag histogram from its /metrics) and a consistency
verdict computed by comparing the two databases. Exit status 0 only if they match.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _percentiles
import _report
import _tracing
from _processes import DemoError, Processes, free_port, wait_for_port

HERE = Path(__file__).resolve().parent
MASTER = HERE / "master_service"
REPLICA = HERE / "replica_service"
DEFAULT_URLS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "kafka": "kafka://127.0.0.1:9092",
}
STARTED = time.monotonic()


def masked(url: str) -> str:
    """`url` with its password replaced by `***`, for what the demo prints."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="demo", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--transport",
        choices=("kombu", "rabbitmq", "kafka"),
        default="kombu",
        help="Broker plugin (default kombu, on filesystem:// in a temporary folder).",
    )
    parser.add_argument(
        "--url",
        help="Broker URL (default: filesystem:// for kombu, amqp://guest:guest@127.0.0.1:5672/%%2F "
        "for rabbitmq, kafka://127.0.0.1:9092 for kafka).",
    )
    parser.add_argument(
        "--exchange",
        help="Exchange (Kafka: topic prefix). Default 'cqrs' on filesystem://, a unique "
        "'cqrs_demo_<id>' on a real broker so runs never see each other's messages.",
    )
    parser.add_argument(
        "--queue", help="Replica queue (consumer group). Default 'storefront' or 'storefront_<id>'."
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="After the run, keep both services up: the master's admin and the replica's page.",
    )
    parser.add_argument("--master-port", type=int, default=8000, help="(--serve) default 8000.")
    parser.add_argument("--replica-port", type=int, default=8001, help="(--serve) default 8001.")
    parser.add_argument(
        "--timeout", type=float, default=40.0, help="Seconds to wait for the replica (40)."
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary folder (databases, logs)."
    )
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {text}", flush=True)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="cqrs-demo-"))
        (self.workdir / "logs").mkdir()
        run_id = uuid.uuid4().hex[:8]
        embedded = args.transport == "kombu" and not args.url
        self.url = (
            args.url
            or DEFAULT_URLS.get(args.transport)
            or (f"filesystem://{self.workdir / 'broker'}")
        )
        self.exchange = args.exchange or ("cqrs" if embedded else f"cqrs_demo_{run_id}")
        self.queue = args.queue or ("storefront" if embedded else f"storefront_{run_id}")
        self.own_names = {
            "exchange": not args.exchange and not embedded,
            "queue": not args.queue and not embedded,
        }
        """Broker names this run made up (removed on exit); names given on the command line
        may be shared with other services, so they are left alone."""
        env = dict(os.environ)
        env.update(
            DEMO_DIR=str(self.workdir),
            DEMO_TRANSPORT=args.transport,
            DEMO_URL=self.url,
            DEMO_EXCHANGE=self.exchange,
            DEMO_QUEUE=self.queue,
            PYTHONUNBUFFERED="1",
        )
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(_tracing.environment(self.workdir))  # spans of every service (issue 16)
        self.processes = Processes(env, self.workdir / "logs")
        self.master_db = self.workdir / "master.sqlite3"
        self.replica_db = self.workdir / "replica.sqlite3"
        self.cleaned = False
        self.metrics_port: int | None = None
        """The replica consumer's /metrics port (None without prometheus_client)."""

    def cleanup(self) -> None:
        """Stop every child and remove the temporary folder; safe to call more than once."""
        if self.cleaned:
            return
        self.cleaned = True
        self.processes.stop_all()
        if self.args.transport == "rabbitmq":
            self.remove_rabbitmq_names()
        if self.args.keep:
            print(f"kept {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def remove_rabbitmq_names(self) -> None:
        """Delete the queues and exchanges this run declared on RabbitMQ (its own names only)."""
        try:
            import pika

            from cqrs_rabbitmq import RabbitMQTransport
        except ImportError:
            return
        options = {"url": self.url, "exchange": self.exchange, "queue": self.queue}
        topology = RabbitMQTransport(options).topology
        queues = (
            [topology.queue, topology.dead_letter_queue, topology.delay_queue]
            if self.own_names["queue"]
            else []
        )
        exchanges = (
            [topology.exchange, topology.delay_exchange] if self.own_names["exchange"] else []
        )
        if not queues and not exchanges:
            return
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
        except Exception as exc:  # noqa: BLE001 (cleanup must not hide the demo's result)
            print(f"could not remove the demo's RabbitMQ queues: {exc}", flush=True)
            return
        try:
            channel = connection.channel()
            for queue in queues:
                channel.queue_delete(queue)
            for exchange in exchanges:
                channel.exchange_delete(exchange)
        finally:
            connection.close()
        print(
            f"removed RabbitMQ queues {', '.join(queues) or 'none'} and exchanges "
            f"{', '.join(exchanges) or 'none'}",
            flush=True,
        )

    # -- the steps ---------------------------------------------------------------------------

    def run(self) -> int:
        shown = masked(self.url).replace(str(self.workdir), "<tmp>")
        say(
            f"transport {self.args.transport} at {shown}, exchange {self.exchange!r}, "
            f"replica queue {self.queue!r}; work folder {self.workdir}"
        )
        self.migrate()
        self.metrics_port = free_port(0) if _percentiles.available() else None
        consume = ["cqrs_consume", *_percentiles.consumer_args(self.metrics_port)]
        consumer = self.processes.start("replica cqrs_consume", REPLICA, consume)
        relay = self.processes.start("master cqrs_relay", MASTER, ["cqrs_relay"])
        say(
            f"started replica `manage.py cqrs_consume` (pid {consumer.pid}) and master "
            f"`manage.py cqrs_relay` (pid {relay.pid})"
        )
        consumer.wait_for_line("ready for", timeout=60)
        say("replica consumer ready; driving the master (manage.py demo_drive):")
        driver = ["demo_drive", "--queue", self.queue] + (
            ["--superuser"] if self.args.serve else []
        )
        self.processes.run("master demo_drive", MASTER, driver, echo=sys.stdout, indent="         ")
        caught_up = self.wait_for_replica(consumer)
        self.report()
        verdict = self.verdict()
        if self.args.serve and verdict == 0:
            self.serve()
        return verdict if caught_up else 1

    def migrate(self) -> None:
        say("migrating both services (master.sqlite3, replica.sqlite3)")
        master = self.processes.start("master migrate", MASTER, ["migrate", "--noinput"])
        replica = self.processes.start("replica migrate", REPLICA, ["migrate", "--noinput"])
        for child in (master, replica):
            child.process.wait()
            self.processes.children.remove(child)
            if child.process.returncode != 0:
                raise DemoError(f"{child.name} failed:\n{child.output(60)}")

    def wait_for_replica(self, consumer: object) -> bool:
        since = time.monotonic()
        say("waiting for the replica to catch up")
        deadline = since + self.args.timeout
        diff: list[str] = []
        while time.monotonic() < deadline:
            sent, pending = _report.published(self.master_db)
            master = _report.master_rows(self.master_db)
            diff = _report.differences(master, _report.replica_rows(self.replica_db))
            if not diff and not pending and self.drained(sum(sent.values()), sent.get("SYNC", 0)):
                say(f"replica caught up ({time.monotonic() - since:.2f} s after the driver exited)")
                return True
            time.sleep(0.05)
        say(
            f"replica NOT caught up after {self.args.timeout:.0f} s; still different: "
            f"{'; '.join(diff[:5]) or _still_waiting(pending)}"
        )
        for child in self.processes.children:
            print(f"--- {child.name} output ---\n{child.output(40)}", flush=True)
        return False

    def drained(self, published: int, syncs: int) -> bool:
        """The replica has handled every message the master sent, not only matched its rows."""
        if self.metrics_port is not None:
            try:
                return _percentiles.settled(self.metrics_port) >= published
            except OSError:
                return False  # not serving yet; the deadline still bounds the wait
        # without /metrics: a SYNC is always applied, so each one leaves an ApplyLog row
        applied = sum(1 for kind, _ in _report.applied(self.replica_db) if kind == "SYNC")
        return applied >= syncs

    def report(self) -> None:
        _report.print_events(sys.stdout, self.master_db, self.replica_db)
        _report.print_rows(sys.stdout, self.master_db, self.replica_db)
        _report.print_lag(sys.stdout, self.replica_db)
        self.print_lag_percentiles()
        self.print_span_tree()

    def print_span_tree(self) -> None:
        """One event's trace from the master's save to the replica's apply (OpenTelemetry)."""
        _tracing.print_tree(sys.stdout, self.workdir / "spans.jsonl")
        sys.stdout.flush()

    def print_lag_percentiles(self) -> None:
        """p50/p90/p99 of the replica's lag histogram (its /metrics), as a dashboard shows."""
        saves = sum(1 for kind, _ in _report.applied(self.replica_db) if kind == "SAVE")
        _percentiles.print_percentiles(sys.stdout, self.metrics_port, saves)
        sys.stdout.flush()

    def verdict(self) -> int:
        master = _report.master_rows(self.master_db)
        diff = _report.differences(master, _report.replica_rows(self.replica_db))
        print(flush=True)
        if diff:
            print(f"VERDICT: INCONSISTENT - {len(diff)} difference(s) between the databases:")
            for line in diff:
                print(f"  {line}")
            sys.stdout.flush()
            return 1
        print(
            f"VERDICT: CONSISTENT - all {len(master)} master rows are on the replica with the same "
            "values and revisions, and no deleted row is left there.",
            flush=True,
        )
        return 0

    def serve(self) -> None:
        master_port = free_port(self.args.master_port)
        replica_port = free_port(self.args.replica_port)
        master = self.processes.start(
            "master runserver", MASTER, ["runserver", "--noreload", f"127.0.0.1:{master_port}"]
        )
        replica = self.processes.start(
            "replica runserver", REPLICA, ["runserver", "--noreload", f"127.0.0.1:{replica_port}"]
        )
        wait_for_port(master_port, master)
        wait_for_port(replica_port, replica)
        print(
            "\nServing (Ctrl-C to stop and clean up):\n"
            f"  master admin:  http://127.0.0.1:{master_port}/admin/  (user demo, password demo)\n"
            f"  replica page:  http://127.0.0.1:{replica_port}/  (reloads every second)\n"
            "  Edit a product in the admin, or select rows and run the action "
            "'Synchronize with CQRS replicas', and watch the replica page.",
            flush=True,
        )
        while all(child.alive() for child in self.processes.children):
            time.sleep(0.5)
        dead = [c for c in self.processes.children if not c.alive()]
        raise DemoError(f"{dead[0].name} exited:\n{dead[0].output()}")


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _still_waiting(pending: int) -> str:
    if pending:
        return f"{pending} outbox event(s) unsent"
    return "messages still on their way to the replica (see its cqrs_replica_messages_total)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    demo = Demo(args)
    atexit.register(demo.cleanup)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    try:
        return demo.run()
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the services", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.cleanup()
        print(
            f"total time {time.monotonic() - STARTED:.1f} s (processes stopped, temporary files "
            "removed)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
