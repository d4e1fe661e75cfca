"""A cqrs-core transport on Redis Streams: one stream per CQRS_ID, one consumer group per replica.

Layout (`<prefix>` is `CQRS['redis_streams']['prefix']`, default `cqrs`):

- `<prefix>:<cqrs_id>`: a stream per CQRS_ID. Masters XADD the codec body with a `queue` field
  (empty for a broadcast, the target service for a directed SYNC). Each replica service
  (`CQRS['queue']`) reads it through its own consumer group, so every service sees every event.
- `<prefix>:retry:<queue>`: a sorted set of a service's retries scored by due time. Due ones are
  appended back to their CQRS_ID stream aimed at that service; other services skip them.
- `<prefix>:dead:<queue>`: a stream of a service's dead letters, each with its reason.

Delivery is at least once: a message is acknowledged (XACK) only after the handler returned and
its retry or dead letter was stored in the same MULTI. A consumer that dies keeps its messages
pending; another consumer of the group reclaims them (XAUTOCLAIM) once they have been idle for
`claim_min_idle` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis
from cqrs_core import (
    BaseTransport,
    Capability,
    DeadLetter,
    Handler,
    Inbound,
    MalformedMessage,
    OutcomeKind,
    Outgoing,
    PublishError,
    TransportError,
    TransportPayload,
    codec,
    wire,
)
from cqrs_core.messages import Settled

from cqrs_redis_streams import _scripts
from cqrs_redis_streams._settings import StreamSettings

logger = logging.getLogger("django-cqrs.redis_streams")

_PAGE = 100
_Entry = tuple[bytes, dict[bytes, bytes]]


class RedisStreamsTransport(BaseTransport):
    """Replicates through Redis Streams (Redis >= 6.2): `CQRS = {'transport': 'redis_streams'}`.

    Options: `url` (default `redis://127.0.0.1:6379/0`), `queue` (the replica service, i.e. the
    consumer group) and the section `redis_streams` (see `StreamSettings`).
    """

    name = "redis_streams"
    api_version = 1  # the cqrs-core transport API this was written against (checked on load)
    capabilities = frozenset(
        {
            Capability.DELAYED_RETRY,
            Capability.DEAD_LETTER,
            Capability.REDELIVERY,
            Capability.HEADERS,
            # Stream ids are timestamps: entries older than dead_message_ttl are never read.
            Capability.DEAD_LETTER_TTL,
        }
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.settings = StreamSettings.from_options(self.options)
        # Never more taken unsettled at once than the shared consumer_prefetch_count.
        self._limit = min(self.common.batch_size, self.common.prefetch_count)
        self.consumer_name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This instance's name inside its consumer groups (unique per instance)."""
        self.redis = redis.Redis.from_url(
            self.settings.url,
            socket_connect_timeout=self.settings.connect_timeout,
            socket_timeout=self.settings.connect_timeout + 10,
            health_check_interval=30,
        )
        kwargs = self.redis.connection_pool.connection_kwargs
        self._where = f"Redis at {kwargs.get('host', kwargs.get('path'))}:{kwargs.get('port', '')}"
        self._schedule_retry = self.redis.register_script(_scripts.SCHEDULE_RETRY)
        self._due_retries = self.redis.register_script(_scripts.DUE_RETRIES)
        self._promote_retry = self.redis.register_script(_scripts.PROMOTE_RETRY)
        self._revive_dead = self.redis.register_script(_scripts.REVIVE_DEAD)
        self._delete_consumer = self.redis.register_script(_scripts.DELETE_IDLE_CONSUMER)
        self._joined: set[str] = set()
        """Streams whose group this instance has read from (left cleanly on close)."""

    # -- producing -------------------------------------------------------------------------

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        minid = self._retention_minid()
        with self._errors(f"publish {len(messages)} message(s)", PublishError):
            pipe = self.redis.pipeline(transaction=True)  # all or nothing, one round trip
            for message in messages:
                fields: dict[str, bytes | str] = {
                    "body": message.body,
                    "queue": message.queue or "",
                }
                # Context headers (trace context) ride as `h:<name>` fields beside the body.
                fields.update(
                    {f"{HEADER_FIELD}{name}": value for name, value in message.headers.items()}
                )
                pipe.xadd(self.settings.stream(message.cqrs_id), fields, minid=minid)  # type: ignore[arg-type]
            pipe.execute()

    def _retention_minid(self) -> str | None:
        if self.settings.retention is None:
            return None
        return str(int((time.time() - self.settings.retention) * 1000))

    # -- consuming -------------------------------------------------------------------------

    def declare(self, cqrs_ids: Collection[str]) -> None:
        """Create this service's consumer group on each CQRS_ID stream, reading from the start."""
        queue = self.common.require_queue()
        with self._errors("create consumer groups"):
            for cqrs_id in cqrs_ids:
                try:
                    self.redis.xgroup_create(
                        self.settings.stream(cqrs_id), queue, id="0", mkstream=True
                    )
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):  # the group exists already: fine
                        raise

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        queue = self.common.require_queue()
        ids = cqrs_ids
        streams = sorted(self.settings.stream(cqrs_id) for cqrs_id in ids)
        self.declare(ids)
        self._joined.update(streams)
        if on_ready is not None:
            on_ready()
        cursors = dict.fromkeys(streams, "0-0")
        claim_every = min(max(self.settings.claim_min_idle / 2, 0.05), 10.0)
        next_claim = next_reap = 0.0
        failures = 0
        while not self.stopping:
            try:
                self._promote_due(queue)
                batch: list[Inbound] = []
                now = time.monotonic()
                if now >= next_reap:
                    self._reap(queue, streams)
                    next_reap = now + min(self.settings.reap_after, 300.0)
                if now >= next_claim:
                    batch = self._reclaim(queue, cursors)
                    next_claim = now + claim_every
                if not batch:
                    batch = self._read(queue, streams)
                for start in range(0, len(batch), self._limit):
                    chunk = batch[start : start + self._limit]
                    self._settle(queue, self.dispatch(handler, chunk, cqrs_ids=ids))
                failures = 0
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self.stopping:
                    break
                failures += 1
                pause = min(0.25 * 2**failures, 5.0)
                logger.warning("%s unreachable (%s); retrying in %.1f s", self._where, exc, pause)
                self._stopping.wait(pause)
                continue
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning("consumer group %r vanished (%s); declaring it again", queue, exc)
                self.declare(ids)
            except Exception:
                if self.closed:  # close() from another thread pulled the connection away
                    break
                raise
            if on_tick is not None:
                on_tick()

    def _read(self, queue: str, streams: Sequence[str]) -> list[Inbound]:
        response = self.redis.xreadgroup(
            queue,
            self.consumer_name,
            dict.fromkeys(streams, ">"),  # type: ignore[arg-type]
            count=self._limit,
            block=max(int(self.settings.block * 1000), 1),
        )
        items = response.items() if isinstance(response, dict) else (response or [])
        batch = []
        for stream, entries in items:
            name = stream.decode() if isinstance(stream, bytes) else stream
            for entry in _entries(entries):
                batch.append(_inbound(name, *entry))
        return batch

    def _reclaim(self, queue: str, cursors: dict[str, str]) -> list[Inbound]:
        """Take over messages another (dead) consumer left unacknowledged for too long."""
        min_idle = int(self.settings.claim_min_idle * 1000)
        batch = []
        for stream, cursor in cursors.items():
            reply = self.redis.xautoclaim(
                stream, queue, self.consumer_name, min_idle, cursor, count=self._limit
            )
            cursors[stream] = _text(reply[0])
            gone = []
            for entry_id, fields in reply[1]:
                if fields is None:  # trimmed while pending (Redis 6.2 reports it so)
                    gone.append(entry_id)
                else:
                    batch.append(_inbound(stream, entry_id, fields))
            if gone:
                self.redis.xack(stream, queue, *gone)
        if batch:
            logger.info("reclaimed %d message(s) of a stalled consumer", len(batch))
        return batch

    def _reap(self, queue: str, streams: Sequence[str]) -> None:
        """Forget consumers idle for `reap_after` seconds that have nothing pending."""
        idle_ms = self.settings.reap_after * 1000
        for stream in streams:
            for consumer in self.redis.xinfo_consumers(stream, queue):
                name = _text(consumer["name"])
                idle = consumer["pending"] == 0 and consumer["idle"] >= idle_ms
                if idle and name != self.consumer_name:
                    self._delete_consumer(keys=[stream], args=[queue, name])

    def _promote_due(self, queue: str) -> None:
        """Append due retries to their CQRS_ID stream, aimed at this service."""
        retries = self.settings.retries(queue)
        members = self._due_retries(keys=[retries], args=[_PAGE])
        if not members:
            return
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            try:
                item = json.loads(member)
                stream = self.settings.stream(item["cqrs_id"])
                args = [member, item["body"], queue, item.get("reason", "")]
            except (ValueError, KeyError, TypeError):
                logger.error("dropping unreadable retry entry %r from %s", member, retries)
                pipe.zrem(retries, member)
                continue
            self._promote_retry(keys=[retries, stream], args=args, client=pipe)
        pipe.execute()

    def _settle(self, queue: str, settled: Sequence[Settled]) -> None:
        """Store retries and dead letters, then acknowledge, all in one MULTI."""
        pipe = self.redis.pipeline(transaction=True)
        acks: dict[str, list[Any]] = {}
        for item in settled:
            stream, entry_id = item.message.token
            kind = item.outcome.kind
            if kind is OutcomeKind.RELEASE:
                # Left pending: a consumer that handles this CQRS_ID reclaims it after
                # `claim_min_idle`. With a stream per CQRS_ID this only happens to a body whose
                # cqrs_id differs from its stream's.
                continue
            if kind is OutcomeKind.RETRY:
                retry = self.retry_message(item)
                member = json.dumps(
                    {
                        "id": uuid.uuid4().hex,  # identical bodies must stay distinct members
                        "cqrs_id": retry.cqrs_id,
                        "body": retry.body.decode("utf-8"),
                        "reason": wire.header_reason(item.outcome.reason),
                    }
                )
                delay_ms = int((retry.delay or 0) * 1000)
                self._schedule_retry(
                    keys=[self.settings.retries(queue)], args=[member, delay_ms], client=pipe
                )
            elif kind is OutcomeKind.DEAD:
                dead = self.dead_letter_message(item)
                # A stream field can hold the full reason, line breaks and all (cqrs_core.wire).
                fields = {"body": dead.body, "reason": item.outcome.reason, "cqrs_id": dead.cqrs_id}
                pipe.xadd(self.settings.dead(queue), fields, minid=self._dead_minid())  # type: ignore[arg-type]
            acks.setdefault(stream, []).append(entry_id)
        for stream, entry_ids in acks.items():
            pipe.xack(stream, queue, *entry_ids)
        if acks:
            pipe.execute()

    def _live_from(self) -> str:
        """First dead-letter id still within `dead_message_ttl` (ids are ms timestamps)."""
        return self._dead_minid() or "-"

    def _dead_minid(self) -> str | None:
        ttl = self.common.dead_message_ttl
        return None if ttl is None else str(int((time.time() - ttl) * 1000))

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        dead = self.settings.dead(self.common.require_queue())
        with self._errors("read dead letters"):
            entries = self._xrange(dead, self._live_from(), limit)
        letters = []
        for _, fields in entries:
            body = fields.get(b"body", b"")
            letters.append(DeadLetter(body, _text(fields.get(b"reason", b"")), _decoded(body)))
        return letters

    def retry_dead_letters(self, *, limit: int | None = None) -> int:
        """Send dead letters back to this service (retries reset); malformed ones stay."""
        queue = self.common.require_queue()
        dead = self.settings.dead(queue)
        revived, start = 0, self._live_from()
        with self._errors("retry dead letters"):
            while limit is None or revived < limit:
                page = self._xrange(dead, start, _PAGE)
                if not page:
                    break
                for entry_id, fields in page:
                    body, payload = codec.revive(fields.get(b"body", b""))
                    if payload is None:
                        continue  # it would only die again; purge_dead_letters removes it
                    stream = self.settings.stream(payload.cqrs_id)
                    if self._revive_dead(keys=[dead, stream], args=[entry_id, body, queue]):
                        revived += 1
                        if limit is not None and revived >= limit:
                            break
                start = "(" + _text(page[-1][0])
        return revived

    def purge_dead_letters(self) -> int:
        dead = self.settings.dead(self.common.require_queue())
        with self._errors("purge dead letters"):
            pipe = self.redis.pipeline(transaction=True)
            if (minid := self._dead_minid()) is not None:
                pipe.xtrim(dead, minid=minid)  # expired ones are not counted
            pipe.xlen(dead)
            pipe.delete(dead)
            count = pipe.execute()[-2]
        return int(count)

    def _xrange(self, key: str, start: str, count: int | None) -> list[_Entry]:
        """Entries of `key` from `start`; redis-py's typing differs between versions."""
        return cast("list[_Entry]", self.redis.xrange(key, min=start, count=count))

    # -- lifecycle -------------------------------------------------------------------------

    def _close(self) -> None:
        queue = self.common.queue or ""
        try:
            for stream in self._joined:  # leave groups cleanly unless messages are still pending
                self._delete_consumer(keys=[stream], args=[queue, self.consumer_name])
        except redis.RedisError as exc:
            logger.debug("could not leave consumer groups on close: %s", exc)
        finally:
            self.redis.close()
            self.redis.connection_pool.disconnect()

    @contextmanager
    def _errors(self, action: str, error: type[TransportError] = TransportError) -> Iterator[None]:
        """Turn redis-py errors into cqrs-core ones that say what failed and where."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise error(
                f"Could not {action}: {self._where} is unreachable ({exc}). "
                "Check CQRS['url'] and that Redis is running."
            ) from exc
        except redis.ResponseError as exc:
            raise error(f"Could not {action}: {self._where} answered {exc}.") from exc


HEADER_FIELD = "h:"
"""Prefix of the stream fields that carry a message's context headers."""


def _entries(entries: Any) -> list[tuple[Any, Any]]:
    return list(entries.items()) if isinstance(entries, dict) else list(entries)


def _inbound(stream: str, entry_id: Any, fields: Mapping[bytes, bytes]) -> Inbound:
    target = _text(fields.get(b"queue", b""))
    prefix = HEADER_FIELD.encode()
    headers = {
        _text(name[len(prefix) :]): _text(value)
        for name, value in fields.items()
        if name.startswith(prefix)
    }
    return Inbound(
        fields.get(b"body", b""), queue=target or None, token=(stream, entry_id), headers=headers
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(body: bytes) -> TransportPayload | None:
    try:
        return codec.decode(body, default_ttl=None)
    except MalformedMessage:
        return None
