"""A transport from another distribution works when installed from wheels into a fresh venv.

It proves the plugin promise end to end: `examples/cqrs-redis-streams` is built into a wheel,
installed beside cqrs-core and cqrs-django (their wheels too) with nothing of the source tree on
the path, listed by `python -m cqrs_core transports --check`, passes the core conformance suite
against the real Redis, and replicates master -> replica in a throwaway Django project selected
with `CQRS = {'transport': 'redis_streams', ...}` (`scripts/_replication_probe.py`), whose
`manage.py cqrs_transports` lists it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

from cqrs_core.testing.plugin import service_unavailable
from cqrs_core.testing.suite import unique_name

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cqrs-redis-streams"
CORE = ROOT / "packages" / "cqrs-core"
DJANGO = ROOT / "packages" / "cqrs-django"
PROBE = ROOT / "scripts" / "_replication_probe.py"
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


def _require_redis() -> None:
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


def _load_probe() -> ModuleType:
    """`scripts/_replication_probe.py` (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("_replication_probe", PROBE)
    assert spec and spec.loader, PROBE
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new venv with the wheels of cqrs-core, cqrs-django and the example; its python."""
    _require_redis()
    tmp_path = tmp_path_factory.mktemp("third-party")
    dist = tmp_path / "dist"
    packages = [CORE, DJANGO, EXAMPLE]
    for package in packages:
        _build_wheel(package, dist)
    wheels = sorted(path.name for path in dist.glob("*.whl"))
    assert len(wheels) == len(packages), wheels

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    # Third-party requirements from the index (pip's cache makes repeats cheap), ours from the
    # wheels just built only: --no-index guarantees no published cqrs-* release sneaks in.
    _run(
        [python, "-m", "pip", "install", "-q", "pytest>=8", "redis>=5", "Django>=4.2"], cwd=tmp_path
    )
    install = [
        f"cqrs-core=={_version(CORE, 'cqrs_core')}",
        f"cqrs-django=={_version(DJANGO, 'dj_cqrs')}",
        f"cqrs-redis-streams=={_version(EXAMPLE, 'cqrs_redis_streams')}",
    ]
    _run(
        [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(dist), *install],
        cwd=tmp_path,
    )
    where = _run(
        [python, "-c", "import cqrs_redis_streams; print(cqrs_redis_streams.__file__)"],
        cwd=tmp_path,
    )
    assert str(venv) in where and str(EXAMPLE) not in where, where
    return python


def _listed(listing: str) -> str:
    """The `redis_streams` line of a transports listing, checked."""
    line = next((ln for ln in listing.splitlines() if ln.startswith("redis_streams ")), None)
    assert line is not None, listing
    assert f"cqrs-redis-streams {_version(EXAMPLE, 'cqrs_redis_streams')}" in line, line
    assert "cqrs_redis_streams:RedisStreamsTransport" in line, line
    assert line.endswith("  ok"), line
    return line


def test_third_party_transport_from_wheels_lists_and_conforms(
    wheel_venv: str, tmp_path: Path
) -> None:
    """Listed with --check, and the conformance suite passes in the new venv."""
    _listed(_run([wheel_venv, "-m", "cqrs_core", "transports", "--check"], cwd=tmp_path))

    # The example's own pytest config (rootdir inside the example), not the workspace's.
    result = _run(
        [
            wheel_venv,
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


COUNT_KEYS = """
import sys, redis
client = redis.Redis.from_url(sys.argv[1])
keys = list(client.scan_iter(match=sys.argv[2] + ":*"))
if keys:
    client.delete(*keys)
print(len(keys))
"""


def test_third_party_transport_replicates_master_to_replica(
    wheel_venv: str, tmp_path: Path
) -> None:
    """A Django master and replica with CQRS['transport'] = 'redis_streams' stay in sync."""
    probe = _load_probe()
    prefix = unique_name("rs_probe")
    cqrs = {
        "transport": "redis_streams",
        "url": REDIS_URL,
        "queue": unique_name("rs_replica"),
        "redis_streams": {"prefix": prefix, "block": 0.2},
    }
    try:
        result = probe.run_probe(wheel_venv, cqrs, tmp_path / "probe", transports=True, env=_env())
    finally:
        # The probe deletes its keys itself; this checks that (and cleans up if it was killed).
        left = _run([wheel_venv, "-c", COUNT_KEYS, REDIS_URL, prefix], cwd=tmp_path)
    assert result.ok, result.detail
    # save x2, then update one, delete the other, create a third: the replica has the same rows
    # (id, name, quantity, cqrs_revision) as the master.
    assert result.data["rows"] == [[1, "alpha v2", 10, 1], [3, "gamma", 3, 0]], result.data
    listing = result.data["transports"]
    _listed(listing)
    assert "Configured: CQRS['transport'] = 'redis_streams'" in listing, listing
    assert "ok: cqrs_redis_streams" in listing, listing
    assert left.strip() == "0", f"the probe left {left.strip()} key(s) under {prefix}:"
    print(f"redis_streams replication probe: {result.detail} ({result.seconds:.1f}s)")
