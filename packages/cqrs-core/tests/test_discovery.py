"""Finding transports: entry points, dotted paths, in-process registration, and the errors."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cqrs_core.__main__ import main
from cqrs_core.exceptions import TransportLoadError, TransportNotFound
from cqrs_core.transports import (
    GROUP,
    TRANSPORT_API_VERSION,
    _discovery,
    available_transports,
    get_transport_class,
    origin,
    register_transport,
    unregister_transport,
)
from cqrs_core.transports.memory import MemoryTransport

MEMORY_VALUE = "cqrs_core.transports.memory:MemoryTransport"


@dataclasses.dataclass
class FakeEntryPoint:
    """Quacks like `importlib.metadata.EntryPoint` for what discovery reads."""

    name: str
    value: str
    dist: Any = None
    target: Any = None
    group: str = GROUP

    def load(self) -> Any:
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


def dist(name: str, version: str = "1.0") -> SimpleNamespace:
    return SimpleNamespace(name=name, version=version)


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Replace the installed entry points with the given ones (the discovery cache is reset)."""

    def install(*eps: Any) -> None:
        monkeypatch.setattr(_discovery, "entry_points", lambda group: list(eps))
        available_transports.cache_clear()

    available_transports.cache_clear()
    yield install
    available_transports.cache_clear()


def real_memory_ep() -> Any:
    (ep,) = entry_points(group=GROUP, name="memory")
    return ep


class Future(MemoryTransport):
    name = "future"
    api_version = TRANSPORT_API_VERSION + 1


class Ancient(MemoryTransport):
    name = "ancient"
    api_version = TRANSPORT_API_VERSION - 1


class InTest(MemoryTransport):
    name = "intest"


# -- the installed memory transport ------------------------------------------------------


