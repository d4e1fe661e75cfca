"""A transport over a real asyncio-only client (`redis.asyncio`) passes the conformance suite.

`RedisAsyncTransport` is what a third party would write on `cqrs_core.transports.asyncio_bridge`
for a broker whose client library is asyncio-only: nothing but coroutines (`_apublish`,
`_asubscribe`, `_areceive`, `_asettle`, ...), and one `redis.asyncio` client that lives on the
bridge's event loop and is never touched from another thread. The suite drives it the threaded
way (`produce` from many threads, `consume` blocking in its own, `stop()` from another), which
is the point: the bridge turns one model into the other.

Layout in Redis, every key under the `exchange` prefix (so services on other exchanges share
nothing): `bind:<routing key>` is the set of queues bound to a key, `q:<queue>` the list of
ready messages, `delayed:<queue>` the retries waiting for their time (a sorted set scored by
due time), `dead:<queue>` the dead letters. A list element is a JSON envelope line (id,
directed queue, context headers), a newline, then the body as the master wrote it.

It claims DELAYED_RETRY, DEAD_LETTER and HEADERS, not REDELIVERY: a message popped by a consumer
that is killed before settling it is lost (a real transport would use BLMOVE into a
per-consumer list, or streams, as `examples/cqrs-redis-streams` does).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from cqrs_core import codec, routing, wire
from cqrs_core.exceptions import MalformedMessage, PublishError
from cqrs_core.messages import DeadLetter, Inbound, OutcomeKind, Outgoing, Settled
from cqrs_core.payload import TransportPayload
from cqrs_core.testing.consuming import Recorder, consume_until
from cqrs_core.testing.plugin import service_unavailable
from cqrs_core.testing.suite import IDS, TransportConformance, make_payload, unique_name
from cqrs_core.transports import Capability
from cqrs_core.transports.asyncio_bridge import AsyncioTransport

REDIS_URL = os.environ.get("CQRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

pytestmark = [pytest.mark.broker("redis")]

# KEYS: the binding set of each message; ARGV[1]: the queue key prefix, ARGV[i + 1]: the
# element of message i. All or nothing: one unroutable message refuses the whole batch.
_PUBLISH = """
for i = 1, #KEYS do
  if redis.call('SCARD', KEYS[i]) == 0 then
    return redis.error_reply('unroutable: no queue is bound to ' .. KEYS[i])
  end
end
for i = 1, #KEYS do
  for _, queue in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    redis.call('RPUSH', ARGV[1] .. queue, ARGV[i + 1])
  end
end
return #KEYS
"""

# KEYS[1]: delayed set, KEYS[2]: ready list; ARGV[1]: now. Moves the due retries, oldest first.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, element in ipairs(due) do
  redis.call('ZREM', KEYS[1], element)
  redis.call('RPUSH', KEYS[2], element)
end
return #due
"""


def _element(body: bytes, queue: str | None, headers: Mapping[str, str]) -> bytes:
    envelope = {"id": uuid.uuid4().hex, "queue": queue, "headers": dict(headers)}
    return json.dumps(envelope).encode() + b"\n" + body


def _parse(element: bytes) -> tuple[dict[str, Any], bytes]:
    line, _, body = element.partition(b"\n")
    return json.loads(line), body


def _decoded(body: bytes) -> TransportPayload | None:
    try:
        return codec.decode(body, default_ttl=None)
    except MalformedMessage:
        return None


