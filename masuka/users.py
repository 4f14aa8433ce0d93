"""Several people on one studio: per-user folders (who may read which file: :mod:`masuka.access`)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from masuka.config import Config

UNSAFE = re.compile(r"[^\w.\-]")


def user_folder_name(user: str) -> str:
    """A folder name for ``user`` that cannot climb out of its parent (and stays distinct when changed)."""
    name = UNSAFE.sub("_", user).strip(".")
    if name != user:
        name = f"{name or 'user'}-{hashlib.sha1(user.encode()).hexdigest()[:8]}"
    return name


def output_dir(config: Config, user: str) -> Path:
    """Where ``user``'s images, videos and exports are written."""
    return config.outputs_dir / user_folder_name(user)
