"""Fixtures of the root integration tests (defined in `e2e_support`, importable by the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_support import (  # noqa: F401  (fixtures)
    backend,
    fault_backend,
    fault_replication,
    kafka_bootstrap,
    rabbit_vhost,
    replication,
)


def pytest_terminal_summary(terminalreporter: object) -> None:
    from e2e_support import REPORT

    if REPORT:
        terminalreporter.section("end-to-end replication: lost / duplicated applications")  # type: ignore[attr-defined]
        for line in REPORT:
            terminalreporter.write_line(line)  # type: ignore[attr-defined]
