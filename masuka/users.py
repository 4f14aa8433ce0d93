"""Several people on one studio: per-user folders (who may read which file: :mod:`masuka.access`), and whose work
may run (:func:`on_sign_in_list`; what becomes of a removed user's: :mod:`masuka.off_list`)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from masuka.config import Config
from masuka.store import LOCAL_USER

UNSAFE = re.compile(r"[^\w.\-]")
#: Folders under ``outputs/`` that hold several users' files (owned by their rows): never one user's folder, even
#: for a user named like them (:func:`user_folder_name`)
SHARED_OUTPUT_FOLDERS = frozenset({"videos", "images"})
#: why a job of a user taken off the sign-in list was cancelled
OFF_LIST = "its owner is no longer on the sign-in list"


def user_folder_name(user: str) -> str:
    """A folder name for ``user`` that cannot climb out of its parent, nor be one of :data:`SHARED_OUTPUT_FOLDERS`
    (and stays distinct when changed)."""
    name = UNSAFE.sub("_", user).strip(".")
    if name != user or name in SHARED_OUTPUT_FOLDERS:
        name = f"{name or 'user'}-{hashlib.sha1(user.encode()).hexdigest()[:8]}"
    return name


def output_dir(config: Config, user: str) -> Path:
    """Where ``user``'s images, videos and exports are written."""
    return config.outputs_dir / user_folder_name(user)


def on_sign_in_list(config: Config, owner: str) -> bool:
    """Whether ``owner``'s work may run in this studio: anyone's without sign-in, else a user on the list's, and the
    shared owner's (``local``: what a command without ``--user`` queues, and what was made before sign-in)."""
    return not config.multi_user or owner in config.users or owner == LOCAL_USER
