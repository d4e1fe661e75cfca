"""`scripts/_replication_probe.py` run with this interpreter: it replicates, and it notices when not.

The probe's real use is in fresh venvs (`release:check`, the third-party transport test); here it
runs against the workspace's editable installs through kombu's filesystem transport (no broker),
so a broken probe shows up in `hatch test` and not only in the release check.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cqrs_core.testing.suite import unique_name

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "_replication_probe.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_replication_probe", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_probe_replicates_save_update_delete(probe: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    name = unique_name("probe")
    cqrs = {"transport": "kombu", "url": f"filesystem://{folder}", "queue": name, "exchange": name}
    result = probe.run_probe(sys.executable, cqrs, tmp_path / "project", transports=True)
    assert result.ok, result.detail
    assert result.data["rows"] == [[1, "alpha v2", 10, 1], [3, "gamma", 3, 0]]
    assert "Configured: CQRS['transport'] = 'kombu'" in result.data["transports"]


def test_probe_fails_when_nothing_reaches_the_replica(probe: ModuleType, tmp_path: Path) -> None:
    """The memory transport does not cross processes: the consumer never sees the events."""
    cqrs = {"transport": "memory", "queue": unique_name("probe")}
    result = probe.run_probe(sys.executable, cqrs, tmp_path / "project", timeout=10)
    assert not result.ok
    assert "replica rows [] != master rows [[1, 'alpha', 1, 0], [2, 'beta', 2, 0]]" in result.detail
