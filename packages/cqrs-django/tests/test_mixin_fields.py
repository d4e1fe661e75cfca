"""The fields the mixins add are defined as django-cqrs 3.x defines them.

Django's autodetector compares deconstructed fields, so a service whose migrations were made
with 3.x must see no change after the switch (`makemigrations --check` stays clean).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from dj_cqrs.mixins import RawMasterMixin, ReplicaMixin

MASTER_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "cqrs_revision": (
        "django.db.models.IntegerField",
        {
            "default": 0,
            "help_text": "This field must be incremented on any model update. "
            "It's used to for CQRS sync.",
        },
    ),
    "cqrs_updated": (
        "django.db.models.DateTimeField",
        {
            "auto_now": True,
            "help_text": "This field must be incremented on every model update. "
            "It's used to for CQRS sync.",
        },
    ),
}
REPLICA_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "cqrs_revision": ("django.db.models.IntegerField", {}),
    "cqrs_updated": ("django.db.models.DateTimeField", {}),
}


@pytest.mark.parametrize(
    ("mixin", "expected"), [(RawMasterMixin, MASTER_FIELDS), (ReplicaMixin, REPLICA_FIELDS)]
)
def test_fields_deconstruct_as_in_django_cqrs(mixin: Any, expected: dict) -> None:
    for name, (path, kwargs) in expected.items():
        field = mixin._meta.get_field(name)
        assert field.deconstruct() == (name, path, [], kwargs), name


@pytest.mark.django_db
def test_dj_cqrs_migrations_are_complete() -> None:
    """Our own app has no model change without a migration."""
    call_command("makemigrations", "dj_cqrs", "--check", "--dry-run", verbosity=0)
