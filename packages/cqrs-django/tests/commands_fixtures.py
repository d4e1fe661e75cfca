"""Fixtures of the management command tests (imported by the test modules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands_support import TRANSPORT


@pytest.fixture(name="outbox")
def outbox_fixture(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Route CQRS to a JSON-lines file; yield its path (read it with `published`).

    Events are published directly after commit (`'publish': 'on_commit'`), so what a command
    sent is in the file when it returns; `test_sync_through_the_outbox` covers the default.
    """
    from dj_cqrs import conf

    path = tmp_path / "published.jsonl"
    settings.CQRS = {
        **settings.CQRS,
        "transport": TRANSPORT,
        "url": f"file://{path}",
        "queue": "replica",
        "master": {**settings.CQRS.get("master", {}), "publish": "on_commit"},
    }
    conf.reset_transport()
    try:
        yield path
    finally:
        conf.reset_transport()
