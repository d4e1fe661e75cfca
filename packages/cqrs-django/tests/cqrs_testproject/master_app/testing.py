"""Test helpers for master tests: a transport that records what the master publishes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from cqrs_core import routing
from cqrs_core.exceptions import PublishError
from cqrs_core.messages import Handler, Outgoing
from cqrs_core.transports import BaseTransport, register_transport, unregister_transport
from dj_cqrs.transport import BaseTransport as FacadeBase


@dataclasses.dataclass(frozen=True)
class Sent:
    routing_key: str
    body: bytes

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.body)


class RecordingTransport(BaseTransport):
    """Keeps every accepted batch; `fail_next` makes the next publishes raise PublishError."""

    name = "recording"
    api_version = 1
    batches: ClassVar[list[list[Sent]]] = []
    fail_next: ClassVar[int] = 0
    instances: ClassVar[int] = 0

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        type(self).instances += 1

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            raise PublishError("broker unreachable (test)")
        batch = []
        for m in messages:
            assert m.payload is not None
            batch.append(Sent(routing.routing_key(m.payload), m.body))
        type(self).batches.append(batch)

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        raise NotImplementedError("the recording transport only records what is produced")

    def _close(self) -> None:
        pass

    @classmethod
    def sent(cls) -> list[Sent]:
        return [s for batch in cls.batches for s in batch]

    @classmethod
    def clear(cls) -> None:
        cls.batches.clear()
        cls.fail_next = 0


def recording_settings(**master: Any) -> dict[str, Any]:
    return {
        "transport": "recording",
        "queue": "master_tests",
        "master": {"CQRS_AUTO_UPDATE_FIELDS": False, "CQRS_MESSAGE_TTL": 86400, **master},
    }


class Recorder:
    """`RecordingTransport` as tests see it: reading or clearing what was sent first waits
    until the outbox publisher has settled what is committed (it publishes in the background)."""

    _FLUSHING = frozenset({"batches", "sent", "clear"})

    def __getattr__(self, name: str) -> Any:
        if name in self._FLUSHING:
            flush()
        return getattr(RecordingTransport, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(RecordingTransport, name, value)


def flush(timeout: float = 30.0) -> None:
    """Wait for this process's outbox publisher (what is committed is then sent or left)."""
    from dj_cqrs.outbox import background_publisher

    assert background_publisher.flush(timeout), f"the publisher did not settle within {timeout}s"


def use_recording(settings: Any, **master: Any) -> Iterator[Any]:
    """Body of a fixture: route CQRS to the recording transport (pytest-django `settings`).

    Yields a `Recorder`: the transport class whose reads wait for the background publisher.
    """
    from dj_cqrs.conf import reset_transport

    register_transport(RecordingTransport)
    RecordingTransport.clear()
    settings.CQRS = recording_settings(**master)
    try:
        yield Recorder()
    finally:
        flush()
        RecordingTransport.clear()
        reset_transport()
        unregister_transport(RecordingTransport.name)


class RecordingFacade(FacadeBase):
    """A user-defined facade subclass, selectable by its dotted path."""

    transport_name = "recording"
