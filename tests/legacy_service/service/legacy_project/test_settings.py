"""Test settings: the real settings with the django-cqrs test transport, as 3.x suites do."""

from __future__ import annotations

from copy import deepcopy

from legacy_project.settings import *  # noqa: F401,F403
from legacy_project.settings import CQRS as _CQRS

CQRS = deepcopy(_CQRS)
CQRS["transport"] = "dj_cqrs.transport.mock.TransportMock"
