"""Sending a batch so that one event the broker refuses cannot jam or duplicate the others.

A RabbitMQ publish is `mandatory`: an event no queue is bound for (a directed SYNC to a
mistyped queue, issue 15) fails the whole `produce_many` call, although the broker stored every
other event of the call. Retrying the batch would send those again and fail again, forever.
Whether an event is routable depends only on its target, `(cqrs_id, queue)`. So a directed SYNC
whose target this process has not sent to successfully yet goes alone first (a probe); a refused
probe sets aside every event of its target, and the rest of the batch goes in one call, once.
Events for every replica are not probed (that would split every first batch): if a batch with
them is refused (no replica consumes a cqrs_id), its targets become suspect, nothing of it is
marked sent, and the next attempt probes each of them, so only the events of that first refused
batch may reach the broker twice (replicas skip the repeat by its revision). A refused directed
SYNC is set aside; a refused event for every replica is only held back for a while (its replica
may just not have declared its queue yet): see `set_aside_when_refused`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

from cqrs_core.exceptions import PublishError
from cqrs_core.payload import TransportPayload
from dj_cqrs import conf

Target = tuple[str, str | None]

_known: set[tuple[int, Target]] = set()
"""(settings generation, target) sent successfully by this process."""
_suspect: set[tuple[int, Target]] = set()
"""Targets of a refused batch: probed until one of their events goes through."""
_lock = threading.Lock()


@dataclasses.dataclass
class Outcome:
    """What became of the events of a batch (indexes into it)."""

    sent: list[int] = dataclasses.field(default_factory=list)
    refused: dict[int, str] = dataclasses.field(default_factory=dict)
    """Index → the broker's reason: set these rows aside (they are never retried on their own)."""
    error: Exception | None = None
    """A failure that is not about an event (broker down, timeout): the unsent rest waits."""


def set_aside_when_refused(payload: TransportPayload) -> bool:
    """A refused directed SYNC is set aside (its queue may never exist: a typo); an event for
    every replica stays pending and is tried again later (no replica has declared its queue
    yet: it will), without holding back the events of other targets."""
    return payload.queue is not None


def target(payload: TransportPayload) -> Target:
    return payload.cqrs_id, payload.queue or None


def refusal(exc: Exception) -> bool:
    """Whether `exc` says the broker refused the events for good, not that it failed now.

    A transport may say so with an attribute `retryable` (False: refused). Otherwise only the
    answers known to be about the events themselves count: an unroutable message (RabbitMQ
    312 NO_ROUTE), an unknown topic or a message too large (Kafka). A lost connection, a
    timeout, a nack are failures of the moment: the events are retried.
    """
    retryable = getattr(exc, "retryable", None)
    if retryable is not None:
        return not retryable
    if not isinstance(exc, PublishError):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in REFUSALS)


REFUSALS = (
    "unroutable",
    "no_route",
    "unknown_topic",
    "unknown topic",
    "msg_size_too_large",
    "message_too_large",
    "record_list_too_large",
    "topic_authorization_failed",
)
"""Words of a broker's answer that refuse an event whatever the retry (lower case)."""


def send_checked(
    payloads: Sequence[TransportPayload], send: Callable[[Sequence[TransportPayload]], None]
) -> Outcome:
    """Send `payloads` with `send`, in order, probing new targets (see the module docstring).

    The events before a probe go in one call first, so that no event overtakes another.
    """
    outcome = Outcome()
    generation = conf.generation()
    refused: dict[Target, str] = {}
    chunk: list[int] = []
    for index, payload in enumerate(payloads):
        key = target(payload)
        if key in refused:
            outcome.refused[index] = refused[key]
        elif not _needs_probe(generation, key):
            chunk.append(index)
        else:
            if not _send_chunk(payloads, chunk, send, outcome, generation):
                return outcome
            chunk = []
            try:
                send([payload])
            except Exception as exc:
                if not refusal(exc):
                    outcome.error = exc
                    return outcome
                refused[key] = f"refused by the broker: {type(exc).__name__}: {exc}"
                outcome.refused[index] = refused[key]
                continue
            with _lock:
                _known.add((generation, key))
                _suspect.discard((generation, key))
            outcome.sent.append(index)
    _send_chunk(payloads, chunk, send, outcome, generation)
    return outcome


def _needs_probe(generation: int, key: Target) -> bool:
    if (generation, key) in _known:
        return False
    return key[1] is not None or (generation, key) in _suspect


def _send_chunk(
    payloads: Sequence[TransportPayload],
    chunk: list[int],
    send: Callable[[Sequence[TransportPayload]], None],
    outcome: Outcome,
    generation: int,
) -> bool:
    """Send the events `chunk` in one call; False (and `outcome.error`) if that failed."""
    if not chunk:
        return True
    try:
        send([payloads[i] for i in chunk])
    except Exception as exc:
        if refusal(exc):
            forget()
            with _lock:
                _suspect.update((generation, target(payloads[i])) for i in chunk)
        outcome.error = exc
        return False
    outcome.sent += chunk
    return True


def forget() -> None:
    """Probe every target again (a queue may have gone)."""
    with _lock:
        _known.clear()
