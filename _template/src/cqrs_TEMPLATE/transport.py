"""The TEMPLATE transport: moves encoded CQRS messages through the broker.

Everything broker-independent (decoding, expiry, directed SYNCs, filtering by CQRS_ID, retry
decisions, the dead-letter body) is done by `BaseTransport.dispatch`; this module only moves
bytes. `cqrs_core.transports.memory` is the reference to copy from.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from cqrs_core.exceptions import PublishError
from cqrs_core.messages import Handler, Inbound, OutcomeKind, Outgoing, Settled
from cqrs_core.transports import BaseTransport, Capability


class TemplateTransport(BaseTransport):
    """Replication over TEMPLATE.

    Options (the `CQRS` mapping): `url` and the common CQRS keys; add a `CQRS['TEMPLATE']`
    section for anything broker-specific, and reject unknown keys with a message that lists
    the known ones.
    """

    name: ClassVar[str] = "TEMPLATE"
    api_version: ClassVar[int] = 1
    """The transport API version this class was written and tested against, as a literal.

    Not the constant `TRANSPORT_API_VERSION`: that would follow cqrs-core upgrades the class was
    never tested with. Discovery refuses a class whose version differs from cqrs-core's.
    """
    capabilities = frozenset(
        # Claim only what the broker really guarantees; the conformance suite tests each claim.
        {Capability.DELAYED_RETRY, Capability.DEAD_LETTER, Capability.REDELIVERY}
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # Parse broker-specific options here and raise cqrs_core.exceptions.ConfigurationError
        # naming the key and how to fix it. Do not connect yet: connect lazily.

    # -- producing -------------------------------------------------------------------------

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        """Send every message and return only once the broker has stored all of them.

        Broadcast messages (`message.queue is None`) go to every replica bound to
        `message.cqrs_id`; directed ones only to `message.queue`. Raise PublishError when the
        broker refuses or cannot be reached within a bounded time.
        """
        raise PublishError("TemplateTransport._publish is not implemented yet")

    # -- consuming -------------------------------------------------------------------------

    def declare(self, cqrs_ids: Collection[str]) -> None:
        """Create the replica's queue/subscription for `cqrs_ids` (idempotent)."""
        self.common.require_queue()

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        """Runs in the consuming thread; `consume()` has checked the transport is open and
        `CQRS['queue']` is set. Return once `self.stopping` (set by `stop()` from another thread);
        wait on the broker with timeouts of a second at most so that is noticed."""
        self.declare(cqrs_ids)
        if on_ready is not None:
            on_ready()
        while not self.stopping:
            # Up to self.common.batch_size messages, at most self.common.prefetch_count taken
            # unsettled, waiting self.common.batch_timeout for a batch to fill.
            raw: list[Any] = []
            # queue=: the target queue learnt with cqrs_core.routing.target_queue(key, cqrs_id).
            inbound = [Inbound(body, queue=None, token=body) for body in raw]
            if inbound:
                self._settle(self.dispatch(handler, inbound, cqrs_ids=cqrs_ids))
            if on_tick is not None:
                on_tick()  # at least once a second while idle
            raise NotImplementedError("TemplateTransport._consume is not implemented yet")

    def _settle(self, settled: list[Settled]) -> None:
        """Acknowledge each message according to its outcome, never before it is safe."""
        for item in settled:
            kind = item.outcome.kind
            if kind is OutcomeKind.RETRY:
                # Store it aimed at cqrs_core.routing.message_key(_retry.cqrs_id, _retry.queue),
                # not to be applied before _retry.due (epoch s; _retry.delay s), with its headers.
                _retry = self.retry_message(item)
            elif kind is OutcomeKind.DEAD:
                # Store it in the dead-letter place with _dead.headers (cqrs_core.wire rules).
                _dead = self.dead_letter_message(item)
            elif kind is OutcomeKind.RELEASE:
                pass  # give the message back to the queue for another consumer
            # ... then acknowledge item.message.token (APPLIED, SKIPPED, RETRY and DEAD alike).

    # -- dead letters (with Capability.DEAD_LETTER) ----------------------------------------
    # Override dead_letters(limit=), retry_dead_letters(limit=) and purge_dead_letters().

    def _close(self) -> None:
        """Close connections; messages taken but not settled must be given back."""
