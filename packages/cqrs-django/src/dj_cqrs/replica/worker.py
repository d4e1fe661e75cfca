"""Running consumers: one in-process worker, or a supervisor of worker processes.

The supervisor (used by `cqrs_consume -w N` and `--reload`) starts N spawned processes,
restarts any that dies (with a growing pause if they keep dying at start-up), and on SIGTERM
or SIGINT asks each to stop (SIGTERM: the worker lets its transport finish and settle the
batch in hand), waits `shutdown_timeout` seconds, kills what is left and waits
`sigkill_timeout` more. A single in-process worker enforces `shutdown_timeout` itself.
Messages of a batch cut short that way were not acknowledged: the broker delivers them again.

A configuration error (no such virtual host, bad credentials, a setting the transport refuses)
is not retried: reconnecting cannot fix it, and a worker retrying it forever would print the
same traceback every few seconds while looking alive. The worker stops with the error's fix
(exit status `CONFIG_EXIT_CODE`) and the supervisor stops the others instead of restarting it.
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
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.messages import Outgoing, Settled
from dj_cqrs.observability import health, metrics
from dj_cqrs.observability.server import worker_exited
from dj_cqrs.replica.probes import Heartbeat, Probes, remove, touch

logger = logging.getLogger("django-cqrs")

_QUICK_DEATH = 5.0
"""A worker that dies sooner than this after starting is restarted after a growing pause."""
_OVERDUE_EXIT_CODE = 1
"""Exit status of a consumer that had to be cut off after `shutdown_timeout`."""
CONFIG_EXIT_CODE = 78
"""Exit status of a worker stopped by a configuration error (sysexits' EX_CONFIG): the
supervisor does not restart it."""
_CONFIG_ERRORS = (ConfigurationError, ImproperlyConfigured)


class Output(Protocol):
    """Where progress lines go: a text stream or a management command's `self.stdout`."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


__all__ = ["CONFIG_EXIT_CODE", "Supervisor", "run_worker", "touch", "worker_main"]


def config_error(exc: BaseException) -> CommandError:
    """The error that stops a worker on a configuration problem, with what to do."""
    return CommandError(
        f"{exc}\nThe consumer stopped: this is a configuration problem, and reconnecting "
        "cannot fix it. Fix the setting, then start cqrs_consume again."
    )


def _log_dead_letters(transport: Any) -> None:
    """Say `dead-lettered <cqrs_id>:<pk> (<reason>)` for every message the transport stores
    as a dead letter, whoever decided it (the handler, the retry policy, a malformed body):
    every transport builds the stored copy through `dead_letter_message`."""
    build: Callable[[Settled], Outgoing] = transport.dead_letter_message

    def dead_letter_message(settled: Settled) -> Outgoing:
        payload = settled.payload
        if payload is None:
            what = "CQRS message dead-lettered (undecodable)"
        else:
            what = (
                f"CQRS {payload.signal_type} dead-lettered {payload.cqrs_id}:{payload.instance_pk}"
            )
        logger.warning("%s (%s)", what, settled.outcome.reason)
        metrics.dead_lettered(settled)
        return build(settled)

    transport.dead_letter_message = dead_letter_message


def run_worker(
    cqrs_ids: Sequence[str],
    *,
    liveness_file: str | None = None,
    readiness_file: str | None = None,
    shutdown_timeout: float | None = None,
    heartbeat: Heartbeat | None = None,
    out: Output | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Consume in this process until SIGTERM/SIGINT (or `stop_event`); restart after errors.

    `shutdown_timeout`: once asked to stop, the batch in hand gets this many seconds to finish
    before the process exits with status 1 (None: wait as long as it takes). Only for a
    process of its own: the cut-off ends the whole process.
    """
    from dj_cqrs import conf
    from dj_cqrs.consumer import consume

    out = out or sys.stdout
    stop = stop_event or threading.Event()
    probes = health.watch(Probes(liveness_file, readiness_file, heartbeat))
    state: dict[str, Any] = {"transport": None, "requested": False, "finished": False}
    watchdog: list[threading.Timer] = []

    def overdue() -> None:
        if state["finished"]:
            return
        sys.stderr.write(
            f"cqrs_consume: worker {os.getpid()} did not finish its batch within "
            f"{shutdown_timeout} s of being asked to stop; exiting (unacknowledged messages "
            "will be delivered again)\n"
        )
        sys.stderr.flush()
        probes.not_ready()
        os._exit(_OVERDUE_EXIT_CODE)

    def request_stop(*_: Any) -> None:
        stop.set()
        if state["finished"]:
            return
        probes.not_ready()
        transport = state["transport"]
        if transport is not None:
            transport.stop()
        if not state["requested"]:
            state["requested"] = True
            if shutdown_timeout is not None:
                timer = threading.Timer(shutdown_timeout, overdue)
                timer.daemon = True
                timer.start()
                watchdog.append(timer)

    previous = _install_signals(request_stop)
    if stop_event is not None:  # a stop requested from another thread

        def relay() -> None:
            stop.wait()
            request_stop()

        threading.Thread(target=relay, daemon=True).start()
    failures = 0
    try:
        while not stop.is_set():
            try:
                transport = state["transport"] = conf.get_transport()
            except _CONFIG_ERRORS as exc:
                raise config_error(exc) from None
            if stop.is_set():
                break
            if "dead_letter_message" not in vars(transport):
                _log_dead_letters(transport)

            def ready(transport: Any = transport) -> None:
                nonlocal failures
                if stop.is_set():
                    transport.stop()  # asked before the transport could notice
                    return
                failures = 0  # connected again: the next outage starts its backoff afresh
                probes.ready()
                out.write(f"cqrs_consume: worker {os.getpid()} ready for {', '.join(cqrs_ids)}\n")
                out.flush()

            try:
                consume(cqrs_ids, transport=transport, on_ready=ready, on_tick=probes.tick)
            except _CONFIG_ERRORS as exc:
                raise config_error(exc) from None
            except Exception:
                probes.not_ready()
                failures += 1
                pause = min(0.5 * 2 ** (failures - 1), 30.0)
                logger.exception("CQRS consumer failed; reconnecting in %.1f s", pause)
                conf.reset_transport()
                _wait(stop, pause, probes)
            else:
                probes.not_ready()
                if not transport.stopping:
                    logger.warning("CQRS consumer returned without being stopped; restarting")
                    conf.reset_transport()
                    continue
                break
    finally:
        state["finished"] = True
        for timer in watchdog:
            timer.cancel()
        state["transport"] = None
        probes.not_ready()
        conf.reset_transport()
        _restore_signals(previous)
        stop.set()
    out.write(f"cqrs_consume: worker {os.getpid()} stopped\n")
    out.flush()


def _wait(stop: threading.Event, seconds: float, probes: Probes) -> None:
    """Pause before reconnecting; the process is alive meanwhile, so liveness keeps ticking."""
    deadline = time.monotonic() + seconds
    while not stop.wait(min(1.0, max(deadline - time.monotonic(), 0))):
        if time.monotonic() >= deadline:
            break
        probes.tick()


def worker_main(settings_module: str, cqrs_ids: list[str], heartbeat: Heartbeat | None) -> None:
    """Entry point of a spawned worker process; it stops by itself if its supervisor dies."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    parent = os.getppid()
    import django

    django.setup()
    metrics.worker_started()
    stop = threading.Event()

    def orphaned() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                logger.warning("cqrs_consume supervisor %d is gone; worker stopping", parent)
                stop.set()

    threading.Thread(target=orphaned, daemon=True).start()
    try:
        run_worker(cqrs_ids, heartbeat=heartbeat, stop_event=stop)
    except CommandError as exc:  # a configuration error: say it once, exit, not restarted
        sys.stderr.write(f"cqrs_consume: worker {os.getpid()} stopped: {exc}\n")
        sys.stderr.flush()
        sys.exit(CONFIG_EXIT_CODE)


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
        self.heartbeat: Heartbeat | None = None
        self.seen_ticks = 0
        self.started = 0.0
        self.quick_deaths = 0
        self.restart_at = 0.0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    """Keeps `workers` consumer processes running until SIGTERM/SIGINT; serves the probes.

    The liveness file is touched when every worker has ticked since the previous touch, the
    readiness file exists while every worker is connected and bound (see `probes`).
    """

    def __init__(
        self,
        cqrs_ids: Sequence[str],
        *,
        workers: int,
        settings_module: str,
        shutdown_timeout: float = 5.0,
        sigkill_timeout: float = 1.0,
        liveness_file: str | None = None,
        readiness_file: str | None = None,
        reload: bool = False,
        ignore_paths: Sequence[str] = (),
        watch_root: str | None = None,
        out: Output | None = None,
    ) -> None:
        self.cqrs_ids = list(cqrs_ids)
        self.settings_module = settings_module
        self.shutdown_timeout = shutdown_timeout
        self.sigkill_timeout = sigkill_timeout
        self.liveness_file = liveness_file
        self.readiness_file = readiness_file
        self.reload = reload
        self.ignore_paths = [os.path.abspath(p) for p in ignore_paths if p]
        self.watch_root = os.path.abspath(watch_root or os.getcwd())
        self.out = out or sys.stdout
        self.slots = [_Slot(n) for n in range(workers)]
        self.stop_event = threading.Event()
        self.context = multiprocessing.get_context("spawn")
        self._shown_ready = False
        self.config_failure: int | None = None
        """Pid of a worker that stopped on a configuration error (then everything stops)."""

    def run(self) -> bool:
        """Supervise until asked to stop; False if a worker had to be killed on the way out.

        Raises:
            CommandError: a worker stopped on a configuration error (its message is above).
        """
        previous = _install_signals(lambda *_: self.stop_event.set())
        snapshot = self._snapshot() if self.reload else None
        clean = True
        try:
            for slot in self.slots:
                self._start(slot)
            self._say(f"supervisor {os.getpid()} started {len(self.slots)} worker(s)")
            last_scan = time.monotonic()
            while not self.stop_event.wait(0.5):
                self._check_workers()
                self._serve_probes()
                if snapshot is not None and time.monotonic() - last_scan >= 1.0:
                    last_scan = time.monotonic()
                    current = self._snapshot()
                    if current != snapshot:
                        snapshot = current
                        self._say("code changed: restarting workers")
                        self._set_ready(False)
                        self._stop_all()
                        for slot in self.slots:
                            slot.quick_deaths = 0
                            self._start(slot)
        finally:
            self._set_ready(False)
            clean = self._stop_all()
            _restore_signals(previous)
            remove(self.readiness_file)
        self._say("stopped" if clean else "stopped (some workers had to be killed)")
        if self.config_failure is not None:
            raise CommandError(
                f"Worker {self.config_failure} stopped on a configuration error (its message is "
                "above); the other workers were stopped too. Fix the setting, then start "
                "cqrs_consume again."
            )
        return clean

    def _say(self, text: str) -> None:
        self.out.write(f"cqrs_consume: {text}\n")
        self.out.flush()

    def _start(self, slot: _Slot) -> None:
        slot.heartbeat = Heartbeat(self.context)
        slot.seen_ticks = 0
        slot.process = self.context.Process(
            target=worker_main,
            args=(self.settings_module, self.cqrs_ids, slot.heartbeat),
            name=f"cqrs-worker-{slot.number}",
        )
        slot.process.start()
        slot.started = time.monotonic()

    def _serve_probes(self) -> None:
        alive = all(slot.alive for slot in self.slots)
        self._set_ready(
            alive and all(s.heartbeat is not None and s.heartbeat.is_ready for s in self.slots)
        )
        if not alive:
            return
        ticks = [slot.heartbeat.ticks if slot.heartbeat else 0 for slot in self.slots]
        if all(now > slot.seen_ticks for now, slot in zip(ticks, self.slots, strict=True)):
            touch(self.liveness_file)
            health.tick()
            for now, slot in zip(ticks, self.slots, strict=True):
                slot.seen_ticks = now

    def _set_ready(self, ready: bool) -> None:
        health.set_ready(ready)
        if ready == self._shown_ready:
            return
        self._shown_ready = ready
        if ready:
            touch(self.readiness_file)
            self._say("all workers ready")
        else:
            remove(self.readiness_file)

    def _check_workers(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if slot.alive:
                continue
            if process is not None:
                process.join(0)
                worker_exited(process.pid)
                if process.exitcode == CONFIG_EXIT_CODE:
                    self.config_failure = process.pid
                    slot.process = None
                    self._say(f"worker {process.pid} stopped on a configuration error; stopping")
                    self.stop_event.set()
                    return
                quick = now - slot.started < _QUICK_DEATH
                slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
                pause = min(0.5 * 2 ** (slot.quick_deaths - 1), 30.0) if quick else 0.0
                slot.restart_at = now + pause
                self._say(
                    f"worker {process.pid} exited with code {process.exitcode}; "
                    f"restarting in {pause:.1f} s"
                )
                slot.process = None
                self._set_ready(False)
            if now >= slot.restart_at:
                self._start(slot)

    def _stop_all(self) -> bool:
        """Ask every worker to stop, kill those still running after the timeout; True if none."""
        running = [s.process for s in self.slots if s.alive]
        for process in running:
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.shutdown_timeout
        for process in running:
            process.join(max(deadline - time.monotonic(), 0))
        stubborn = [p for p in running if p.is_alive()]
        for process in stubborn:
            self._say(
                f"worker {process.pid} did not stop within {self.shutdown_timeout} s; killing it "
                "(its unacknowledged messages will be delivered again)"
            )
            process.kill()
        deadline = time.monotonic() + self.sigkill_timeout
        for process in stubborn:
            process.join(max(deadline - time.monotonic(), 0))
        for slot in self.slots:
            slot.process = None
            slot.heartbeat = None
        return not stubborn

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
