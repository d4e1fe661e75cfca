"""The settings every transport reads, parsed once from the user's `CQRS` mapping.

Transports receive the mapping users already write (`CQRS = {...}` in Django settings, or the
same dict elsewhere) and call `CommonOptions.from_mapping` for the keys all of them share.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from cqrs_core.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEAD_MESSAGE_TTL,
    DEFAULT_EXCHANGE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MESSAGE_TTL,
    DEFAULT_PREFETCH_COUNT,
    DEFAULT_RETRY_DELAY,
)
from cqrs_core.exceptions import ConfigurationError

COMMON_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset(
        {
            "transport",
            "url",
            "host",
            "port",
            "user",
            "password",
            "exchange",
            "queue",
            "consumer_prefetch_count",
            "batch_size",
            "batch_timeout",
            "master",
            "replica",
        }
    ),
    "master": frozenset({"CQRS_MESSAGE_TTL"}),
    "replica": frozenset(
        {
            "CQRS_MAX_RETRIES",
            "CQRS_RETRY_DELAY",
            "dead_letter_queue",
            "dead_message_ttl",
            "delay_queue_max_size",
            "batch_size",
            "batch_timeout",
        }
    ),
}
"""Keys of the `CQRS` mapping read by cqrs-core or shared by every transport, by section
(`""`: top level, `"replica"`: `CQRS['replica']`). Frameworks and transports add their own;
the union is what settings checks accept and what the settings reference documents."""

UNKNOWN_KEY = "cqrs.E010"
"""Check id of a key no one reads (usually a typo: the hint names the closest known key)."""
INVALID_VALUE = "cqrs.E005"
"""Check id of a key whose value cannot be used."""
INVALID_URL = "cqrs.E011"
"""Check id of a `url` without a scheme, or with one the transport does not speak."""
NO_URL = "cqrs.W010"
"""Check id of settings without any broker address (the transport falls back to localhost)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """A mistake in the `CQRS` settings, found without connecting to anything.

    Plain data so that cqrs-core and transports stay free of Django; dj_cqrs turns each one
    into a system-check message with the same `id` (`manage.py check`).
    """

    id: str
    """`cqrs.Exxx` (an error) or `cqrs.Wxxx` (a warning); see the ids above."""
    message: str
    hint: str = ""

    @property
    def is_warning(self) -> bool:
        return self.id.startswith("cqrs.W")


def setting_name(where: str, key: str | None = None) -> str:
    """`CQRS['master']['outbox']` for `where="master.outbox"` (and `[key]` after it if given)."""
    parts = [p for p in where.split(".") if p] + ([key] if key is not None else [])
    return "CQRS" + "".join(f"[{p!r}]" for p in parts)


def value_problems(
    options: Mapping[str, Any], build: Callable[[Mapping[str, Any], CommonOptions], object]
) -> list[Problem]:
    """Build a transport's settings the way it will at runtime; an `INVALID_VALUE` if it fails.

    A bad common key is left to the framework's own checks (reported once, not per transport).
    """
    try:
        common = CommonOptions.from_mapping(options)
    except ConfigurationError:
        return []
    try:
        build(options, common)
    except ConfigurationError as exc:
        return [Problem(INVALID_VALUE, str(exc))]
    return []


def unknown_keys(
    section: Mapping[str, Any], known: Collection[str], where: str = ""
) -> list[Problem]:
    """An `UNKNOWN_KEY` problem for every key of `section` outside `known`, with a did-you-mean.

    Args:
        section: The user's mapping (`CQRS`, or one of its sections).
        known: Every key that something reads there.
        where: The section as a dotted path (`""`, `"replica"`, `"master.outbox"`).
    """
    found: list[Problem] = []
    by_lower = {k.lower(): k for k in known}
    for key in section:
        if not isinstance(key, str):
            found.append(
                Problem(UNKNOWN_KEY, f"{setting_name(where)} has a non-string key {key!r}.")
            )
            continue
        if key in known:
            continue
        guess = by_lower.get(key.lower()) or _closest(key, known)
        hint = f"Did you mean {guess!r}?" if guess else f"Known keys: {', '.join(sorted(known))}."
        found.append(
            Problem(
                UNKNOWN_KEY,
                f"{setting_name(where, key)} is not a known setting.",
                hint,
            )
        )
    return found


LEGACY_ADDRESS_KEYS = ("host", "port", "user", "password")
"""django-cqrs 1.x connection keys, read when `url` is not set."""


def url_problems(
    options: Mapping[str, Any],
    schemes: Collection[str],
    *,
    transport: str,
    example: str,
    default: str | None = None,
) -> list[Problem]:
    """Check `CQRS['url']` against the schemes a transport speaks, without echoing secrets.

    Args:
        options: The `CQRS` mapping.
        schemes: The URL schemes the transport accepts (lower case).
        transport: Its name, for the messages.
        example: A URL to show in hints.
        default: Where the transport connects without `url` and the legacy keys (a warning:
            fine for local development, rarely what production wants). None: nothing to check.
    """
    url = options.get("url")
    if url is None or url == "":
        if default is None or any(options.get(k) is not None for k in LEGACY_ADDRESS_KEYS):
            return []
        return [
            Problem(
                NO_URL,
                f"CQRS['url'] is not set: the {transport} transport connects to {default}.",
                f"Set the broker address, e.g. CQRS['url'] = {example!r}.",
            )
        ]
    if not isinstance(url, str):
        return [Problem(INVALID_VALUE, f"CQRS['url'] must be a string, got {type(url).__name__}.")]
    scheme, sep, _ = url.partition("://")
    if not sep:
        head = url.split(":", 1)[0].split("/", 1)[0].lower()
        guess = head if head in schemes else _closest(head, schemes)
        return [
            Problem(
                INVALID_URL,
                f"CQRS['url'] has no scheme (no '://'), so the {transport} transport cannot "
                "read it.",
                f"Write it as {guess}://..., e.g. {example!r}."
                if guess
                else f"Start it with one of {', '.join(sorted(schemes))}://, e.g. {example!r}.",
            )
        ]
    if scheme.lower().split("+")[0] not in schemes:  # kombu's `sqla+postgresql://`
        guess = _closest(scheme.lower(), schemes)
        return [
            Problem(
                INVALID_URL,
                f"CQRS['url'] uses the scheme {scheme!r}, which the {transport} transport does "
                "not speak.",
                (f"Did you mean {guess}://? " if guess else "")
                + f"Schemes it accepts: {', '.join(sorted(schemes))}.",
            )
        ]
    return []


