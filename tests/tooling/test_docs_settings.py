"""Every key the code reads from `settings.CQRS` is documented in docs/settings.md.

The keys come from `dj_cqrs.checks.known_keys()`, the registry `manage.py check` accepts, so the
documentation, the checks and the code cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_support import headings

from dj_cqrs.checks import known_keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def sections(text: str) -> dict[str, list[str]]:
    """Lines under each heading (nested headings included), by the heading's bare text."""
    found: dict[str, list[str]] = {}
    for heading, body in headings(text):
        found.setdefault(heading.strip().strip("`"), body)
    return found


def documented(rows: list[str], key: str, where: str) -> bool:
    """A table row whose first cell names `key` (or `<section>.key`, as the Kafka table does)."""
    names = {f"`{key}`", f"`{where}.{key}`"}
    for row in rows:
        cells = row.split("|")
        if row.startswith("|") and len(cells) > 2 and any(n in cells[1] for n in names):
            return True
    return False


def region(where: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    if not where:
        return text.splitlines()  # transports document their top-level keys in their section
    by_heading = sections(text)
    for name in (where, where.rpartition(".")[2]):
        if name in by_heading:
            return by_heading[name]
    pytest.fail(f"docs/settings.md has no heading for CQRS section {where!r}: add one.")


REGISTRY = known_keys()


@pytest.mark.parametrize("where", sorted(REGISTRY))
def test_every_settings_key_is_documented(where: str) -> None:
    rows = region(where)
    missing = sorted(k for k in REGISTRY[where] if not documented(rows, k, where))
    assert not missing, (
        f"docs/settings.md does not document {', '.join(missing)} of CQRS section "
        f"{where or 'top level'!r}: add a table row (key, default, meaning) under its heading."
    )


def test_registry_covers_every_package() -> None:
    """The registry really holds the keys of dj_cqrs, the outbox and each transport."""
    assert {"publish", "outbox"} <= REGISTRY["master"]
    assert "keep_days" in REGISTRY["master.outbox"]
    assert {"rabbitmq", "transport_options", "kafka"} <= REGISTRY[""]
    assert "heartbeat" in REGISTRY["rabbitmq"] and "partitions" in REGISTRY["kafka"]


def test_an_undocumented_key_is_caught() -> None:
    rows = region("master")
    assert documented(rows, "CQRS_MESSAGE_TTL", "master")
    assert not documented(rows, "CQRS_NOT_A_SETTING", "master")
