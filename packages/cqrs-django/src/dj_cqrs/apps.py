"""Django app configuration of dj_cqrs."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class CQRSConfig(AppConfig):
    """Registers the system checks and connects the master model signals."""

    name = "dj_cqrs"
    label = "dj_cqrs"
    verbose_name = "CQRS"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from dj_cqrs import (
            checks,  # noqa: F401  (registers the system checks)
            correlation,  # noqa: F401  (payloads' default correlation_id)
        )
        from dj_cqrs.outbox import checks as outbox_checks  # noqa: F401
        from dj_cqrs.registries import MasterRegistry
        from dj_cqrs.signals import MasterSignals

        for model in list(MasterRegistry.models.values()):
            MasterSignals.register_model(model)
        setting_changed.connect(_reset_on_change, dispatch_uid="dj_cqrs.conf.reset")
        _configure_tracing()


def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    """A changed CQRS setting (override_settings in tests) needs a new transport."""
    if setting == "CQRS":
        from dj_cqrs.conf import reset_transport

        reset_transport()
        _configure_tracing()


def _configure_tracing() -> None:
    """`CQRS['tracing']` (issue 16): the hooks of `dj_cqrs.observability.tracing` start or stop."""
    from dj_cqrs.observability import tracing

    tracing.configure()
