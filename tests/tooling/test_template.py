from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TEMPLATE = Path(__file__).resolve().parents[2] / "_template"


def instantiate(dest: Path, broker: str, prefix: str) -> Path:
    """What _template/README.md tells people to do, in Python."""
    shutil.copytree(TEMPLATE, dest)
    (dest / "src" / "cqrs_TEMPLATE").rename(dest / "src" / f"cqrs_{broker}")
    for path in dest.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".toml", ".md"}:
            text = path.read_text().replace("TEMPLATE", broker).replace("Template", prefix)
            path.write_text(text)
    return dest


def test_instantiated_template_is_a_loadable_transport(tmp_path: Path) -> None:
    package = instantiate(tmp_path / "cqrs-demo", "demo", "Demo")
    leftovers = [
        str(p)
        for p in package.rglob("*")
        if "TEMPLATE" in p.name or (p.is_file() and "TEMPLATE" in p.read_text())
    ]
    assert leftovers == []

    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "cqrs-demo"
    eps = project["project"]["entry-points"]["cqrs_core.transports"]
    assert eps == {"demo": "cqrs_demo:DemoTransport"}
    assert not any("==" in dep for dep in project["project"]["dependencies"])

    # Import it in a subprocess: the class must pass BaseTransport's own checks and match the
    # API version of this cqrs-core.
    code = (
        "import cqrs_demo\n"
        "from cqrs_core.transports import BaseTransport, TRANSPORT_API_VERSION\n"
        "cls = cqrs_demo.DemoTransport\n"
        "assert issubclass(cls, BaseTransport) and cls.name == 'demo', cls\n"
        "assert cls.api_version == TRANSPORT_API_VERSION, cls.api_version\n"
        "t = cls({'queue': 'q'})\n"
        "t.close()\n"
        "print(cqrs_demo.__version__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(package / "src"), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.1.0"
