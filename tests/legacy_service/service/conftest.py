from __future__ import annotations

from copy import deepcopy

import pytest


@pytest.fixture(autouse=True)
def restore_cqrs_settings(settings):
    """pytest-django restores assigned settings only: copy CQRS so tests may mutate it."""
    settings.CQRS = deepcopy(settings.CQRS)
    yield


@pytest.fixture
def produce(mocker):
    return mocker.patch("dj_cqrs.controller.producer.produce")
