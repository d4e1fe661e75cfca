"""System checks for the CQRS settings and models (`manage.py check`).

| id | problem |
|---|---|
| cqrs.E001 | `settings.CQRS` is missing or not a dict |
| cqrs.E002 | `CQRS['transport']` is missing |
| cqrs.E003 | the transport is unknown or cannot be loaded |
| cqrs.E004 | replica models exist but `CQRS['queue']` is not set |
| cqrs.E005 | an option has a bad value (numbers, sections) |
| cqrs.E006 | `meta_function` is not callable or its dotted path does not import |
| cqrs.E007 | `correlation_function` is not callable or its dotted path does not import |
| cqrs.E008 | a master model's CQRS options are invalid |
| cqrs.E010 | an unknown key in `CQRS` or one of its sections (the hint names the closest key) |
| cqrs.E011 | `CQRS['url']` has no scheme or one the transport does not speak |
| cqrs.E012 | a master model (MasterMixin) has no `CQRS_ID`: nothing it changes is published |
| cqrs.E013 | a replica model (ReplicaMixin) has no `CQRS_ID`: it receives nothing |
| cqrs.W010 | no `url` (nor the old `host` keys): the transport connects to localhost as guest |
| cqrs.W011 | an unknown top-level key while the transport declares no `option_keys` (a 3.x-style class, or a third-party transport): it may read it |

Ids `cqrs.E1xx` / `cqrs.W1xx` are the outbox's (`dj_cqrs.outbox.checks`). Transports report
their own settings through `BaseTransport.check_options` with the ids above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from cqrs_core.exceptions import CQRSError
from cqrs_core.options import COMMON_KEYS, CommonOptions, Problem, unknown_keys
from cqrs_core.transports import BaseTransport, available_transports, get_transport_class

DJANGO_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset({"metrics", "tracing"}),
    "metrics": frozenset({"port", "addr"}),
    "master": frozenset(
        {"CQRS_AUTO_UPDATE_FIELDS", "correlation_function", "meta_function", "publish", "outbox"}
    ),
    "replica": frozenset(
        {
            "CQRS_ONLY_DIRECT_SYNCS",
            "CQRS_QUERY_TIMEOUT",
            "CQRS_LOG_TIMED_OUT_QUERIES",
            "CQRS_QUERY_LOGGER",
            "CQRS_BULK_APPLY",
            "tombstone_retention",
        }
    ),
}
"""Keys read by dj_cqrs itself, beyond cqrs-core's `COMMON_KEYS`."""

CHECKED_SECTIONS = ("", "master", "replica")
"""Sections whose unknown keys this module reports; transports check their own sections and
the outbox check `CQRS['master']['outbox']` (cqrs.E101)."""

_EXAMPLE = "e.g. CQRS = {'transport': 'rabbitmq', 'url': 'amqp://guest:guest@localhost:5672/', 'queue': 'my_service'}"


