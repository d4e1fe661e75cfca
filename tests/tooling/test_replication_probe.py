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
    result = probe.run_probe(sys.executable, cqrs, tmp_path / "project", timeout=300, wait=5)
    assert not result.ok
    assert "replica rows [] != master rows [[1, 'alpha', 1, 0], [2, 'beta', 2, 0]]" in result.detail
    assert _processes_in(tmp_path) == []


def test_probe_timeout_stops_every_process_it_started(probe: ModuleType, tmp_path: Path) -> None:
    """A probe killed by its timeout takes its `cqrs_consume` with it.

    The replica never catches up (memory transport) and each wait may last 600 s, so the
    overall timeout fires while the consumer is running.
    """
    cqrs = {"transport": "memory", "queue": unique_name("probe")}
    folder = tmp_path / "project"
    result = probe.run_probe(sys.executable, cqrs, folder, timeout=20, wait=600)
    assert not result.ok
    assert "timed out" in result.detail
    assert _processes_in(tmp_path) == []


def _processes_in(folder: Path) -> list[str]:
    """Command lines of live processes whose working directory is under `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = (proc / "cwd").resolve(strict=True)
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # exited meanwhile, or not ours to read
        if state != "Z" and (cwd == folder.resolve() or folder.resolve() in cwd.parents):
            found.append(cmdline)
    return found
