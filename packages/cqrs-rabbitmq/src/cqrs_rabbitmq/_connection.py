"""Long-lived connections: one per process and thread, replaced after a fork or a failure."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from cqrs_core.exceptions import ConfigurationError, TransportError
from cqrs_rabbitmq._confirms import ConfirmingChannel
from cqrs_rabbitmq._settings import RabbitMQSettings

logger = logging.getLogger("django-cqrs")

T = TypeVar("T")

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
)
"""Failures that a new connection may cure (the broker went away, a socket was cut)."""

_FATAL_CHANNEL_CODES = {403, 404, 406}
"""ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED: settings problems, reconnecting won't help."""


def connect(settings: RabbitMQSettings) -> BlockingConnection:
    """Open a connection or raise a connection error (never with the password in it)."""
    try:
        return BlockingConnection(settings.parameters)
    except pika.exceptions.ProbableAccessDeniedError as exc:
        raise ConfigurationError(
            f"RabbitMQ at {settings.display_url} refused access to the virtual host "
            f"({settings.redact(exc)}); create it or grant the user permissions."
        ) from None
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError):
        raise ConfigurationError(
            f"RabbitMQ at {settings.display_url} rejected the user name or password; "
            "check CQRS['url']."
        ) from None


def fatal_channel_error(exc: BaseException) -> bool:
    """True for broker refusals caused by settings (declaring with other flags, no rights)."""
    return (
        isinstance(exc, pika.exceptions.ChannelClosedByBroker)
        and exc.reply_code in _FATAL_CHANNEL_CODES
    )


def settings_error(
    exc: BaseException, settings: RabbitMQSettings, doing: str
) -> ConfigurationError:
    """A clear error for a broker refusal caused by the settings or existing topology."""
    return ConfigurationError(
        f"RabbitMQ refused to {doing}: {settings.redact(exc)}. An exchange or queue with this "
        "name may already exist with other flags or arguments, or the user lacks permissions."
    )


class Session:
    """A connection with one confirming channel, owned by one thread of one process."""

    def __init__(self, settings: RabbitMQSettings, exchange: str) -> None:
        self.pid = os.getpid()
        self.thread = threading.current_thread()
        self.connection = connect(settings)
        try:
            channel = self.connection.channel()
            channel.exchange_declare(exchange, "topic", durable=True)
            self.confirms = ConfirmingChannel(self.connection, channel)
        except BaseException:
            self.close()
            raise

    @property
    def channel(self) -> BlockingChannel:
        return self.confirms.channel

    def usable(self) -> bool:
        """Still open and owned by this process; also answers heartbeats and pending closes."""
        if self.pid != os.getpid() or self.connection.is_closed or self.channel.is_closed:
            return False
        try:
            self.connection.process_data_events(0)
        except CONNECTION_ERRORS:
            return False
        return self.connection.is_open and self.channel.is_open

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # the parent process owns this socket; closing it would cut the parent off
        with contextlib.suppress(Exception):
            if self.connection.is_open:
                self.connection.close()


class Sessions:
    """Hands each thread its own `Session`, reconnecting when the old one broke."""

    def __init__(self, settings: RabbitMQSettings, exchange: str) -> None:
        self.settings = settings
        self.exchange = exchange
        self._local = threading.local()
        self._all: list[Session] = []
        self._lock = threading.Lock()

    def get(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is not None and session.usable():
            return session
        if session is not None:
            self.discard()
        session = Session(self.settings, self.exchange)
        self._local.session = session
        with self._lock:
            self._all.append(session)
        return session

    def discard(self) -> None:
        """Drop the calling thread's session (after an error left its state unknown)."""
        session: Session | None = getattr(self._local, "session", None)
        self._local.session = None
        if session is not None:
            session.close()
            with self._lock:
                if session in self._all:
                    self._all.remove(session)

    def close(self) -> None:
        """Close this thread's session and those of threads that have ended.

        pika connections are not thread-safe, so sessions of live threads are left to them.
        """
        self.discard()
        with self._lock:
            ended = [s for s in self._all if not s.thread.is_alive()]
            self._all = [s for s in self._all if s.thread.is_alive()]
        for session in ended:
            session.close()

    def run(
        self,
        operation: Callable[[Session], T],
        *,
        deadline: float,
        doing: str,
        error: type[TransportError] = TransportError,
    ) -> T:
        """Run `operation` on a session, reconnecting with backoff until `deadline`.

        Raises:
            ConfigurationError: the broker refused because of the settings.
            TransportError: still failing at the deadline.
        """
        delay = self.settings.reconnect_delay
        while True:
            try:
                return operation(self.get())
            except ConfigurationError:
                self.discard()
                raise
            except CONNECTION_ERRORS as exc:
                self.discard()
                if fatal_channel_error(exc):
                    raise settings_error(exc, self.settings, doing) from None
                remaining = deadline - time.monotonic()
                if remaining <= delay:
                    raise error(
                        f"Could not {doing} on RabbitMQ at {self.settings.display_url}: "
                        f"{type(exc).__name__}: {self.settings.redact(exc) or 'connection lost'}"
                    ) from None
                logger.warning(
                    "RabbitMQ at %s failed while trying to %s (%s); retrying in %.1f s",
                    self.settings.display_url,
                    doing,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_delay)
