"""Running consumers: one in-process worker, or a supervisor of worker processes.

The supervisor (used by `cqrs_consume -w N` and `--reload`) starts N spawned processes,
restarts any that dies (with a growing pause if they keep dying at start-up), and on SIGTERM
or SIGINT asks each to stop (SIGTERM: the worker lets its transport finish the batch in hand),
waits `sigint_timeout` seconds, kills what is left and waits `sigkill_timeout` more.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger("django-cqrs")

_QUICK_DEATH = 5.0
"""A worker that dies sooner than this after starting is restarted after a growing pause."""


def touch(path: str | None) -> None:
    """Create `path` or bump its modification time (liveness probes)."""
    if path:
        try:
            Path(path).touch()
        except OSError:
            logger.warning("cannot touch liveness file %s", path, exc_info=True)


def run_worker(
    cqrs_ids: Sequence[str],
    *,
    liveness_file: str | None = None,
    out: TextIO | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Consume in this process until SIGTERM/SIGINT (or `stop_event`); restart after errors."""
    from dj_cqrs import conf
    from dj_cqrs.consumer import consume

    out = out or sys.stdout
    stop = stop_event or threading.Event()
    state: dict[str, Any] = {"transport": None}

    def request_stop(*_: Any) -> None:
        stop.set()
        transport = state["transport"]
        if transport is not None:
            transport.stop()

    previous = _install_signals(request_stop)
    watcher = None
    if stop_event is not None:  # a stop requested from another thread
        watcher = threading.Thread(target=lambda: (stop.wait(), request_stop()), daemon=True)
        watcher.start()
    failures = 0
    try:
        while not stop.is_set():
            transport = state["transport"] = conf.get_transport()
            if stop.is_set():
                break

            def ready() -> None:
                touch(liveness_file)
                out.write(f"cqrs_consume: worker {os.getpid()} ready for {', '.join(cqrs_ids)}\n")
                out.flush()

            try:
                consume(
                    cqrs_ids,
                    transport=transport,
                    on_ready=ready,
                    on_tick=lambda: touch(liveness_file),
                )
            except Exception:
                failures += 1
                pause = min(0.5 * 2 ** (failures - 1), 30.0)
                logger.exception("CQRS consumer failed; reconnecting in %.1f s", pause)
                conf.reset_transport()
                stop.wait(pause)
            else:
                if not transport.stopping:
                    logger.warning("CQRS consumer returned without being stopped; restarting")
                    conf.reset_transport()
                    continue
                break
    finally:
        state["transport"] = None
        conf.reset_transport()
        _restore_signals(previous)
        stop.set()
    out.write(f"cqrs_consume: worker {os.getpid()} stopped\n")
    out.flush()


def worker_main(settings_module: str, cqrs_ids: list[str], liveness_file: str | None) -> None:
    """Entry point of a spawned worker process."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    run_worker(cqrs_ids, liveness_file=liveness_file)


def _install_signals(handler: Callable[..., None]) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # signals can only be handled by the main thread
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class _Slot:
    def __init__(self, number: int) -> None:
        self.number = number
        self.process: Any = None
        self.started = 0.0
        self.quick_deaths = 0
        self.restart_at = 0.0


class Supervisor:
    """Keeps `workers` consumer processes running until SIGTERM/SIGINT."""

    def __init__(
        self,
        cqrs_ids: Sequence[str],
        *,
        workers: int,
        settings_module: str,
        sigint_timeout: float = 5.0,
        sigkill_timeout: float = 1.0,
        liveness_file: str | None = None,
        reload: bool = False,
        ignore_paths: Sequence[str] = (),
        watch_root: str | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.cqrs_ids = list(cqrs_ids)
        self.settings_module = settings_module
        self.sigint_timeout = sigint_timeout
        self.sigkill_timeout = sigkill_timeout
        self.liveness_file = liveness_file
        self.reload = reload
        self.ignore_paths = [os.path.abspath(p) for p in ignore_paths if p]
        self.watch_root = os.path.abspath(watch_root or os.getcwd())
        self.out = out or sys.stdout
        self.slots = [_Slot(n) for n in range(workers)]
        self.stop_event = threading.Event()
        self.context = multiprocessing.get_context("spawn")

    def run(self) -> None:
        previous = _install_signals(lambda *_: self.stop_event.set())
        snapshot = self._snapshot() if self.reload else None
        try:
            for slot in self.slots:
                self._start(slot)
            self._say(f"supervisor {os.getpid()} started {len(self.slots)} worker(s)")
            last_scan = time.monotonic()
            while not self.stop_event.wait(0.5):
                self._check_workers()
                if snapshot is not None and time.monotonic() - last_scan >= 1.0:
                    last_scan = time.monotonic()
                    current = self._snapshot()
                    if current != snapshot:
                        snapshot = current
                        self._say("code changed: restarting workers")
                        self._stop_all()
                        for slot in self.slots:
                            slot.quick_deaths = 0
                            self._start(slot)
        finally:
            self._stop_all()
            _restore_signals(previous)
        self._say("stopped")

    def _say(self, text: str) -> None:
        self.out.write(f"cqrs_consume: {text}\n")
        self.out.flush()

    def _start(self, slot: _Slot) -> None:
        slot.process = self.context.Process(
            target=worker_main,
            args=(self.settings_module, self.cqrs_ids, self.liveness_file),
            name=f"cqrs-worker-{slot.number}",
        )
        slot.process.start()
        slot.started = time.monotonic()

    def _check_workers(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is not None and process.is_alive():
                continue
            if process is not None:
                process.join(0)
                quick = now - slot.started < _QUICK_DEATH
                slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
                pause = min(0.5 * 2 ** (slot.quick_deaths - 1), 30.0) if quick else 0.0
                slot.restart_at = now + pause
                self._say(
                    f"worker {process.pid} exited with code {process.exitcode}; "
                    f"restarting in {pause:.1f} s"
                )
                slot.process = None
            if now >= slot.restart_at:
                self._start(slot)

    def _stop_all(self) -> None:
        running = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in running:
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.sigint_timeout
        for process in running:
            process.join(max(deadline - time.monotonic(), 0))
        stubborn = [p for p in running if p.is_alive()]
        for process in stubborn:
            self._say(f"worker {process.pid} did not stop in {self.sigint_timeout} s; killing it")
            process.kill()
        deadline = time.monotonic() + self.sigkill_timeout
        for process in stubborn:
            process.join(max(deadline - time.monotonic(), 0))
        for slot in self.slots:
            slot.process = None

    def _snapshot(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for root, dirs, files in os.walk(self.watch_root):
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".")
                and d not in ("__pycache__", "node_modules")
                and not self._ignored(os.path.join(root, d))
            ]
            for name in files:
                path = os.path.join(root, name)
                if name.endswith(".py") and not self._ignored(path):
                    try:
                        found[path] = os.stat(path).st_mtime
                    except OSError:
                        pass
        return found

    def _ignored(self, path: str) -> bool:
        return any(path == p or path.startswith(p + os.sep) for p in self.ignore_paths)
