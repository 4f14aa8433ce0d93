"""A studio settings file (JSON in the data dir): read without losing it, written whole.

A file that cannot be read (a hand edit cut short, a stray byte) gives the built-in values with a log line naming
it, and the next save moves it aside to ``NAME.bad`` (``NAME.bad.2``, ...) before writing a new one, so what it
held can be recovered. The key file is moved aside the same way (:mod:`masuka.key_store`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_TOLD: set[tuple[Path, int]] = set()  # unreadable files (by path and change time) a log line named already


def json_problem(path: Path) -> tuple[Any, str | None]:
    """The JSON value in ``path`` (None when there is no file), or what is wrong with the file, never quoting it."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except ValueError:
        return None, "it is not valid JSON"
    except OSError as error:
        return None, error.strerror or type(error).__name__


def load_settings(path: Path) -> dict[str, Any]:
    """The JSON object saved in ``path``; {} when there is none or it cannot be read (logged once per change)."""
    value, problem = _saved(path)
    if problem:
        told = (path, _changed(path))
        if told not in _TOLD:
            _TOLD.add(told)
            log.warning("the settings file %s cannot be read (%s): the built-in values serve until it is repaired, "
                        "or the next save moves it aside to %s.bad", path, problem, path.name)
        return {}
    return value or {}


def save_settings(path: Path, value: dict[str, Any]) -> Path | None:
    """Write ``value`` to ``path`` whole (a reader never sees half a file), first moving an unreadable file there
    aside; returns where it went (None when there was nothing to move)."""
    problem = _saved(path)[1]
    aside = move_aside(path, problem, "settings file") if problem else None
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(partial, path)
    return aside


def move_aside(path: Path, problem: str, what: str) -> Path:
    """Rename the unreadable file at ``path`` to a free ``NAME.bad[.N]``; logged without any of its content."""
    aside, number = path.with_name(f"{path.name}.bad"), 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.bad.{number}")
    os.replace(path, aside)
    log.warning("the %s %s could not be read (%s): moved to %s, a new one is started", what, path, problem,
                aside.name)
    return aside


def _saved(path: Path) -> tuple[Any, str | None]:
    """:func:`json_problem`, a value other than a JSON object counted as a problem."""
    value, problem = json_problem(path)
    if problem is None and value is not None and not isinstance(value, dict):
        return None, "it is not a JSON object"
    return value, problem


def _changed(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
