"""Acceptance test: a django-cqrs 3.x service and its own suite run unchanged on dj_cqrs.

`service/` is a Django project written only against the django-cqrs 3.x API (settings, models,
custom transport, admin, and a pytest suite in the 3.x style). Its suite needs its own settings
module and pytest configuration, so it runs in a subprocess with `service/pytest.ini` as the only
configuration; the root options (plugins, `DJANGO_SETTINGS_MODULE`) must not leak into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent / "service"

# Variables of the outer pytest run that would change how the inner one is configured.
_OUTER_ONLY = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "DJANGO_SETTINGS_MODULE", "PYTEST_CURRENT_TEST")


def _service_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _OUTER_ONLY}
    env["DJANGO_SETTINGS_MODULE"] = "legacy_project.test_settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVICE), env.get("PYTHONPATH")]))
    env.pop("LEGACY_SERVICE_RUN_ID", None)  # a fresh database name for this run
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_legacy_service_suite_passes_unchanged() -> None:
    """The service's own 3.x-era tests pass; on failure the whole pytest report is shown."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(SERVICE / "pytest.ini"),
        "--rootdir",
        str(SERVICE),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-q",
        "-rfE",
        str(SERVICE),
    ]
    done = subprocess.run(
        command,
        cwd=SERVICE,
        env=_service_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, report
    assert " passed" in done.stdout, report