def test_listing_finds_memory_without_importing_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        from cqrs_core.transports import available_transports, origin
        eps = available_transports()
        assert "memory" in eps, eps
        assert eps["memory"].value == "cqrs_core.transports.memory:MemoryTransport"
        assert "cqrs_core.transports.memory" not in sys.modules
        print(origin(eps["memory"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cqrs-core ")


def test_memory_entry_point_is_declared_by_cqrs_core() -> None:
    ep = available_transports()["memory"]
    assert ep.value == MEMORY_VALUE
    assert origin(ep).split()[0] == "cqrs-core"


@pytest.mark.parametrize(
    "spec",
    [
        "memory",
        "cqrs_core.transports.memory.MemoryTransport",
        "cqrs_core.transports.memory:MemoryTransport",
    ],
)
def test_resolve_by_name_or_dotted_path(spec: str) -> None:
    assert get_transport_class(spec) is MemoryTransport


# -- not found ---------------------------------------------------------------------------


def test_unknown_name_suggests_a_close_match() -> None:
    with pytest.raises(TransportNotFound) as info:
        get_transport_class("memroy")
    message = str(info.value)
    assert "No CQRS transport named 'memroy' is installed." in message
    assert "Did you mean 'memory'?" in message
    assert "pip install" not in message
    assert "memory" in info.value.installed
    assert isinstance(info.value, LookupError)


def test_not_found_survives_pickling() -> None:
    error = TransportNotFound("kafak", installed=["kafka", "memory"])
    again = pickle.loads(pickle.dumps(error))
    assert (again.name, again.installed, str(again)) == (error.name, error.installed, str(error))


@pytest.mark.parametrize("name", ["rabbitmq", "kombu", "kafka"])
def test_first_party_name_not_installed_says_what_to_install(
    fake_entry_points: Callable[..., None], name: str
) -> None:
    fake_entry_points(real_memory_ep())
    with pytest.raises(TransportNotFound) as info:
        get_transport_class(name)
    message = str(info.value)
    assert f'pip install "cqrs-django[{name}]"' in message
    assert f"cqrs-{name}" in message
    assert message.endswith("Installed: memory")


def test_nothing_installed(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points()
    with pytest.raises(TransportNotFound, match="Installed: none"):
        get_transport_class("anything")


@pytest.mark.parametrize("spec", ["", None, 3])
def test_empty_or_non_string_spec(spec: Any) -> None:
    with pytest.raises(TransportNotFound):
        get_transport_class(spec)


# -- dotted paths that do not lead to a valid transport ----------------------------------


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A third-party module on sys.path with valid and invalid transport classes."""
    name = f"fake_cqrs_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from cqrs_core.transports.base import BaseTransport
            from cqrs_core.transports.memory import MemoryTransport

            class Good(MemoryTransport):
                name = "good"

            class Abstract(BaseTransport):
                name = "abstract"

                def _close(self):
                    pass

            class Old(MemoryTransport):
                name = "old"
                api_version = 0

            class NoName(MemoryTransport):
                name = None

            NOT_A_CLASS = 42

            class NotATransport:
                name = "plain"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_third_party_dotted_path(plugin_module: str) -> None:
    cls = get_transport_class(f"{plugin_module}.Good")
    assert cls.__name__ == "Good" and issubclass(cls, MemoryTransport)


@pytest.mark.parametrize(
    ("attr", "words"),
    [
        ("Missing", "Cannot import transport"),
        ("NOT_A_CLASS", "which is not a cqrs_core BaseTransport subclass"),
        ("NotATransport", "which is not a cqrs_core BaseTransport subclass"),
        ("Abstract", "is abstract; it must implement: _consume, _publish."),
        (
            "Old",
            "implements transport API v0, but this cqrs-core speaks v1: upgrade the transport.",
        ),
        ("NoName", "has no `name` class attribute"),
    ],
)
def test_invalid_dotted_targets(plugin_module: str, attr: str, words: str) -> None:
    spec = f"{plugin_module}:{attr}"
    with pytest.raises(TransportLoadError) as info:
        get_transport_class(spec)
    assert spec in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "spec",
    [
        "no_such_module_for_cqrs.Transport",
        "cqrs_core.transports.memory.NoSuchClass",
        "cqrs_core.transports.memory:NoSuchClass",
        "cqrs_core.transports.nope:MemoryTransport",
    ],
)
def test_broken_dotted_path(spec: str) -> None:
    with pytest.raises(TransportLoadError, match="Cannot import transport") as info:
        get_transport_class(spec)
    assert repr(spec) in str(info.value)
    assert isinstance(info.value, ImportError)


def test_base_class_itself_is_abstract() -> None:
    with pytest.raises(
        TransportLoadError, match="abstract; it must implement: _close, _consume, _publish"
    ):
        get_transport_class("cqrs_core.transports.base.BaseTransport")


def test_transport_names_are_validated_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="name must match"):

        class Bad(MemoryTransport):
            name = "Bad-Name"


# -- API version ---------------------------------------------------------------------------


def test_newer_api_version_says_upgrade_cqrs_core() -> None:
    with pytest.raises(TransportLoadError) as info:
        register_transport(Future)
    message = str(info.value)
    assert f"implements transport API v{TRANSPORT_API_VERSION + 1}" in message
    assert "upgrade cqrs-core" in message
    with pytest.raises(TransportNotFound):
        get_transport_class("future")


def test_older_api_version_from_entry_point_names_the_distribution(
    fake_entry_points: Callable[..., None],
) -> None:
    fake_entry_points(
        FakeEntryPoint("ancient", "cqrs_ancient:Ancient", dist("cqrs-ancient", "0.1"), Ancient)
    )
    with pytest.raises(TransportLoadError) as info:
        get_transport_class("ancient")
    message = str(info.value)
    assert "cqrs_ancient:Ancient (cqrs-ancient 0.1)" in message
    assert "upgrade cqrs-ancient." in message


# -- entry points --------------------------------------------------------------------------


def test_entry_point_is_loaded_and_checked(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(FakeEntryPoint("intest", "x:InTest", dist("cqrs-intest"), InTest))
    assert get_transport_class("intest") is InTest


def test_entry_point_that_fails_to_import_says_how_to_reinstall(
    fake_entry_points: Callable[..., None],
) -> None:
    broken = ImportError("No module named 'pika'")
    fake_entry_points(FakeEntryPoint("rabbitmq", "x:Y", dist("cqrs-rabbitmq", "1.2"), broken))
    with pytest.raises(TransportLoadError) as info:
        get_transport_class("rabbitmq")
    message = str(info.value)
    assert "from cqrs-rabbitmq 1.2 failed to import: No module named 'pika'" in message
    assert "pip install --force-reinstall cqrs-rabbitmq" in message
    assert info.value.__cause__ is broken


def test_entry_point_name_must_match_class_name(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(FakeEntryPoint("other", "x:InTest", dist("cqrs-other"), InTest))
    with pytest.raises(TransportLoadError, match="registered as 'other' but its class says"):
        get_transport_class("other")


def test_duplicate_names_across_distributions_name_both(
    fake_entry_points: Callable[..., None],
) -> None:
    fake_entry_points(
        FakeEntryPoint("kafka", "cqrs_kafka:KafkaTransport", dist("cqrs-kafka", "1.0")),
        FakeEntryPoint("kafka", "other_kafka:Transport", dist("other-kafka", "2.0")),
    )
    with pytest.raises(TransportLoadError) as info:
        available_transports()
    message = str(info.value)
    assert "'kafka' is claimed by both cqrs-kafka 1.0 and other-kafka 2.0" in message
    assert "uninstall one of them" in message


def test_same_entry_point_seen_twice_is_not_a_conflict(
    fake_entry_points: Callable[..., None],
) -> None:
    same = FakeEntryPoint("intest", "x:InTest", dist("cqrs-intest"), InTest)
    fake_entry_points(same, dataclasses.replace(same))
    assert list(available_transports()) == ["intest"]


def test_listing_is_cached(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(real_memory_ep())
    assert available_transports() is available_transports()


# -- in-process registration ---------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[type[InTest]]:
    assert register_transport(InTest) is InTest
    yield InTest
    unregister_transport("intest")


def test_register_transport(registered: type[InTest]) -> None:
    assert get_transport_class("intest") is registered
    with pytest.raises(TransportNotFound) as info:
        get_transport_class("intset")
    assert "Did you mean 'intest'?" in str(info.value)
    unregister_transport("intest")
    with pytest.raises(TransportNotFound):
        get_transport_class("intest")
    unregister_transport("intest")  # idempotent


def test_registration_checks_the_class() -> None:
    with pytest.raises(TransportLoadError, match="not a cqrs_core BaseTransport subclass"):
        register_transport(object)  # type: ignore[arg-type]


# -- python -m cqrs_core transports --------------------------------------------------------


def test_cli_check_reports_each_transport(
    fake_entry_points: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_entry_points(real_memory_ep())
    assert main(["transports", "--check"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[0] == "memory" and line.endswith(f"{MEMORY_VALUE}  ok")
    broken = FakeEntryPoint("broken", "x:Y", dist("cqrs-broken"), ImportError("gone"))
    fake_entry_points(real_memory_ep(), broken)
    assert main(["transports", "--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("broken") and "ERROR: Transport 'broken'" in lines[0]
    assert lines[1].endswith("ok")


def test_cli_listing_does_not_load(
    fake_entry_points: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_entry_points(FakeEntryPoint("broken", "x:Y", dist("cqrs-broken"), ImportError("gone")))
    assert main(["transports"]) == 0
    assert capsys.readouterr().out.split() == ["broken", "cqrs-broken", "1.0", "x:Y"]
    fake_entry_points()
    assert main(["transports"]) == 0
    assert capsys.readouterr().out.strip() == "no transports installed"


def test_cli_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["bogus"]) == 2
    assert "usage: python -m cqrs_core transports [--check]" in capsys.readouterr().err


def test_cli_subprocess_check() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cqrs_core", "transports", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.splitlines()
    memory = [line for line in lines if line.split()[0] == "memory"]
    assert len(memory) == 1 and memory[0].endswith("  ok"), done.stdout
    # With only cqrs-core installed this is exit 0; where other transports are installed, a
    # broken one must turn the exit code to 1 (and show up as ERROR in the listing).
    errors = [line for line in lines if "ERROR" in line]
    assert done.returncode == (1 if errors else 0), done.stdout + done.stderr
