"""Every management command of `dj_cqrs`, and every flag of it, is documented in docs/commands.md.

Commands come from the modules in `dj_cqrs/management/commands/`, flags from each command's
own parser (`load_command_class(...).create_parser(...)`), so a new command or flag cannot ship
undocumented. A command is documented under a heading naming it (`### \\`cqrs_x\\``); each of its
flags, and each choice of a positional argument (`dump`, `retry`...), must appear in backticks
in that section.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from docs_support import headings

django = pytest.importorskip("django")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "commands.md"
COMMANDS = ROOT / "packages" / "cqrs-django" / "src" / "dj_cqrs" / "management" / "commands"
_DJANGO_OPTIONS = {
    "-h",
    "--help",
    "--version",
    "-v",
    "--verbosity",
    "--settings",
    "--pythonpath",
    "--traceback",
    "--no-color",
    "--force-color",
    "--skip-checks",
}
"""Options every Django command has: documented by Django."""

NAMES = sorted(p.stem for p in COMMANDS.glob("cqrs_*.py"))


def sections() -> dict[str, str]:
    """Text under each heading (nested headings included), by every `name` the heading quotes."""
    found: dict[str, str] = {}
    for heading, body in headings(DOC.read_text(encoding="utf-8")):
        for name in re.findall(r"`([^`]+)`", heading):
            found.setdefault(name, "\n".join(body))
    return found


def parser_of(name: str) -> argparse.ArgumentParser:
    from django.core.management import load_command_class

    return load_command_class("dj_cqrs", name).create_parser("manage.py", name)


def flags_and_choices(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found.append(sub_name)
                found.extend(flags_and_choices(sub))
        elif action.option_strings:
            found.extend(o for o in action.option_strings if o not in _DJANGO_OPTIONS)
        elif action.choices:
            found.extend(str(choice) for choice in action.choices)
    return list(dict.fromkeys(found))


def test_the_commands_folder_is_found() -> None:
    assert "cqrs_consume" in NAMES and "cqrs_bulk_load" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_command_and_its_flags_are_documented(name: str) -> None:
    by_heading = sections()
    if name not in by_heading:
        pytest.fail(f"docs/commands.md has no heading for `{name}`: add `### \\`{name}\\``.")
    text = by_heading[name]
    missing = [
        flag
        for flag in flags_and_choices(parser_of(name))
        if not re.search(rf"`[^`\n]*(?<![\w-]){re.escape(flag)}(?![\w-])[^`\n]*`", text)
    ]
    assert not missing, f"docs/commands.md, section `{name}`, does not mention {missing}"