@register("cqrs")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check `settings.CQRS`: presence, transport, queue, options and callables."""
    from dj_cqrs import conf
    from dj_cqrs.registries import ReplicaRegistry

    value = getattr(settings, "CQRS", None)
    if value is None:
        return [Error("settings.CQRS is not set.", hint=_EXAMPLE, id="cqrs.E001")]
    if not isinstance(value, Mapping):
        return [
            Error(
                f"settings.CQRS must be a dict, got {type(value).__name__}.",
                hint=_EXAMPLE,
                id="cqrs.E001",
            )
        ]
    errors: list[CheckMessage] = []
    if not value.get("transport"):
        errors.append(
            Error(
                "CQRS['transport'] is not set.",
                hint="Set a transport name ('rabbitmq', 'kombu', 'kafka', 'memory') or a dotted "
                "path; list the installed ones with `python -m cqrs_core transports`.",
                id="cqrs.E002",
            )
        )
    else:
        try:
            if conf.legacy_transport_class() is None:  # a 3.x-style class is usable as it is
                conf.transport_class()
        except (CQRSError, ImproperlyConfigured, ImportError) as exc:
            errors.append(
                Error(
                    f"CQRS transport {value['transport']!r} is unusable.",
                    hint=str(exc),
                    id="cqrs.E003",
                )
            )
    try:
        options = CommonOptions.from_mapping(value)
    except CQRSError as exc:
        errors.append(Error("A CQRS option has an invalid value.", hint=str(exc), id="cqrs.E005"))
        options = None
    if options is not None and not options.queue and ReplicaRegistry.models:
        errors.append(
            Error(
                "CQRS['queue'] is not set, but this service has replica models: "
                + ", ".join(sorted(ReplicaRegistry.models)),
                hint="Name this service's queue: CQRS = {..., 'queue': 'my_service'}.",
                id="cqrs.E004",
            )
        )
    master = value.get("master") or {}
    if isinstance(master, Mapping):
        errors.extend(_check_master_section(master))
    errors.extend(_check_keys_and_transport(value))
    return errors


def known_keys(
    transports: Iterable[type[BaseTransport]] | None = None,
) -> dict[str, frozenset[str]]:
    """Every key read from `settings.CQRS`, by section (`""` top level, `"master.outbox"`...).

    The union of cqrs-core's `COMMON_KEYS`, `DJANGO_KEYS`, the outbox's keys and the
    `option_keys` of `transports` (default: every installed transport, so that switching
    transports never turns the other one's keys into errors). The checks accept exactly these;
    a docs test requires each of them in docs/settings.md.
    """
    from dj_cqrs.outbox.settings import KNOWN as OUTBOX_KEYS

    found: dict[str, set[str]] = {}
    for part in (COMMON_KEYS, DJANGO_KEYS, {"master.outbox": OUTBOX_KEYS}):
        for where, keys in part.items():
            found.setdefault(where, set()).update(keys)
    for cls in _installed_transports() if transports is None else transports:
        for where, keys in (cls.option_keys or {}).items():
            found.setdefault(where, set()).update(keys)
    return {where: frozenset(keys) for where, keys in found.items()}


def _installed_transports() -> list[type[BaseTransport]]:
    classes = []
    for name in sorted(available_transports()):
        try:
            classes.append(get_transport_class(name))
        except (CQRSError, ImportError):  # `python -m cqrs_core transports --check` tells why
            continue
    return classes


def _check_keys_and_transport(value: Mapping[str, Any]) -> list[CheckMessage]:
    """Unknown keys (with did-you-mean) and what the configured transport finds in its settings."""
    from dj_cqrs import conf

    legacy = None
    transport: type[BaseTransport] | None = None
    try:
        legacy = conf.legacy_transport_class()
        if legacy is None and value.get("transport"):
            transport = conf.transport_class()
    except (CQRSError, ImproperlyConfigured, ImportError):
        pass  # cqrs.E003 says why
    # A transport that does not say which keys it reads (a 3.x-style class, or a third-party
    # transport without `option_keys`) may read a key unknown to us.
    undeclared = legacy is not None or (transport is not None and transport.option_keys is None)
    configured = [] if transport is None else [transport]
    problems = _unknown_keys(value, known_keys(configured), undeclared)
    if problems:
        # Keys of the other installed transports are no error either (switching transports
        # must not turn them into errors). They are imported only now: importing every
        # transport (confluent-kafka, kombu...) costs each `cqrs_consume` several MiB.
        transports = _installed_transports()
        problems = _unknown_keys(value, known_keys([*transports, *configured]), undeclared)
    if legacy is None and transport is not None:
        try:
            problems.extend(transport.check_options(value))
        except Exception as exc:  # noqa: BLE001 (a broken plugin check must not hide the rest)
            problems.append(
                Problem(
                    "cqrs.E003",
                    f"The {transport.name!r} transport failed to check its settings: {exc!r}.",
                    "Report this to the transport's maintainers.",
                )
            )
    return [_message(p) for p in problems]


def _unknown_keys(
    value: Mapping[str, Any], known: Mapping[str, frozenset[str]], undeclared: bool
) -> list[Problem]:
    """The unknown keys of the checked sections; `undeclared`: top-level ones may be the
    transport's (cqrs.W011)."""
    problems: list[Problem] = []
    for where in CHECKED_SECTIONS:
        section = value.get(where) if where else value
        if not isinstance(section, Mapping):
            continue
        found = unknown_keys(section, known[where], where)
        if undeclared and not where:
            found = [_maybe_transport_key(p) for p in found]
        problems.extend(found)
    return problems


def _maybe_transport_key(problem: Problem) -> Problem:
    """The transport reads settings.CQRS itself and declares no keys: a key may be its own."""
    return Problem(
        "cqrs.W011",
        problem.message,
        f"{problem.hint} The configured transport does not declare the keys it reads "
        "(`option_keys`) and may read this one; if it does, silence this warning with "
        "SILENCED_SYSTEM_CHECKS = ['cqrs.W011'].",
    )


def _message(problem: Problem) -> CheckMessage:
    level = Warning if problem.is_warning else Error
    return level(problem.message, hint=problem.hint or None, id=problem.id)


def _check_master_section(master: Mapping[str, Any]) -> list[CheckMessage]:
    from dj_cqrs.conf import import_callable

    errors: list[CheckMessage] = []
    for key, check_id in (("meta_function", "cqrs.E006"), ("correlation_function", "cqrs.E007")):
        try:
            import_callable(master.get(key), f"CQRS['master'][{key!r}]")
        except ImproperlyConfigured as exc:
            errors.append(
                Error(
                    f"CQRS['master'][{key!r}] is not usable.",
                    hint=f"{exc} It is called with keyword arguments (**kwargs)."
                    if key == "meta_function"
                    else f"{exc} It is called as f(signal_type, cqrs_id, instance_pk, queue).",
                    id=check_id,
                )
            )
    flag = master.get("CQRS_AUTO_UPDATE_FIELDS", False)
    if not isinstance(flag, bool):
        errors.append(
            Error(
                f"CQRS['master']['CQRS_AUTO_UPDATE_FIELDS'] must be True or False, got {flag!r}.",
                hint="Remove it or set a boolean.",
                id="cqrs.E005",
            )
        )
    return errors


@register("cqrs", "models")
def check_model_ids(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Master and replica models without a CQRS_ID (they are left out of the registries)."""
    from dj_cqrs.master.mixins import RawMasterMixin
    from dj_cqrs.replica.mixins import ReplicaMixin

    errors: list[CheckMessage] = []
    models = (
        apps.get_models()
        if app_configs is None
        else [m for config in app_configs for m in config.get_models()]
    )
    for model in models:
        if model._meta.proxy or getattr(model, "CQRS_ID", None):
            continue
        if issubclass(model, RawMasterMixin):
            errors.append(
                Error(
                    f"Master model {model._meta.label} has no CQRS_ID: its changes are never "
                    "published, and cqrs_sync cannot find it.",
                    hint=f"Set CQRS_ID = {model._meta.model_name!r} (the same id as on the "
                    "replicas) on the model.",
                    obj=model,
                    id="cqrs.E012",
                )
            )
        elif issubclass(model, ReplicaMixin):
            errors.append(
                Error(
                    f"Replica model {model._meta.label} has no CQRS_ID: it receives no events.",
                    hint="Set CQRS_ID on the model to the CQRS_ID of the master model it "
                    "replicates.",
                    obj=model,
                    id="cqrs.E013",
                )
            )
    return errors


@register("cqrs", "models")
def check_master_models(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check the CQRS options of every registered master model."""
    from dj_cqrs.master.serialization import serializer_class, tracked_fields
    from dj_cqrs.registries import MasterRegistry

    errors: list[CheckMessage] = []
    for model in list(MasterRegistry.models.values()):
        if app_configs is not None and model._meta.app_config not in app_configs:
            continue
        names = {f.name for f in model._meta.concrete_fields}
        problems: list[str] = []
        try:
            tracked_fields(model)
        except ImproperlyConfigured as exc:
            problems.append(str(exc))
        fields = model.CQRS_FIELDS
        if fields != "__all__":
            if isinstance(fields, str) or not all(isinstance(n, str) for n in fields):
                problems.append(
                    f"CQRS_FIELDS must be '__all__' or a list of field names, got {fields!r}."
                )
            elif unknown := sorted(set(fields) - names):
                problems.append(f"CQRS_FIELDS names unknown field(s): {', '.join(unknown)}.")
        if model.CQRS_SERIALIZER:
            try:
                serializer_class(model.CQRS_SERIALIZER)
            except ImproperlyConfigured as exc:
                problems.append(str(exc))
        missing = [n for n in ("cqrs_revision", "cqrs_updated") if n not in names]
        if missing:
            problems.append(
                f"missing field(s) {', '.join(missing)}: inherit MasterMixin or RawMasterMixin "
                "(both declare them)."
            )
        errors.extend(
            Error(problem, hint="Fix the CQRS options of the model.", obj=model, id="cqrs.E008")
            for problem in problems
        )
    return errors
