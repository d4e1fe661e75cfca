"""`cqrs_consume`: real processes started through manage.py; lifecycle and restarts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cqrs_replica_models import Item
from replica_support import (  # noqa: F401  (fixture)
    MANAGE,
    data,
    memory_cqrs_fixture,
    payload,
)
from replica_support import (
    ConsumeProcess as Running,
)

from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs.consumer import consume
from dj_cqrs.replica.worker import Supervisor

READY = re.compile(r"worker (\d+) ready for ")
WAIT = 60.0
"""Upper bound for a process to start or stop (a hang guard, not a speed assertion)."""


@pytest.fixture
def running() -> Iterator[Any]:
    started: list[Running] = []

    def start(*args: str, cwd: Path | None = None) -> Running:
        proc = Running(*args, cwd=cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_single_worker_stops_cleanly_on_sigterm(running: Any, tmp_path: Path) -> None:
    live = tmp_path / "alive"
    proc = running("--cqrs-id", "item", "--cqrs-id", "author", "--liveness-file", str(live))
    ready = proc.wait_for(READY)
    assert int(ready.group(1)) == proc.process.pid  # -w 1 runs in the command's process
    assert "item, author" in ready.string
    assert live.exists()
    first = live.stat().st_mtime_ns
    deadline = time.monotonic() + WAIT
    while live.stat().st_mtime_ns == first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live.stat().st_mtime_ns > first, "the liveness file is touched while idle"
    assert proc.stop() == 0
    assert "stopped" in "".join(proc.output)


def test_sigint_stops_too(running: Any) -> None:
    proc = running()
    proc.wait_for(READY)
    assert proc.stop(signal.SIGINT) == 0
    assert "Traceback" not in "".join(proc.output)


def test_workers_are_restarted_and_stopped(running: Any) -> None:
    proc = running("-w", "2", "--sigint-timeout", "20")
    pids = {int(proc.wait_for(READY).group(1)), int(proc.wait_for(READY).group(1))}
    assert proc.process.pid not in pids and len(pids) == 2
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    proc.wait_for(rf"worker {victim} exited with code -9; restarting")
    replacement = int(proc.wait_for(READY).group(1))
    assert replacement not in pids
    assert proc.stop() == 0
    output = "".join(proc.output)
    assert "cqrs_consume: stopped" in output
    assert "killing" not in output  # every worker stopped when asked
    for pid in (pids - {victim}) | {replacement}:
        assert gone(pid)


def test_unknown_cqrs_id_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, str(MANAGE), "cqrs_consume", "--cqrs-id", "itme"],
        capture_output=True,
        check=False,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 1
    assert "No replica model has CQRS_ID 'itme'" in result.stderr
    assert "did you mean 'item'" in result.stderr


def test_reload_restarts_workers_when_code_changes(running: Any, tmp_path: Path) -> None:
    code = tmp_path / "app.py"
    code.write_text("VALUE = 1\n")
    proc = running("--reload", cwd=tmp_path)
    first = int(proc.wait_for(READY).group(1))
    stamp = time.time() + 5
    os.utime(code, (stamp, stamp))
    proc.wait_for("code changed: restarting workers")
    assert int(proc.wait_for(READY).group(1)) != first
    assert proc.stop() == 0


def test_reload_ignores_paths(tmp_path: Path) -> None:
    (tmp_path / "keep.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "gen.py").write_text("")
    (tmp_path / "skip_not").mkdir()
    (tmp_path / "skip_not" / "mod.py").write_text("")
    supervisor = Supervisor(
        ["item"],
        workers=1,
        settings_module="unused",
        reload=True,
        ignore_paths=[str(tmp_path / "skip"), ""],
        watch_root=str(tmp_path),
    )
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in supervisor._snapshot()) == [
        "keep.py",
        "skip_not/mod.py",
    ]


@pytest.mark.django_db(transaction=True)
def test_consume_applies_until_stopped(memory_cqrs: MemoryTransport) -> None:
    memory_cqrs.produce(payload("item", data(1, 0, 0, name="from the queue")))
    ticks: list[float] = []

    def on_tick() -> None:
        ticks.append(time.monotonic())
        if Item.objects.filter(pk=1).exists():
            memory_cqrs.stop()

    consume(["item"], transport=memory_cqrs, on_tick=on_tick)
    assert Item.objects.get(pk=1).name == "from the queue"
    assert ticks