class RedisAsyncTransport(AsyncioTransport):
    """Redis lists through `redis.asyncio`, written only with coroutines."""

    name = "redis_async_test"
    api_version = 1
    capabilities = frozenset({Capability.DELAYED_RETRY, Capability.DEAD_LETTER, Capability.HEADERS})
    option_keys: Mapping[str, frozenset[str]] = {}

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._client: aioredis.Redis | None = None
        self._taken: list[bytes] = []

    # -- names ---------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.common.exchange, *parts))

    @property
    def _ready(self) -> str:
        return self._key("q", self.common.require_queue())

    # -- the client: created on the bridge's loop, used only there -------------------------

    async def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.common.url or REDIS_URL)
        return self._client

    # -- the coroutines the bridge runs --------------------------------------------------

    async def _apublish(self, messages: Sequence[Outgoing]) -> None:
        client = await self._redis()
        keys = [self._key("bind", routing.message_key(m.cqrs_id, m.queue)) for m in messages]
        elements = [_element(m.body, m.queue, m.headers) for m in messages]
        try:
            await client.eval(_PUBLISH, len(keys), *keys, self._key("q", ""), *elements)
        except redis.RedisError as exc:
            raise PublishError(f"Redis did not take {len(messages)} message(s): {exc}") from exc

    async def _adeclare(self, cqrs_ids: frozenset[str]) -> None:
        client = await self._redis()
        queue = self.common.require_queue()
        async with client.pipeline(transaction=True) as pipe:
            for cqrs_id in cqrs_ids:
                for key in routing.bindings(queue, cqrs_id):
                    pipe.sadd(self._key("bind", key), queue)
            await pipe.execute()

    async def _asubscribe(self, cqrs_ids: frozenset[str]) -> None:
        await self._adeclare(cqrs_ids)

    async def _areceive(self, limit: int, timeout: float) -> list[Inbound]:
        client = await self._redis()
        queue = self.common.require_queue()
        await client.eval(_PROMOTE, 2, self._key("delayed", queue), self._ready, time.time())
        first = await client.blpop([self._ready], timeout=timeout)
        if first is None:
            return []
        taken: list[bytes] = [first[1]]
        linger_until = time.monotonic() + self.common.batch_timeout
        while len(taken) < limit:
            more = await client.lpop(self._ready, limit - len(taken))
            if more:
                taken.extend(more)
                continue
            left = linger_until - time.monotonic()
            if left <= 0:
                break
            one = await client.blpop([self._ready], timeout=max(left, 0.01))
            if one is None:
                break
            taken.append(one[1])
        self._taken.extend(taken)
        inbound = []
        for element in taken:
            envelope, body = _parse(element)
            inbound.append(
                Inbound(
                    body,
                    queue=envelope["queue"],
                    token=element,
                    headers=wire.carried_headers(envelope["headers"]),
                )
            )
        return inbound

    async def _asettle(self, settled: list[Settled]) -> None:
        client = await self._redis()
        queue = self.common.require_queue()
        async with client.pipeline(transaction=True) as pipe:
            for item in settled:
                kind = item.outcome.kind
                if kind is OutcomeKind.RETRY:
                    retry = self.retry_message(item)
                    due = time.time() + (retry.delay or 0.0)
                    element = _element(retry.body, retry.queue, retry.headers)
                    pipe.zadd(self._key("delayed", queue), {element: due})
                elif kind is OutcomeKind.DEAD:
                    dead = self.dead_letter_message(item)
                    pipe.rpush(self._key("dead", queue), _element(dead.body, None, dead.headers))
                elif kind is OutcomeKind.RELEASE:
                    pipe.rpush(self._ready, item.message.token)
            await pipe.execute()
        for item in settled:
            self._taken.remove(item.message.token)

    async def _aunsubscribe(self) -> None:
        taken, self._taken = self._taken, []
        if taken:
            client = await self._redis()
            await client.lpush(self._ready, *reversed(taken))

    async def _aclose(self) -> None:
        if self.common.queue:
            await self._aunsubscribe()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- dead letters: synchronous methods calling coroutines through the bridge ----------

    async def _letters(self, limit: int | None, *, pop: bool) -> list[bytes]:
        client = await self._redis()
        key = self._key("dead", self.common.require_queue())
        end = -1 if limit is None else limit - 1
        if not pop:
            return list(await client.lrange(key, 0, end))
        async with client.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, end)
            if limit is None:
                pipe.delete(key)
            else:
                pipe.ltrim(key, limit, -1)
            found, _ = await pipe.execute()
        return list(found)

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        letters = []
        for element in self.run(self._letters(limit, pop=False)):
            envelope, body = _parse(element)
            letters.append(DeadLetter(body, wire.read_reason(envelope["headers"]), _decoded(body)))
        return letters

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        queue = self.common.require_queue()
        elements = self.run(self._letters(limit, pop=True))
        revived = [_element(codec.revive(_parse(e)[1])[0], queue, {}) for e in elements]

        async def requeue() -> None:
            if revived:
                client = await self._redis()
                await client.rpush(self._ready, *revived)

        self.run(requeue())
        return len(elements)

    def purge_dead_letters(self) -> int:
        return len(self.run(self._letters(None, pop=True)))


@pytest.fixture
def redis_options() -> Iterator[dict[str, Any]]:
    """Options with an exchange (key prefix) and queue of this test; its keys are deleted after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        service_unavailable(f"Redis ({REDIS_URL})", exc)
    prefix = unique_name("cqrs_ra")
    yield {"url": REDIS_URL, "queue": unique_name("replica"), "exchange": prefix}
    for family in (prefix, f"{prefix}_other"):  # the suite's exchange test uses both
        keys = list(client.scan_iter(match=f"{family}:*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


class TestRedisAsyncioConformance(TransportConformance):
    consume_timeout = 20.0

    @pytest.fixture
    def transport_class(self) -> type[RedisAsyncTransport]:
        return RedisAsyncTransport

    @pytest.fixture
    def transport_options(self, redis_options: dict[str, Any]) -> dict[str, Any]:
        return redis_options

    @pytest.mark.skip(reason="an in-test transport belongs to no distribution")
    def test_registered_under_entry_point(self, transport_class: Any) -> None:
        """Skipped: the class is not installed under an entry point."""


def test_client_lives_on_the_bridge_loop_while_threads_publish(
    redis_options: dict[str, Any],
) -> None:
    """Threads publishing while `consume` runs all go through the one loop's client."""
    consumer = RedisAsyncTransport(redis_options)
    producer = RedisAsyncTransport(redis_options)
    consumer.declare(IDS)
    recorder = Recorder()
    threads = [
        threading.Thread(
            target=lambda base=base: [producer.produce(make_payload(base + n)) for n in range(5)]
        )
        for base in (0, 5, 10)
    ]
    for thread in threads:
        thread.start()
    consume_until(consumer, recorder, lambda: recorder.count() >= 15, cqrs_ids=IDS, timeout=20)
    for thread in threads:
        thread.join(10)
    assert sorted(recorder.pks()) == list(range(15))
    consumer.close()
    producer.close()
