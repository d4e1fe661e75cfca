"""Loss-free consuming on Redis: pop and record as unacknowledged in one atomic step.

kombu's Redis consumer leaves a BRPOP outstanding on the server between `drain_events`
calls; a message Redis pops for it while a batch is being applied waits in the socket, not
yet in kombu's `unacked` hash, and is lost if the process dies (SIGKILL, OOM). Here a Lua
script pops up to N messages and writes each one into kombu's `unacked` hash and
`unacked_index` in the same server-side step, so a message is never out of the queue without
a record from which kombu's `restore_visible` puts it back.

A live consumer keeps renewing the index score of what it holds (a lease), so the
visibility timeout can be short: a dead consumer's messages come back after it, a live
consumer's slow batches and long-held delayed retries do not.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from kombu.transport import virtual
from kombu.utils.json import loads

logger = logging.getLogger("django-cqrs")

_TAKE = """
local taken = {}
local limit = tonumber(ARGV[1])
for i = 3, #KEYS do
  while #taken < limit do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    local ok, message = pcall(cjson.decode, item)
    local tag = nil
    if ok and type(message) == 'table' and type(message['properties']) == 'table' then
      tag = message['properties']['delivery_tag']
    end
    if type(tag) == 'string' or type(tag) == 'number' then
      redis.call('HSET', KEYS[1], tag, '[' .. item .. ',"",' .. cjson.encode(ARGV[3]) .. ']')
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
    end
    taken[#taken + 1] = item
  end
end
return taken
"""
"""KEYS: unacked hash, unacked index, the queue's lists by priority; ARGV: limit, now, queue.

The record is kombu's own `[payload, exchange, routing_key]`, addressed to the queue through
the default exchange, so a restore goes back to this queue only (never fanned out again).
"""


def _loads(item: bytes) -> Any:
    """kombu's envelope decoding; the plain parser when nothing in it needs kombu's hook.

    kombu's `loads` calls a Python hook for every JSON object (its `__type__` markers); an
    envelope without the marker decodes to the same value with the C parser alone.
    """
    if not isinstance(item, bytes) or b'"__type__"' in item:
        return loads(item)
    return json.loads(item)


class AtomicTaker:
    """Takes messages from one queue of a kombu Redis channel without a loss window."""

    def __init__(
        self,
        channel: Any,
        queue: str,
        *,
        prepare: Callable[[dict[str, Any]], None] | None = None,
        on_malformed: Callable[[bytes], None] | None = None,
    ) -> None:
        import redis

        self.channel = channel
        self.queue = queue
        self._prepare = prepare
        self._on_malformed = on_malformed
        prefix = channel.global_keyprefix or ""
        lists = dict.fromkeys(channel._q_for_pri(queue, pri) for pri in channel.priority_steps)
        self._keys = [
            prefix + channel.unacked_key,
            prefix + channel.unacked_index_key,
            *(prefix + name for name in lists),
        ]
        # A plain client on the channel's pool: the key-prefixing client kombu uses for a
        # `global_keyprefix` would prefix only the first key of a script.
        pool = channel.pool
        client_kwargs: dict[str, Any] = {"connection_pool": pool}
        provider = pool.connection_kwargs.get("credential_provider")
        if provider is not None:
            client_kwargs["credential_provider"] = provider
        self._client = redis.Redis(**client_kwargs)
        self._script = self._client.register_script(_TAKE)

    def take(self, limit: int) -> list[Any]:
        """Up to `limit` messages, each already recorded as unacknowledged."""
        if limit <= 0:
            return []
        items = self._script(keys=self._keys, args=[limit, time.time(), self.queue])
        messages = []
        for item in items or ():
            message = self._message(item)
            if message is not None:
                messages.append(message)
        return messages

    def ack_many(self, messages: Sequence[Any]) -> None:
        """Acknowledge `messages` (taken from this queue) in one round trip.

        kombu's own `Message.ack` removes each record with a pipeline of its own (a new client
        and a round trip per message, most of a batch's time on Redis). Here the same two
        removals kombu does (`ZREM` from `unacked_index`, `HDEL` from `unacked`) go out for the
        whole batch at once, then kombu's in-memory bookkeeping is updated as its `ack` would.
        If the pipeline fails, nothing is marked acknowledged: the records stay, and the
        messages come back (a redelivery, never a loss).
        """
        pending = [message for message in messages if not message.acknowledged]
        if not pending:
            return
        tags = [message.delivery_tag for message in pending]
        pipe = self._client.pipeline(transaction=False)
        pipe.zrem(self._keys[1], *tags)
        pipe.hdel(self._keys[0], *tags)
        pipe.execute()
        qos = self.channel.qos
        for message in pending:
            virtual.QoS.ack(qos, message.delivery_tag)
            message._state = "ACK"

    def _message(self, item: bytes) -> Any:
        try:
            raw = _loads(item)
            if self._prepare is not None:
                self._prepare(raw)
            message = self.channel.Message(raw, channel=self.channel)
        except Exception:
            logger.error("CQRS kombu: malformed Redis envelope in %s", self.queue, exc_info=True)
            if self._on_malformed is not None:
                self._on_malformed(bytes(item))
            return None
        # kombu's in-memory bookkeeping only (the Redis record was written by the script):
        # what `ack` removes and what a clean close gives back.
        virtual.QoS.append(self.channel.qos, message, message.delivery_tag)
        return message


class Leases:
    """Renews what this consumer holds and gives back what dead consumers held."""

    def __init__(self, channels: Sequence[Any]) -> None:
        self.channels = list(channels)
        timeout = float(self.channels[0].visibility_timeout)
        self.timeout = timeout
        self._renew_every = max(0.2, min(timeout / 4, 30.0))
        self._sweep_every = max(0.2, min(timeout / 4, 5.0))
        self._next_renew = 0.0
        self._next_sweep = 0.0

    def maintain(self) -> None:
        """Rate limited: call it as often as you like from the consuming thread."""
        now = time.monotonic()
        if now >= self._next_renew:
            self._next_renew = now + self._renew_every
            self.renew()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            self.channels[0].qos.restore_visible(num=None, interval=1)

    def renew(self) -> None:
        stamp = time.time()
        for channel in self.channels:
            qos = channel.qos
            held = [tag for tag in list(qos._delivered) if tag not in qos._dirty]
            if held:
                with channel.conn_or_acquire() as client:
                    client.zadd(channel.unacked_index_key, dict.fromkeys(held, stamp), xx=True)
