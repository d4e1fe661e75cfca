"""Exceptions raised by cqrs packages; all inherit from `CQRSError`."""

from __future__ import annotations

import difflib

FIRST_PARTY = {"rabbitmq": "cqrs-rabbitmq", "kombu": "cqrs-kombu", "kafka": "cqrs-kafka"}
"""Transport names shipped by this project, and the distribution that provides each."""


class CQRSError(Exception):
    """Base class for every error raised by cqrs packages."""


class ConfigurationError(CQRSError, ValueError):
    """The CQRS settings (transport options) are invalid; the message says which key."""


class MalformedMessage(CQRSError, ValueError):
    """A message body is not a valid CQRS payload; it is dead-lettered with this reason."""


class TransportError(CQRSError):
    """The broker could not do what was asked; usually worth retrying later."""


class PublishError(TransportError):
    """A payload was not accepted by the broker (unreachable, nacked, unroutable, timed out)."""


class TransportClosed(CQRSError, RuntimeError):
    """An operation was attempted on a closed transport."""


class TransportLoadError(CQRSError, ImportError):
    """A transport was found but could not be imported or failed validation."""


class TransportNotFound(CQRSError, LookupError):
    """No installed transport has the requested name."""

    def __init__(self, name: str, *, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        lines = [f"No CQRS transport named {name!r} is installed."]
        if guess := difflib.get_close_matches(name, installed, n=1):
            lines.append(f"Did you mean {guess[0]!r}?")
        if name in FIRST_PARTY:
            lines.append(
                f'Install it with: pip install "cqrs-django[{name}]"  (or {FIRST_PARTY[name]})'
            )
        lines.append(f"Installed: {', '.join(installed) or 'none'}")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_not_found, (self.name, self.installed))


def _rebuild_not_found(name: str, installed: list[str]) -> TransportNotFound:
    return TransportNotFound(name, installed=installed)
