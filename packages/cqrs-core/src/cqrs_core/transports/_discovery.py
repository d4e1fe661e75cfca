"""Find transports advertised in the `cqrs_core.transports` entry-point group."""

from __future__ import annotations

import functools
import inspect
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points

from cqrs_core.exceptions import TransportLoadError, TransportNotFound
from cqrs_core.transports.base import TRANSPORT_API_VERSION, BaseTransport, check_api_version

GROUP = "cqrs_core.transports"

_registered: dict[str, type[BaseTransport]] = {}


def register_transport(cls: type[BaseTransport]) -> type[BaseTransport]:
    """Make `cls` selectable by its `name` without packaging it (tests, in-house transports)."""
    _registered[cls.name] = _checked(cls, f"{cls.__module__}.{cls.__qualname__}")
    return cls


def unregister_transport(name: str) -> None:
    """Undo `register_transport`."""
    _registered.pop(name, None)


@functools.cache
def available_transports() -> dict[str, EntryPoint]:
    """Installed transports by name; nothing is imported."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        seen = found.get(ep.name)
        if seen is not None and seen.value != ep.value:
            raise TransportLoadError(
                f"Transport name {ep.name!r} is claimed by both {origin(seen)} and {origin(ep)}; "
                "uninstall one of them."
            )
        found[ep.name] = ep
    return found


def get_transport_class(spec: str) -> type[BaseTransport]:
    """Resolve `"kafka"` (a transport name) or `"pkg.module.Class"` / `"pkg.module:Class"`.

    Raises:
        TransportNotFound: no transport has that name (the message suggests a fix).
        TransportLoadError: it exists but cannot be imported or is not a valid transport.
    """
    if not isinstance(spec, str) or not spec:
        raise TransportNotFound(repr(spec), installed=sorted(available_transports()))
    if "." in spec or ":" in spec:
        return _checked(_import_path(spec), spec)
    if spec in _registered:
        return _registered[spec]
    eps = available_transports()
    if spec not in eps:
        raise TransportNotFound(spec, installed=sorted(set(eps) | set(_registered)))
    ep = eps[spec]
    where = f"{ep.value} ({origin(ep)})"
    try:
        target = ep.load()
    except ImportError as exc:
        raise TransportLoadError(
            f"Transport {spec!r} from {origin(ep)} failed to import: {exc}. "
            f"Reinstall it: pip install --force-reinstall {_dist_name(ep) or spec}"
        ) from exc
    if getattr(target, "name", None) != spec:
        raise TransportLoadError(
            f"{where} is registered as {spec!r} but its class says "
            f"name={getattr(target, 'name', None)!r}."
        )
    return _checked(target, where, dist=_dist_name(ep))


def origin(ep: EntryPoint) -> str:
    """`"<distribution> <version>"` that declares the entry point (or its value if unknown)."""
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def _dist_name(ep: EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def _import_path(path: str) -> object:
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    try:
        return getattr(import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TransportLoadError(f"Cannot import transport {path!r}: {exc}") from exc


def _checked(target: object, where: str, *, dist: str | None = None) -> type[BaseTransport]:
    if not (isinstance(target, type) and issubclass(target, BaseTransport)):
        raise TransportLoadError(
            f"{where} points to {target!r}, which is not a cqrs_core BaseTransport subclass."
        )
    if inspect.isabstract(target):
        missing = ", ".join(sorted(target.__abstractmethods__))
        raise TransportLoadError(f"{where} is abstract; it must implement: {missing}.")
    if not isinstance(getattr(target, "name", None), str):
        raise TransportLoadError(f"{where} has no `name` class attribute.")
    check_api_version(target, where)
    if target.api_version != TRANSPORT_API_VERSION:
        newer = (
            (dist or "the transport") if target.api_version < TRANSPORT_API_VERSION else "cqrs-core"
        )
        raise TransportLoadError(
            f"{where} implements transport API v{target.api_version}, but this cqrs-core speaks "
            f"v{TRANSPORT_API_VERSION}: upgrade {newer}."
        )
    return target
