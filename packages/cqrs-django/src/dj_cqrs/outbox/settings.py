"""`CQRS['master']['publish']` and `CQRS['master']['outbox']`, parsed and validated."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from dj_cqrs import conf

OUTBOX = "outbox"
ON_COMMIT = "on_commit"
MODES = (OUTBOX, ON_COMMIT)

NUMBERS: Mapping[str, float] = {
    "publish_timeout": 5.0,
    "pause_after_failure": 5.0,
    "grace": 2.0,
    "poll_interval": 1.0,
    "max_backoff": 30.0,
    "lease": 60.0,
    "keep_days": 0.0,
}
"""Numeric keys of `CQRS['master']['outbox']` (seconds, except `keep_days`) and defaults."""

INTEGERS: Mapping[str, int] = {"batch_size": 200}
FLAGS: Mapping[str, bool] = {"fast_path": True, "notify": True}
KNOWN = frozenset(NUMBERS) | frozenset(INTEGERS) | frozenset(FLAGS)


@dataclasses.dataclass(frozen=True)
class OutboxSettings:
    """How events leave the master.

    Attributes:
        publish_timeout: Longest the process waits at exit for its background publisher
            (what is left is the relay's). Saves never wait for the broker.
        pause_after_failure: After a failed fast path, this process leaves new rows to the
            relay for that long instead of trying the broker again on every commit.
        grace: The relay leaves unclaimed rows younger than this to the process that
            committed them (rows are unclaimed with `fast_path` False).
        poll_interval: How often an idle relay looks for work (LISTEN/NOTIFY wakes it sooner).
        max_backoff: Longest wait of a relay between attempts while the broker is down.
        lease: How long a claim on a row lasts: the committing process's (it sends its own
            rows; no relay sends them meanwhile, however long a burst takes) and a relay's
            (databases without `SKIP LOCKED`). A crashed owner's rows are sent by a relay
            once its claim has run out. 0 turns the publisher's claims off (`grace` only).
        keep_days: Sent rows are deleted at once (0) or kept that many days.
        batch_size: Rows per relay batch.
        fast_path: False leaves every row to the relay.
        notify: Use PostgreSQL NOTIFY to wake relays when rows are left to them.
    """

    mode: str = OUTBOX
    publish_timeout: float = NUMBERS["publish_timeout"]
    pause_after_failure: float = NUMBERS["pause_after_failure"]
    grace: float = NUMBERS["grace"]
    poll_interval: float = NUMBERS["poll_interval"]
    max_backoff: float = NUMBERS["max_backoff"]
    lease: float = NUMBERS["lease"]
    keep_days: float = NUMBERS["keep_days"]
    batch_size: int = INTEGERS["batch_size"]
    fast_path: bool = FLAGS["fast_path"]
    notify: bool = FLAGS["notify"]

    @property
    def enabled(self) -> bool:
        return self.mode == OUTBOX


def problems(master: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(message, hint) for every invalid outbox setting in `master` (`CQRS['master']`)."""
    found: list[tuple[str, str]] = []
    mode = master.get("publish", OUTBOX)
    if mode not in MODES:
        found.append(
            (
                f"CQRS['master']['publish'] = {mode!r} is not a publishing mode.",
                "Use 'outbox' (default: events are stored with the data and never lost) or "
                "'on_commit' (published after commit, lost if the broker is down).",
            )
        )
    section = master.get("outbox") or {}
    if not isinstance(section, Mapping):
        found.append(
            ("CQRS['master']['outbox'] must be a dict.", "e.g. {'keep_days': 7, 'grace': 2.0}")
        )
        return found
    unknown = sorted(set(section) - KNOWN)
    if unknown:
        found.append(
            (
                f"Unknown key(s) in CQRS['master']['outbox']: {', '.join(unknown)}.",
                f"Known keys: {', '.join(sorted(KNOWN))}.",
            )
        )
    for key in NUMBERS:
        value = section.get(key, NUMBERS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            found.append((f"CQRS['master']['outbox'][{key!r}] = {value!r}.", "Give a number >= 0."))
    for key in INTEGERS:
        value = section.get(key, INTEGERS[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            found.append(
                (f"CQRS['master']['outbox'][{key!r}] = {value!r}.", "Give an integer >= 1.")
            )
    for key in FLAGS:
        if not isinstance(section.get(key, FLAGS[key]), bool):
            found.append((f"CQRS['master']['outbox'][{key!r}] must be True or False.", ""))
    return found


_cached: tuple[int, OutboxSettings] | None = None


def outbox_settings() -> OutboxSettings:
    """The current settings (cached until a CQRS setting changes: see `conf.reset_transport`).

    Raises:
        ImproperlyConfigured: a value is invalid (`manage.py check` lists them all).
    """
    global _cached
    generation = conf.generation()
    if _cached is not None and _cached[0] == generation:
        return _cached[1]
    master = conf.master_settings()
    errors = problems(master)
    if errors:
        message, hint = errors[0]
        raise ImproperlyConfigured(f"{message} {hint}".strip())
    section = dict(master.get("outbox") or {})
    values: dict[str, Any] = {key: float(section.get(key, d)) for key, d in NUMBERS.items()}
    values.update({key: int(section.get(key, d)) for key, d in INTEGERS.items()})
    values.update({key: bool(section.get(key, d)) for key, d in FLAGS.items()})
    parsed = OutboxSettings(mode=master.get("publish", OUTBOX), **values)
    _cached = (generation, parsed)
    return parsed
