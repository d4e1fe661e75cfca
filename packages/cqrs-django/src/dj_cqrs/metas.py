"""Metaclasses that register CQRS models when their class is created."""

from __future__ import annotations

from dj_cqrs.master.meta import MasterMeta
from dj_cqrs.replica.meta import ReplicaMeta

__all__ = ["MasterMeta", "ReplicaMeta"]
