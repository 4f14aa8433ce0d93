"""The README names everything a user can type: commands, variables, key names and tabs."""

from __future__ import annotations

import argparse
import re

import pytest

from masuka.cli import actions_of, build_parser
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands() -> list[str]:
    """Every ``python -m masuka`` command and sub-command, as a user types it (``dataset create``)."""
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [found for name, parser in top.choices.items()
            for found in (name, *(f"{name} {action}" for action in actions_of(parser)))]


def command_table() -> dict[str, set[str]]:
    """The first column of the "Command line" section's table: each command and the actions written with it
    (``dataset create/add`` -> ``{"dataset": {"create", "add"}}``)."""
    section = README.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for cell in re.findall(r"^\| (.+?) \|", section, flags=re.MULTILINE):
        for name, actions in re.findall(r"`([a-z-]+)(?: ([a-z/-]+))?", cell):
            listed.setdefault(name, set()).update(filter(None, actions.split("/")))
    return listed


def in_table(command: str, listed: dict[str, set[str]]) -> bool:
    """Whether the :func:`command_table` ``listed`` has ``command`` (``dataset create``: in the dataset row)."""
    name, _, action = command.partition(" ")
    return name in listed and (not action or action in listed[name])


def variables() -> set[str]:
    """Every ``MASUKA_*`` variable the code reads."""
    names: set[str] = set()
    for path in [ROOT / "app.py", *(ROOT / "masuka").rglob("*.py")]:
        names |= set(re.findall(r"MASUKA_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    return names


def documented_command(command: str) -> bool:
    """``dataset create`` counts when written so, or in a group form such as ``dataset create/add``."""
    name, _, sub = command.partition(" ")
    if not sub:
        return re.search(rf"`{re.escape(name)}[ `]", README) is not None or f"masuka {name}" in README
    return (f"{name} {sub}" in README
            or re.search(rf"`{re.escape(name)} [a-z/-]*\b{re.escape(sub)}\b", README) is not None)


@pytest.mark.parametrize("command", commands())
def test_every_command_is_in_the_readme(command):
    assert documented_command(command), f"`python -m masuka {command}` is not in the README"


def test_the_command_table_lists_every_command_and_action():
    """The table a new user reads for what there is: every command, each action of a group (``queue upscale``,
    ``settings aids``, ``storage clean-tmp``) in its row."""
    listed = command_table()
    assert [command for command in commands() if not in_table(command, listed)] == []


def test_every_variable_is_in_the_readme():
    assert sorted(name for name in variables() if name not in README) == []


def test_every_key_variable_is_in_the_readme():
    from masuka.keys import services

    missing = [name for declared in services().values() for name in declared.key_env if name not in README]
    assert missing == []


def test_the_key_lists_name_every_service():
    """Settings' API-keys paragraph names each service and its key variable, and Configuration's table every name a
    key is read from: both are written by hand, so a new provider, backend or service must be added to them."""
    from masuka.keys import services

    paragraph = README.split("\n**API keys** (", 1)[1].split("the environment wins)", 1)[0]
    table = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    labels = paragraph.split("):", 1)[0]
    declared = list(services().values())
    assert [service.label for service in declared if service.label.split(" (")[0] not in labels] == []
    assert [service.key_env[0] for service in declared if f"`{service.key_env[0]}`" not in paragraph] == []
    assert [name for service in declared for name in service.key_env if f"`{name}`" not in table] == []


def test_every_tab_has_a_section():
    from masuka.ui.app import TABS

    headings = " ".join(re.findall(r"^#+ (.+)$", README, flags=re.MULTILINE))
    assert [label for label, _ in TABS if label not in headings] == []
