"""Several people on one studio: per-user output folders and who may read which output file.

Each user's outputs live under ``outputs/<user>/``. A file there belongs to the user the folder is named
after; any other file under ``outputs/`` belongs to the user of the generation row that recorded it. Only the
owner and admins may read it (single-user mode: everyone is the owner).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from masuka.config import Config
from masuka.studio import Studio

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


def file_owner(studio: Studio, path: str | Path) -> str | None:
    """Whose file this is, when it lies under the outputs or datasets folder; None when nobody can be named."""
    config = studio.config
    resolved = Path(path).resolve()
    datasets = config.datasets_dir.resolve()
    if resolved.is_relative_to(datasets) and resolved != datasets:
        top = resolved.relative_to(datasets).parts[0]
        row = studio.store.get("datasets", int(top)) if top.isdigit() else None
        return row["owner"] if row else None
    outputs = config.outputs_dir.resolve()
    if not resolved.is_relative_to(outputs) or resolved == outputs:
        return None
    top = resolved.relative_to(outputs).parts[0]
    for user in config.users or {}:
        if user_folder_name(user) == top:
            return user
    rows = studio.store.find("generations", "output_path = ?", [config.relative(resolved)], limit=1)
    return rows[0]["owner"] if rows else None


def may_read(studio: Studio, user: str | None, path: str | Path) -> bool:
    """Whether ``user`` may fetch ``path``: outside ``outputs/`` and ``datasets/`` the web server's rules apply."""
    config = studio.config
    if not config.multi_user:
        return True
    if user is None:
        return False
    if config.is_admin(user):
        return True
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in (config.outputs_dir, config.datasets_dir)):
        return True
    return file_owner(studio, resolved) == user
