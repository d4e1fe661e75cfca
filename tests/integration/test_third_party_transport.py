"""A transport from another distribution works when installed from wheels into a fresh venv.

It proves the plugin promise end to end: `examples/cqrs-redis-streams` is built into a wheel,
installed beside cqrs-core (and cqrs-django when present) with nothing of the source tree on the
path, listed by `python -m cqrs_core transports --check`, and passes the core conformance suite
against the real Redis.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cqrs_core.testing.plugin import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cqrs-redis-streams"
CORE = ROOT / "packages" / "cqrs-core"
DJANGO = ROOT / "packages" / "cqrs-django"
REDIS_URL = os.environ.get("CQRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

pytestmark = [pytest.mark.slow, pytest.mark.broker("redis")]


def _version(package: Path, module: str) -> str:
    about = (package / "src" / module / "__about__.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', about)
    assert match, f"no __version__ in {package}"
    return match.group(1)


def _env() -> dict[str, str]:
    """The caller's environment without anything that points at the workspace's interpreter."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "HATCH_ENV_ACTIVE", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str], *, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{output[-4000:]}"
    return output


def _build_wheel(package: Path, dist: Path) -> None:
    hatch = shutil.which("hatch")
    if hatch:
        _run([hatch, "build", "-t", "wheel", str(dist)], cwd=package)
    else:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), "."], cwd=package)


@pytest.fixture
def redis_reachable() -> None:
    """PING Redis over a raw socket (the outer environment needs no redis client)."""
    url = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), 2) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        service_unavailable(f"Redis ({REDIS_URL})", exc)
    if not answer.startswith((b"+PONG", b"-NOAUTH")):
        service_unavailable(f"Redis ({REDIS_URL})", f"unexpected answer {answer!r}")


def test_third_party_transport_from_wheels_lists_and_conforms(
    tmp_path: Path, redis_reachable: None
) -> None:
    """Build, install into a new venv, list with --check, run the conformance suite there."""
    dist = tmp_path / "dist"
    packages = [CORE, EXAMPLE] + ([DJANGO] if (DJANGO / "pyproject.toml").exists() else [])
    for package in packages:
        _build_wheel(package, dist)
    wheels = sorted(path.name for path in dist.glob("*.whl"))
    assert len(wheels) == len(packages), wheels

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    # Third-party requirements from the index (pip's cache makes repeats cheap), ours from the
    # wheels just built only: --no-index guarantees no published cqrs-* release sneaks in.
    requirements = ["pytest>=8", "redis>=5"] + (["Django>=4.2"] if DJANGO in packages else [])
    _run([python, "-m", "pip", "install", "-q", *requirements], cwd=tmp_path)
    ours = {
        CORE: f"cqrs-core=={_version(CORE, 'cqrs_core')}",
        EXAMPLE: f"cqrs-redis-streams=={_version(EXAMPLE, 'cqrs_redis_streams')}",
        DJANGO: f"cqrs-django=={_version(DJANGO, 'dj_cqrs')}" if DJANGO in packages else "",
    }
    install = [ours[package] for package in packages]
    _run(
        [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(dist), *install],
        cwd=tmp_path,
    )

    where = _run(
        [python, "-c", "import cqrs_redis_streams; print(cqrs_redis_streams.__file__)"],
        cwd=tmp_path,
    )
    assert str(venv) in where and str(EXAMPLE) not in where, where

    listing = _run([python, "-m", "cqrs_core", "transports", "--check"], cwd=tmp_path)
    line = next((ln for ln in listing.splitlines() if ln.startswith("redis_streams ")), None)
    assert line is not None, listing
    assert f"cqrs-redis-streams {_version(EXAMPLE, 'cqrs_redis_streams')}" in line
    assert "cqrs_redis_streams:RedisStreamsTransport" in line
    assert line.endswith("  ok"), line

    # The example's own pytest config (rootdir inside the example), not the workspace's.
    result = _run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-c",
            str(EXAMPLE / "pyproject.toml"),
            "--rootdir",
            str(EXAMPLE),
            "-p",
            "no:cacheprovider",
            str(EXAMPLE / "tests"),
        ],
        cwd=tmp_path,
        timeout=600,
    )
    summary = result.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, result[-3000:]
    assert not re.search(r"failed|error|skipped", summary), result[-3000:]
