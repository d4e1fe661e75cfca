"""Argument checks shared by the commands: CQRS_IDs, JSON filters, batch sizes.

Every problem becomes a `CommandError` that says what was wrong and what to give instead, so
scripts fail with exit code 1 and a readable message rather than a traceback. The first line of
the message is django-cqrs 3.x's text (`Wrong CQRS ID: x!`, `Bad filter kwargs!`), so scripts
that look for it keep working; our explanation follows on the next line.
"""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldError, ValidationError
from django.core.management.base import CommandError
from django.db.models import Model, QuerySet

from dj_cqrs.registries import MasterRegistry, ReplicaRegistry

if TYPE_CHECKING:
    from dj_cqrs.mixins import RawMasterMixin

WRONG_ID = "Wrong CQRS ID: {0}!"
"""django-cqrs 3.x's message for a CQRS_ID this service does not have."""

BAD_FILTER = "Bad filter kwargs!"
"""django-cqrs 3.x's message for a --filter that is not a JSON object or does not apply."""


def _unknown(side: str, cqrs_id: str, known: list[str]) -> CommandError:
    lines = [f"Unknown {side} CQRS_ID {cqrs_id!r}."]
    guess = difflib.get_close_matches(cqrs_id, known, n=1)
    if guess:
        lines.append(f"Did you mean {guess[0]!r}?")
    lines.append(
        f"{side.capitalize()} models of this service: {', '.join(sorted(known)) or 'none'}."
    )
    return CommandError(WRONG_ID.format(cqrs_id) + "\n" + " ".join(lines))


def master_model(cqrs_id: str) -> type[RawMasterMixin]:
    """The master model registered under `cqrs_id` (CommandError if there is none)."""
    model: type[RawMasterMixin] | None = MasterRegistry.get_model_by_cqrs_id(cqrs_id)
    if model is None:
        raise _unknown("master", cqrs_id, list(MasterRegistry.models))
    return model


def replica_model(cqrs_id: str, *, needs_table: bool = False) -> Any:
    """The replica model registered under `cqrs_id` (CommandError if there is none).

    Args:
        needs_table: The command reads or deletes rows, so a `RawReplicaMixin` (no table)
            cannot be used.
    """
    model = ReplicaRegistry.get_model_by_cqrs_id(cqrs_id)
    if model is None:
        raise _unknown("replica", cqrs_id, list(ReplicaRegistry.models))
    if needs_table and not (isinstance(model, type) and issubclass(model, Model)):
        raise CommandError(
            f"Replica {cqrs_id!r} ({model.__name__}) is not a Django model, so it has no rows "
            "to compare or delete."
        )
    return model


def parse_filter(text: str | None) -> dict[str, Any]:
    """`-f '{"id__in": [1, 2]}'` → keyword arguments of `QuerySet.filter` (empty: everything)."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(
            f"{BAD_FILTER}\n--filter is not valid JSON ({exc}): {text!r}. "
            "Give a JSON object of queryset lookups, e.g. '{\"id__in\": [1, 2]}'."
        ) from None
    if not isinstance(value, dict):
        raise CommandError(
            f"{BAD_FILTER}\n--filter must be a JSON object of queryset lookups, got "
            f"{type(value).__name__}: {text!r}. Example: '{{\"id__gte\": 100}}'."
        )
    return value


def filtered(queryset: QuerySet[Any], lookups: dict[str, Any]) -> QuerySet[Any]:
    """`queryset.filter(**lookups)`, with bad lookups or values reported as CommandError."""
    if not lookups:
        return queryset
    try:
        result = queryset.filter(**lookups)
    except (FieldError, ValidationError, ValueError, TypeError) as exc:
        model = queryset.model.__name__
        raise CommandError(
            f"{BAD_FILTER} {exc}\n--filter {json.dumps(lookups)} does not apply to {model}."
        ) from None
    return result


def positive(value: int, option: str) -> int:
    if value < 1:
        raise CommandError(f"{option} must be a positive number, got {value}.")
    return value
