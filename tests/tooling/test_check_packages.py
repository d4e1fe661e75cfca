from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_packages.py"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("check_packages_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


GOOD_METADATA = """\
Metadata-Version: 2.4
Name: cqrs-kafka
Version: 0.2.0
Classifier: Typing :: Typed
Requires-Python: >=3.10
Requires-Dist: cqrs-core<1,>=0.1
Requires-Dist: confluent-kafka<3,>=2.3
"""


def make_dists(tmp_path: Path, metadata: str, *, py_typed: bool = True, eps: str | None = None):
    """A fake repo with packages/cqrs-kafka at 0.2.0 and a wheel + sdist built from `metadata`."""
    about = tmp_path / "repo/packages/cqrs-kafka/src/cqrs_kafka/__about__.py"
    about.parent.mkdir(parents=True)
    about.write_text('__version__ = "0.2.0"\n')
    if eps is None:
        eps = "[cqrs_core.transports]\nkafka = cqrs_kafka:KafkaTransport\n"
    wheel = tmp_path / "cqrs_kafka-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("cqrs_kafka/__init__.py", "")
        if py_typed:
            zf.writestr("cqrs_kafka/py.typed", "")
        zf.writestr("cqrs_kafka-0.2.0.dist-info/METADATA", metadata)
        zf.writestr("cqrs_kafka-0.2.0.dist-info/entry_points.txt", eps)
    sdist = tmp_path / "cqrs_kafka-0.2.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for name, text in {
            "PKG-INFO": metadata,
            "README.md": "# x\n",
            "CHANGELOG.md": "## 0.2.0\n",
            "src/cqrs_kafka/__about__.py": '__version__ = "0.2.0"\n',
            "src/cqrs_kafka/py.typed": "",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(f"cqrs_kafka-0.2.0/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return tmp_path / "repo", wheel, sdist


def problems(cp, tmp_path, metadata, **kw) -> str:
    repo, wheel, sdist = make_dists(tmp_path, metadata, **kw)
    found = cp.check_metadata(repo, cp.BY_DIST["cqrs-kafka"], wheel, sdist)
    return "\n".join(f"{what} -> {fix}" for what, fix in found)


def test_good_metadata_passes(cp, tmp_path):
    assert problems(cp, tmp_path, GOOD_METADATA) == ""


def test_pinned_core_is_rejected(cp, tmp_path):
    found = problems(cp, tmp_path, GOOD_METADATA.replace("cqrs-core<1,>=0.1", "cqrs-core==0.1.0"))
    assert "never '=='" in found


def test_version_mismatch_missing_typing_and_py_typed(cp, tmp_path):
    metadata = GOOD_METADATA.replace("Version: 0.2.0", "Version: 0.1.0").replace(
        "Classifier: Typing :: Typed\n", ""
    )
    found = problems(cp, tmp_path, metadata, py_typed=False)
    assert "Version '0.1.0' != __about__ '0.2.0'" in found
    assert "Typing :: Typed" in found
    assert "py.typed is not in the wheel" in found


def test_missing_entry_point_and_core_dependency(cp, tmp_path):
    metadata = GOOD_METADATA.replace("Requires-Dist: cqrs-core<1,>=0.1\n", "")
    found = problems(cp, tmp_path, metadata, eps="")
    assert "no entry point 'kafka'" in found
    assert "does not depend on cqrs-core" in found


def test_django_extras_must_pull_the_right_distribution(cp, tmp_path):
    metadata = (
        "Name: cqrs-django\nVersion: 0.1.0\nRequires-Dist: cqrs-core>=0.1\n"
        "Provides-Extra: kafka\nRequires-Dist: cqrs-kombu>=0.1; extra == 'kafka'\n"
    )
    repo, wheel, sdist = make_dists(tmp_path, metadata)
    about = repo / "packages/cqrs-django/src/dj_cqrs/__about__.py"
    about.parent.mkdir(parents=True)
    about.write_text('__version__ = "0.1.0"\n')
    found = cp.check_metadata(repo, cp.BY_DIST["cqrs-django"], wheel, sdist)
    what = "\n".join(w for w, _ in found)
    assert "extra [kafka] pulls ['cqrs-kombu'], expected ['cqrs-kafka']" in what
    assert "no extra [rabbitmq]" in what


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cqrs-core<1,>=0.1", ("cqrs-core", "<1,>=0.1", "")),
        ("cqrs_Kafka (>=0.1) ; extra == 'kafka'", ("cqrs-kafka", ">=0.1", "extra == 'kafka'")),
        ("psycopg[binary]>=3.1", ("psycopg", ">=3.1", "")),
    ],
)
def test_parse_requirement(cp, line, expected):
    assert cp.parse_requirement(line) == expected


@pytest.mark.parametrize(
    ("spec", "ok"),
    [(">=0.1,<1", True), ("~=0.1", True), ("==0.1.0", False), ("", False), ("<1", False)],
)
def test_range_problem(cp, spec, ok):
    assert (cp.range_problem(spec) is None) is ok
