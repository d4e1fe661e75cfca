"""Signals of master models (django-cqrs 3.x path); they live in `dj_cqrs.master.signals`."""

from __future__ import annotations

from dj_cqrs.controller import producer  # noqa: F401  (3.x suites patch signals.producer.produce)
from dj_cqrs.master.signals import MasterSignals, post_bulk_create, post_update

__all__ = ["MasterSignals", "post_bulk_create", "post_update"]
