"""System checks of the outbox settings (`cqrs.E1xx`, `cqrs.W1xx`)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from dj_cqrs import conf
from dj_cqrs.outbox.settings import NUMBERS, problems


@register("cqrs")
def check_outbox_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Invalid `publish` mode or `outbox` options; a grace shorter than the publish timeout."""
    try:
        master = conf.master_settings()
    except Exception:  # reported by the main CQRS checks  # noqa: BLE001  (reported by the main checks)
        return []
    found: list[CheckMessage] = [
        Error(message, hint=hint or None, id="cqrs.E101") for message, hint in problems(master)
    ]
    if found:
        return found
    section = master.get("outbox") or {}
    grace = section.get("grace", NUMBERS["grace"])
    timeout = section.get("publish_timeout", NUMBERS["publish_timeout"])
    if grace < timeout:
        found.append(
            Warning(
                f"CQRS['master']['outbox']['grace'] ({grace}s) is shorter than publish_timeout "
                f"({timeout}s): relays may send events that a slow fast path sends too.",
                hint="Make grace at least publish_timeout (duplicates are harmless but wasteful).",
                id="cqrs.W101",
            )
        )
    return found