def _closest(word: str, choices: Collection[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


@dataclasses.dataclass(frozen=True, slots=True)
class CommonOptions:
    """Keys shared by every transport, with the defaults of django-cqrs."""

    queue: str | None = None
    """Replica service name (its queue, consumer group...). Required to consume."""
    exchange: str = DEFAULT_EXCHANGE
    url: str | None = None
    prefetch_count: int = 2 * DEFAULT_BATCH_SIZE
    """Messages the broker hands over ahead of their acks (`consumer_prefetch_count`).

    Unless set, twice the batch size: django-cqrs's 10 would cap every batch at 10 messages,
    and one batch in flight while the next fills keeps the consumer busy."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Most messages handed to the handler at once."""
    batch_timeout: float = 0.05
    """Seconds to wait for a batch to fill before handing over what there is."""
    max_retries: int | None = DEFAULT_MAX_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY
    dead_letter_queue: str | None = None
    dead_message_ttl: float | None = DEFAULT_DEAD_MESSAGE_TTL
    message_ttl: float | None = DEFAULT_MESSAGE_TTL
    """TTL assumed for legacy messages that carry no `expires` key."""

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> CommonOptions:
        """Parse the shared keys of a `CQRS` mapping; raise `ConfigurationError` naming the key."""
        replica = _section(options, "replica")
        master = _section(options, "master")
        queue = _opt_str(options, "queue")
        dead_letter_queue = _opt_str(replica, "dead_letter_queue", "CQRS['replica']")
        if dead_letter_queue is None and queue is not None:
            dead_letter_queue = f"dead_letter_{queue}"
        batch_size = _int(
            *_replica_or_top(options, replica, "batch_size", DEFAULT_BATCH_SIZE), minimum=1
        )
        prefetch = options.get("consumer_prefetch_count")
        return cls(
            queue=queue,
            exchange=_opt_str(options, "exchange") or DEFAULT_EXCHANGE,
            url=_opt_str(options, "url"),
            prefetch_count=(
                max(DEFAULT_PREFETCH_COUNT, 2 * batch_size)
                if prefetch is None
                else _int(prefetch, "CQRS['consumer_prefetch_count']", minimum=1)
            ),
            batch_size=batch_size,
            batch_timeout=_number(*_replica_or_top(options, replica, "batch_timeout", 0.05)),
            max_retries=_opt_int(
                replica.get("CQRS_MAX_RETRIES", DEFAULT_MAX_RETRIES),
                "CQRS['replica']['CQRS_MAX_RETRIES']",
            ),
            retry_delay=_number(
                replica.get("CQRS_RETRY_DELAY", DEFAULT_RETRY_DELAY),
                "CQRS['replica']['CQRS_RETRY_DELAY']",
            ),
            dead_letter_queue=dead_letter_queue,
            dead_message_ttl=_opt_number(
                replica.get("dead_message_ttl", DEFAULT_DEAD_MESSAGE_TTL),
                "CQRS['replica']['dead_message_ttl']",
            ),
            message_ttl=_opt_number(
                master.get("CQRS_MESSAGE_TTL", DEFAULT_MESSAGE_TTL),
                "CQRS['master']['CQRS_MESSAGE_TTL']",
            ),
        )

    def require_queue(self) -> str:
        """The replica queue name, or a `ConfigurationError` saying how to set it."""
        if not self.queue:
            raise ConfigurationError(
                "CQRS['queue'] is not set: a replica service must name its queue, "
                "e.g. CQRS = {'transport': 'rabbitmq', 'queue': 'billing'}."
            )
        return self.queue

    def require_dead_letter_queue(self) -> str:
        """The dead-letter queue name (`dead_letter_<queue>` unless configured)."""
        if self.dead_letter_queue:
            return self.dead_letter_queue
        return f"dead_letter_{self.require_queue()}"


def _section(options: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = options.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"CQRS[{key!r}] must be a dict, got {type(value).__name__}.")
    return value


def _replica_or_top(
    options: Mapping[str, Any], replica: Mapping[str, Any], key: str, default: Any
) -> tuple[Any, str]:
    """`CQRS['replica'][key]`, else `CQRS[key]`, else `default`, with where it was found."""
    if key in replica:
        return replica[key], f"CQRS['replica'][{key!r}]"
    if key in options:
        return options[key], f"CQRS[{key!r}]"
    return default, f"CQRS['replica'][{key!r}]"


def _opt_str(options: Mapping[str, Any], key: str, where: str = "CQRS") -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}[{key!r}] must be a string, got {value!r}.")
    return value


def _int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{where} must be an integer >= {minimum}, got {value!r}.")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


_MAX_SECONDS = 10**9
"""About 31 years: larger delays, timeouts and TTLs overflow date arithmetic."""


def _number(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= _MAX_SECONDS  # also false for NaN
    ):
        raise ConfigurationError(
            f"{where} must be a number of seconds from 0 to {_MAX_SECONDS:,}, got {value!r}."
        )
    return float(value)


def _opt_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)
