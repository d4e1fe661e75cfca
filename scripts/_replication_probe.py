"""Replicate master -> replica through a real broker with nothing but installed wheels.

Why: "`pip install cqrs-django[kafka]` and it replicates" is the promise users buy; importing the
packages does not prove it. This probe writes a throwaway Django project (a master app and a
replica app sharing one CQRS_ID, each side with its own SQLite file) into a folder, then, with a
virtualenv's interpreter and nothing from this checkout on the path:

1. `manage.py migrate --run-syncdb` for both databases;
2. starts the replica's `manage.py cqrs_consume` and waits until it says it is ready;
3. creates two rows on the master, waits until the replica has the same rows;
4. updates one, deletes the other, creates a third, waits again;
5. stops the consumer (SIGTERM) and prints one JSON line with the result.

Two halves in one file, so that nobody writes it twice:
- `run_probe(python, cqrs, workdir)`: stdlib only, called by `scripts/check_packages.py` and
  `tests/integration/test_third_party_transport.py`; runs this file with the venv's interpreter.
- `python _replication_probe.py --dir D --cqrs JSON [--kafka] [--transports]`: the inside half.

`--kafka` starts a Tansu broker through `cqrs_kafka.testing.kafka_bootstrap()` (so it honours
`CQRS_TEST_KAFKA_BOOTSTRAP` and `TANSU_BIN`), points `CQRS['url']` at it and deletes the probe's
topics afterwards when the broker is external. A `redis_streams` transport gets its keys
(`CQRS['redis_streams']['prefix']`) deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CQRS_ID = "probe_item"
READY = re.compile(r"worker \d+ ready for ")
RESULT_PREFIX = "PROBE-RESULT "

# --------------------------------------------------------------------------- outside half


@dataclass
class ProbeResult:
    ok: bool
    detail: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)


def run_probe(
    python: str | Path,
    cqrs: dict[str, Any],
    workdir: Path,
    *,
    kafka: bool = False,
    transports: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    wait: float | None = None,
) -> ProbeResult:
    """Run the probe with `python` (a venv's interpreter) in `workdir` (created, left behind).

    `wait` bounds each wait inside the probe (for the consumer, for the replica to catch up;
    `timeout / 2` by default); `timeout` bounds the whole run. On a timeout the probe's whole
    process group is killed, so its `cqrs_consume` never outlives it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--dir", str(workdir)]
    cmd += ["--cqrs", json.dumps(cqrs), "--timeout", str(timeout / 2 if wait is None else wait)]
    cmd += ["--kafka"] if kafka else []
    cmd += ["--transports"] if transports else []
    base = dict(os.environ if env is None else env)
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONHOME"):
        base.pop(key, None)
    started = time.monotonic()
    # cwd = workdir: the checkout must not be importable by accident. A session of its own makes
    # the probe and every process it starts one group, killed together on a timeout.
    with subprocess.Popen(
        cmd,
        cwd=workdir,
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as running:
        try:
            stdout, stderr = running.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(running.pid)
            stdout, _ = running.communicate()
            return ProbeResult(
                False,
                f"probe timed out after {timeout:.0f}s: {stdout[-1500:]}",
                time.monotonic() - started,
            )
        finally:
            _kill_group(running.pid)  # whatever the probe left behind (it should leave nothing)
    proc = subprocess.CompletedProcess(cmd, running.returncode, stdout, stderr)
    seconds = time.monotonic() - started
    line = next(
        (ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(RESULT_PREFIX)), None
    )
    if line is None:
        text = (proc.stdout + proc.stderr).strip()
        return ProbeResult(False, f"exit {proc.returncode}, no result: {text[-2000:]}", seconds)
    data = json.loads(line[len(RESULT_PREFIX) :])
    ok = proc.returncode == 0 and bool(data.get("ok"))
    return ProbeResult(ok, str(data.get("detail", "")), seconds, data)


# --------------------------------------------------------------------------- inside half

SETTINGS = '''\
"""Throwaway project of scripts/_replication_probe.py: DB file and CQRS come from the env."""
import json
import os

SECRET_KEY = "replication-probe"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "dj_cqrs", "shop", "shop_replica"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["PROBE_DB"],
        "OPTIONS": {"timeout": 30},
    }
}
CQRS = json.loads(os.environ["PROBE_CQRS"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
'''

MASTER_MODELS = f'''\
from django.db import models
from dj_cqrs.mixins import MasterMixin


class Item(MasterMixin, models.Model):
    CQRS_ID = "{CQRS_ID}"

    name = models.CharField(max_length=100)
    quantity = models.IntegerField(default=0)
'''

REPLICA_MODELS = f'''\
from django.db import models
from dj_cqrs.mixins import ReplicaMixin


class ItemReplica(ReplicaMixin, models.Model):
    CQRS_ID = "{CQRS_ID}"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    quantity = models.IntegerField(default=0)
'''

MANAGE = """\
import sys
from django.core.management import execute_from_command_line

if __name__ == "__main__":
    execute_from_command_line(sys.argv)
"""

MASTER_STEPS = (
    (
        "create x2",
        "from shop.models import Item\n"
        "Item.objects.create(name='alpha', quantity=1)\n"
        "Item.objects.create(name='beta', quantity=2)\n",
        ["alpha", "beta"],
    ),
    (
        "update+delete+create",
        "from shop.models import Item\n"
        "item = Item.objects.get(name='alpha')\n"
        "item.name, item.quantity = 'alpha v2', 10\n"
        "item.save()\n"
        "Item.objects.get(name='beta').delete()\n"
        "Item.objects.create(name='gamma', quantity=3)\n",
        ["alpha v2", "gamma"],
    ),
)
"""(step, master-side code run with `manage.py shell -c` in a process of its own, names after)."""


def write_project(folder: Path) -> None:
    files = {
        "manage.py": MANAGE,
        "probeproject/__init__.py": "",
        "probeproject/settings.py": SETTINGS,
        "shop/__init__.py": "",
        "shop/models.py": MASTER_MODELS,
        "shop_replica/__init__.py": "",
        "shop_replica/models.py": REPLICA_MODELS,
    }
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process of group `pgid` (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Consumer:
    """`manage.py cqrs_consume` of the replica side; a thread collects its output."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.output: list[str] = []
        self.lines: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "cqrs_consume"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    return False
                continue
            if READY.search(line):
                return True
        return False

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(10)

    def tail(self, lines: int = 15) -> str:
        return "".join(self.output[-lines:])


class Failed(Exception):
    """The probe found a problem; the message says which."""


def _env(folder: Path, db: str, cqrs: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="probeproject.settings",
        PROBE_DB=str(folder / db),
        PROBE_CQRS=json.dumps(cqrs),
        PYTHONPATH=str(folder),
        PYTHONUNBUFFERED="1",
    )
    return env


def _manage(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise Failed(f"manage.py {' '.join(args)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return proc


def _rows(db: Path, table: str) -> list[list[Any]]:
    sql = f"SELECT id, name, quantity, cqrs_revision FROM {table} ORDER BY id"
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return [list(row) for row in conn.execute(sql)]


def _wait_equal(folder: Path, timeout: float, consumer: Consumer) -> list[list[Any]]:
    """Poll until the replica's rows equal the master's; return them."""
    expected = _rows(folder / "master.sqlite3", "shop_item")
    deadline = time.monotonic() + timeout
    got: list[list[Any]] = []
    while time.monotonic() < deadline:
        got = _rows(folder / "replica.sqlite3", "shop_replica_itemreplica")
        if got == expected:
            return got
        if consumer.process.poll() is not None:
            break
        time.sleep(0.1)
    raise Failed(
        f"replica rows {got} != master rows {expected} after {timeout:.0f}s; "
        f"consumer output: {consumer.tail()}"
    )


@contextlib.contextmanager
def _kafka_broker(cqrs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Start Tansu (or use $CQRS_TEST_KAFKA_BOOTSTRAP) and point the settings at it."""
    from cqrs_kafka import testing

    with testing.kafka_bootstrap() as bootstrap:
        section = dict(cqrs.get("kafka") or {})
        section.setdefault("consumer", dict(testing.FAST_CONSUMER))
        settings = {**cqrs, "url": f"kafka://{bootstrap}", "kafka": section}
        try:
            yield settings
        finally:
            if os.environ.get(testing.ENV_BOOTSTRAP) and section.get("topic_prefix"):
                queue_name = str(cqrs.get("queue", ""))
                groups = [queue_name, f"{queue_name}.dead-letters"]
                testing.cleanup(bootstrap, section["topic_prefix"], groups)


def _redis_cleanup(cqrs: dict[str, Any]) -> None:
    import redis  # type: ignore[import-not-found]

    prefix = (cqrs.get("redis_streams") or {}).get("prefix")
    if not prefix:
        return  # never delete the default prefix's keys: they may be someone else's
    client = redis.Redis.from_url(cqrs.get("url") or "redis://127.0.0.1:6379/0")
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def replicate(folder: Path, cqrs: dict[str, Any], timeout: float, transports: bool) -> dict:
    """Steps 1-5 of the module docstring; raises Failed with what went wrong."""
    phases: dict[str, float] = {}
    result: dict[str, Any] = {"phases": phases}
    t0 = time.monotonic()
    # Each master step is a short-lived process: at exit it waits `publish_timeout` for its
    # fast-path publish and leaves the rest to `cqrs_relay`, which the probe does not run. A
    # fresh Kafka producer can need more than the default 1 s, so give it time.
    master_options = dict(cqrs.get("master") or {})
    master_options["outbox"] = {"publish_timeout": 15.0, **(master_options.get("outbox") or {})}
    cqrs = {**cqrs, "master": master_options}
    write_project(folder)
    master_env = _env(folder, "master.sqlite3", cqrs)
    replica_env = _env(folder, "replica.sqlite3", cqrs)
    for env in (master_env, replica_env):
        _manage(folder, env, "migrate", "--run-syncdb", "-v", "0")
    if transports:
        result["transports"] = _manage(folder, replica_env, "cqrs_transports", "--check").stdout
    phases["setup"] = time.monotonic() - t0

    t0 = time.monotonic()
    consumer = Consumer(folder, replica_env)
    try:
        if not consumer.wait_ready(timeout):
            raise Failed(f"cqrs_consume did not get ready in {timeout:.0f}s: {consumer.tail()}")
        phases["consumer ready"] = time.monotonic() - t0

        # The master is a process of its own, as in production: it exits (flushing what it
        # committed) before the broker is stopped, and its rows are read from its SQLite file.
        for name, source, names in MASTER_STEPS:
            t0 = time.monotonic()
            step = _manage(folder, master_env, "shell", "-c", source)
            rows = _rows(folder / "master.sqlite3", "shop_item")
            if [row[1] for row in rows] != names:
                raise Failed(f"master rows after {name!r} are {rows}, expected names {names}")
            try:
                result["rows"] = _wait_equal(folder, timeout, consumer)
            except Failed as exc:
                raise Failed(f"{exc}; master stderr: {step.stderr[-1500:]}") from None
            phases[name] = time.monotonic() - t0
    finally:
        t0 = time.monotonic()
        code = consumer.stop()
        phases["consumer stop"] = time.monotonic() - t0
    if code != 0:
        raise Failed(f"cqrs_consume exited {code} on SIGTERM: {consumer.tail()}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="folder for the project")
    parser.add_argument("--cqrs", required=True, help="the CQRS setting as JSON")
    parser.add_argument("--timeout", type=float, default=60.0, help="per wait, seconds")
    parser.add_argument("--kafka", action="store_true", help="start Tansu (cqrs_kafka.testing)")
    parser.add_argument("--transports", action="store_true", help="run cqrs_transports --check")
    args = parser.parse_args(argv)
    cqrs = json.loads(args.cqrs)
    folder = args.dir.resolve()
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            if args.kafka:
                cqrs = stack.enter_context(_kafka_broker(cqrs))
            if cqrs.get("transport") == "redis_streams":
                stack.callback(_redis_cleanup, cqrs)
            data = replicate(folder, cqrs, args.timeout, args.transports)
    except Failed as exc:
        data = {"ok": False, "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - report anything as a failed probe, with its type
        data = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    else:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in data["phases"].items())
        data.update(ok=True, detail=phases)
    data["seconds"] = time.monotonic() - started
    print(RESULT_PREFIX + json.dumps(data), flush=True)
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
