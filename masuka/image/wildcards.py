"""Wildcard files ``<data dir>/wildcards/<name>.txt`` (one value a line, ``#`` comments) listed, read, saved and
deleted by name, as the Settings tab does. The folder is shared by every user's prompts, so when several people
share the studio only an admin changes it; everyone may read it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from masuka.errors import InvalidInput, NotFound
from masuka.image.prompts import prompt_lines
from masuka.studio import Studio
from masuka.validation import plain_text

#: a name: letters, digits, ``_`` and ``-``, in up to four ``/``-separated parts (sub-folders)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_-]{0,63}){0,3}")
MAX_CHARS = 200_000


def list_wildcards(studio: Studio) -> list[dict]:
    """Every wildcard by name (``__name__`` in a prompt) with its number of values, sorted by name."""
    folder = studio.config.wildcards_dir
    found = []
    for path in sorted(folder.rglob("*.txt")) if folder.is_dir() else []:
        name = path.relative_to(folder).with_suffix("").as_posix()
        if NAME.fullmatch(name):
            found.append({"name": name, "values": len(prompt_lines(_read(path)))})
    return found


def read_wildcard(studio: Studio, name: str) -> str:
    """The text of wildcard ``name``."""
    path = _path(studio, name)
    if not path.is_file():
        raise NotFound(f"There is no wildcard {name!r}.")
    return _read(path)


def save_wildcard(studio: Studio, user: str, name: str, text: str) -> int:
    """Write wildcard ``name`` (created or replaced) and return its number of values."""
    _check_editor(studio, user)
    text = plain_text("the wildcard's values", text.replace("\r\n", "\n") if isinstance(text, str) else text,
                      MAX_CHARS)
    values = prompt_lines(text)
    if not values:
        raise InvalidInput("A wildcard needs at least one value: write one a line (# starts a comment).")
    path = _path(studio, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    os.replace(partial, path)
    return len(values)


def delete_wildcard(studio: Studio, user: str, name: str) -> None:
    _check_editor(studio, user)
    path = _path(studio, name)
    if not path.is_file():
        raise NotFound(f"There is no wildcard {name!r}.")
    path.unlink()


def _path(studio: Studio, name: str) -> Path:
    name = (name or "").strip().strip("_")
    if not NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a wildcard name: use letters, digits, _ and - (and / for a "
                           "sub-folder), starting with a letter or digit.")
    return studio.config.wildcards_dir / f"{name}.txt"


def _check_editor(studio: Studio, user: str) -> None:
    if studio.config.multi_user and not studio.config.is_admin(user):
        raise InvalidInput("Wildcards are shared by everyone's prompts: only an admin can change them.")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")
