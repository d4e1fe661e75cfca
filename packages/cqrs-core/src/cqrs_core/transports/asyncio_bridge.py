"""A base for transports whose client library is asyncio-only (NATS, aiokafka, redis.asyncio).

The transport contract is synchronous and threaded (see `BaseTransport`): `consume` blocks in
its own thread, `produce` comes from many threads, `stop()` from yet another. `AsyncioTransport`
runs one asyncio event loop in a dedicated daemon thread and turns each of those calls into a
coroutine run on it, so the author writes only `async` methods for the broker I/O:

- `_apublish(messages)`: hand them to the broker and wait for its acknowledgement;
- `_adeclare(cqrs_ids)` (optional) and `_asubscribe(cqrs_ids)`: bind and start receiving;
- `_areceive(limit, timeout)`: up to `limit` messages, waiting at most `timeout` s;
- `_asettle(settled)`: ack, retry, dead-letter or give back each message by its outcome;
- `_aunsubscribe()` (optional) and `_aclose()`.

The handler is never run on the loop: batches are dispatched in the consuming thread (as every
transport does), so a slow database write does not stall publishing from other threads, and
Django's per-thread database connections stay where they belong. A process forked after the
loop started gets a fresh loop on first use (threads do not survive `fork()`).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from cqrs_core.messages import Handler, Inbound, Outgoing, Settled
from cqrs_core.transports.base import BaseTransport

T = TypeVar("T")

_RECEIVE_WAIT = 0.5
"""Longest single wait for messages, so `stop()` is noticed quickly."""


class EventLoopThread:
    """An asyncio loop running forever in a daemon thread; `run` submits from any thread."""

    def __init__(self, name: str = "cqrs-asyncio") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started on first use (and again in a forked child)."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(
                    target=self._serve, args=(loop, started), name=self.name, daemon=True
                )
                thread.start()
                started.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and return its result here; blocks this thread only.

        Raises:
            RuntimeError: called from the loop's own thread (await the coroutine there).
            TimeoutError: `timeout` elapsed (the coroutine is cancelled).
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(f"{self.name}: run() called on the event loop; await it instead")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.name}: no result within {timeout} s") from None

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Schedule `callback` on the loop from any thread (if the loop runs)."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid() and not loop.is_closed():
            loop.call_soon_threadsafe(callback)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop, cancelling what still runs on it, and join its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():
                self._loop = self._thread = None
                return
            self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


class AsyncioTransport(BaseTransport):
    """`BaseTransport` for an asyncio client: implement the `_a*` coroutines listed above.

    Each instance runs its own loop thread unless the class sets `loop_thread` to a shared
    `EventLoopThread` (useful when instances must share loop-bound objects, e.g. a client).
    """

    loop_thread: EventLoopThread | None = None
    """A loop shared by every instance of the class; None gives each instance its own."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._own_loop = type(self).loop_thread is None
        self.bridge = type(self).loop_thread or EventLoopThread(f"cqrs-{self.name}-asyncio")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run one of this transport's coroutines on its loop, from any thread."""
        return self.bridge.run(coro, timeout)

    # -- the synchronous contract, done once here ----------------------------------------

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        self.run(self._apublish(messages))

    def declare(self, cqrs_ids: Any) -> None:
        self.run(self._adeclare(frozenset(cqrs_ids)))

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        limit = min(self.common.batch_size, self.common.prefetch_count)
        self.run(self._asubscribe(cqrs_ids))
        try:
            if on_ready is not None:
                on_ready()
            while not self.stopping:
                batch = self.run(self._areceive(limit, _RECEIVE_WAIT))
                if batch:
                    settled = self.dispatch(handler, batch, cqrs_ids=cqrs_ids)
                    self.run(self._asettle(settled))
                if on_tick is not None:
                    on_tick()
        finally:
            if not self.closed:
                self.run(self._aunsubscribe())

    def _close(self) -> None:
        try:
            self.run(self._aclose())
        finally:
            if self._own_loop:
                self.bridge.close()

    # -- what the author writes ----------------------------------------------------------

    @abc.abstractmethod
    async def _apublish(self, messages: Sequence[Outgoing]) -> None:
        """Send `messages` and return once the broker has accepted every one."""

    async def _adeclare(self, cqrs_ids: frozenset[str]) -> None:  # noqa: B027 (optional)
        """Create the replica's queue and bindings (idempotent)."""

    @abc.abstractmethod
    async def _asubscribe(self, cqrs_ids: frozenset[str]) -> None:
        """Declare and start receiving for `cqrs_ids` (called at the start of `consume`)."""

    @abc.abstractmethod
    async def _areceive(self, limit: int, timeout: float) -> list[Inbound]:
        """Up to `limit` messages: wait at most `timeout` s for the first, then up to
        `self.common.batch_timeout` s for more. Return `[]` when none came."""

    @abc.abstractmethod
    async def _asettle(self, settled: list[Settled]) -> None:
        """Settle each message by `item.outcome` (see `BaseTransport.retry_message` and
        `dead_letter_message` for what to store); ack only after storing."""

    async def _aunsubscribe(self) -> None:  # noqa: B027 (optional)
        """Stop receiving; what was taken but not settled goes back (end of `consume`)."""

    @abc.abstractmethod
    async def _aclose(self) -> None:
        """Close the client (called once, from `close()`)."""


__all__ = ["AsyncioTransport", "EventLoopThread"]
