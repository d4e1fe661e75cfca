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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from cqrs_core.exceptions import CQRSError
from cqrs_core.options import CommonOptions

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
    return errors


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
