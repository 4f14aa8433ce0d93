"""The README names everything a user can type: commands, variables, key names and tabs."""

from __future__ import annotations

import argparse
import re

import pytest

from masuka.cli import build_parser
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands() -> list[str]:
    """Every ``python -m masuka`` command and sub-command, as a user types it (``dataset create``)."""
    found = []
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in top.choices.items():
        found.append(name)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [f"{name} {sub}" for sub in action.choices]
            elif action.dest == "action" and action.choices:
                found += [f"{name} {choice}" for choice in action.choices]
    return found


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


def test_every_variable_is_in_the_readme():
    assert sorted(name for name in variables() if name not in README) == []


def test_every_key_variable_is_in_the_readme():
    from masuka.keys import services

    missing = [name for declared in services().values() for name in declared.key_env if name not in README]
    assert missing == []


def test_every_tab_has_a_section():
    from masuka.ui.app import TABS

    headings = " ".join(re.findall(r"^#+ (.+)$", README, flags=re.MULTILINE))
    assert [label for label, _ in TABS if label not in headings] == []
