"""CQRS replication of Django models between services (API compatible with django-cqrs)."""

from __future__ import annotations

from dj_cqrs.__about__ import __version__

__all__ = ["__version__"]
