"""Who may read which file: the one ownership decision every route and every input goes through.

Files under the data dir belong to someone:

- ``outputs/...``: the user of the generation row that recorded the file, else the user whose folder
  (``outputs/<user>/``) it lies in; remote videos (``outputs/videos/``) are owned by their rows only, the
  inputs kept with a video job (``outputs/videos/inputs/<job>[-<name>].<ext>``) by the owner of that job (of
  its video, once the job's entry is deleted);
- ``datasets/<id>/...``: the owner of dataset ``id``;
- ``runs/run-<id>/...``: the owner of training run ``id`` (its checkpoints, samples and LoRA);
- ``loras/...``: the owner of the LoRA row recording the file, else the user whose folder it lies in;
  a LoRA recorded for the local user (dropped into the library by whoever runs the studio) is shared;
- ``characters/<id>/...``: the owner of character ``id`` (its photos and face crops);
- ``models/``: downloaded base models, shared by everyone;
- anything else in the data dir (the database, saved keys, locks, tmp/): admins only.

Only the owner and admins may read a file; in single-user mode everyone may. Outside the data dir the
web server's own rules apply (Gradio serves only its upload cache and the folders it was given).
"""

from __future__ import annotations

import re
from pathlib import Path

from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER, row_id
from masuka.studio import Studio
from masuka.users import SHARED_OUTPUT_FOLDERS, user_folder_name

SHARED = object()  # the owner of files every signed-in user may read


#: where a video job keeps copies of its input files, under the outputs dir, each named by :func:`input_copy_name`
INPUTS_FOLDER = ("videos", "inputs")
INPUT_COPY = re.compile(r"(\d{6,})(?:-[\w-]+)?\.\w+")


def input_copy_name(job_id: int, name: str, suffix: str) -> str:
    """The file name video job ``job_id``'s input ``name`` (a request field holding a file, or ``reference-<n>``)
    is kept under: ``<job, 6 digits>-<name><suffix>``, the first frame just ``<job><suffix>``; the copy is the
    job owner's."""
    stem = f"{job_id:06d}" if name == "image" else f"{job_id:06d}-{name}"
    return f"{stem}{suffix.lower()}"


def input_copy_job(file_name: str) -> int | None:
    """The video job whose input a file named by :func:`input_copy_name` is, or None for any other name."""
    match = INPUT_COPY.fullmatch(file_name)
    return int(match.group(1)) if match else None


def resolved_path(path: str | Path, home: bool = False) -> Path | None:
    """``path`` resolved (with ``home``, ``~`` and ``~user`` expanded first), or None when it can name no file: a
    control character (a NUL, say) in it, a ``~nosuchuser``, or a path the system refuses to resolve."""
    if any(ord(char) < 32 or ord(char) == 127 for char in str(path)):
        return None
    try:
        return (Path(path).expanduser() if home else Path(path)).resolve()
    except (RuntimeError, ValueError, OSError):
        return None


def file_owner(studio: Studio, path: str | Path) -> str | None | object:
    """Whose file ``path`` is: a user name, :data:`SHARED`, or None when nobody can be named (admins only)."""
    config = studio.config
    resolved = resolved_path(path)
    if resolved is None:
        return None
    data_dir = config.data_dir.resolve()
    if not resolved.is_relative_to(data_dir):
        return SHARED
    parts = resolved.relative_to(data_dir).parts
    if len(parts) < 2:
        return None
    area, top = parts[0], parts[1]
    if area == "datasets":
        row = _row(studio, "datasets", top)
        return row["owner"] if row else None
    if area == "runs":
        row = _row(studio, "jobs", top.removeprefix("run-"))
        return row["owner"] if row and row["kind"] == "train" else None
    if area == "characters":
        row = _row(studio, "characters", top)
        return row["owner"] if row else None
    if area == "models":
        return SHARED
    if area == "loras":
        rows = studio.store.find("loras", "path = ?", [config.relative(resolved)], limit=1)
        if rows:
            return SHARED if rows[0]["owner"] == LOCAL_USER else rows[0]["owner"]
        return _user_by_folder(studio, top) if len(parts) > 2 else None
    if area == "outputs":
        rows = studio.store.find("generations", "output_path = ?", [config.relative(resolved)], limit=1)
        if rows:
            return rows[0]["owner"]
        if parts[1:-1] == INPUTS_FOLDER:  # the job's, or once its entry is deleted the video's it made
            job_id = input_copy_job(parts[-1])
            job = studio.store.get("jobs", job_id) if job_id else None
            if job is None and job_id:
                job = next(iter(studio.store.find("generations", "job_id = ? and kind = ?", [job_id, "video"],
                                                  limit=1)), None)
            return job["owner"] if job and job["kind"] == "video" else None
        return None if top in SHARED_OUTPUT_FOLDERS else _user_by_folder(studio, top)
    return None


def may_read(studio: Studio, user: str | None, path: str | Path) -> bool:
    """Whether ``user`` (None: not signed in) may read, download or use ``path``; nobody may a path that names
    no file (see :func:`resolved_path`)."""
    config = studio.config
    if resolved_path(path) is None:
        return False
    if not config.multi_user:
        return True
    if user is None:
        return False
    if config.is_admin(user):
        return True
    owner = file_owner(studio, path)
    return owner is SHARED or owner == user


def readable(studio: Studio, user: str, path: str | Path, what: str = "file") -> Path:
    """``path`` resolved, when it exists and ``user`` may read it; else one :class:`NotFound` for both cases.

    The message is the same whether the file is missing or someone else's, so it tells nothing about
    other users' files.
    """
    missing = NotFound(f"No {what} {Path(path).name!r} of yours was found.")
    resolved = resolved_path(path, home=True)
    if resolved is None or not (may_read(studio, user, resolved) and resolved.exists()):
        raise missing
    return resolved


def _row(studio: Studio, table: str, folder: str) -> dict | None:
    """The row a data-dir folder is named after (``datasets/7``), or None (a name no row can have included)."""
    number = row_id(folder)
    return studio.store.get(table, number) if number else None


def _names_a_path(text: str) -> bool:
    """Whether a model field names a folder on this computer rather than a catalog id or a Hub repo id
    (``owner/name``): written as a path, with more parts than a repo id has, or an ``x/y`` that exists relative
    to where MASUKA runs (the loaders would open that folder, not the repo)."""
    return (text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
            or ("/" in text and Path(text).exists()))


def _user_by_folder(studio: Studio, folder: str) -> str | None:
    for user in studio.config.users or {}:
        if user_folder_name(user) == folder:
            return user
    return None


def usable_model(studio: Studio, user: str, model: str, marker: str | tuple[str, ...] = "model_index.json") -> str:
    """``model`` unchanged when ``user`` may use it: a path must name a model folder they may read (one holding
    ``marker``, or one of several: a diffusers pipeline's ``model_index.json``, a transformers model's
    ``config.json``, an ONNX model's ``*.onnx``).

    For a non-admin on a shared studio, a missing folder, a folder that is no pipeline and another user's
    folder all get the same message, so the answer tells nothing about what exists on the server.
    """
    text = (model or "").strip()
    if studio.config.is_admin(user) or not _names_a_path(text):
        return model
    refused = InvalidInput(f"Model {text[:200]!r}: no model folder of yours has that path.")
    if resolved_path(text, home=True) is None:  # a NUL, a ~nosuchuser: refused as any other path that is not theirs
        raise refused
    path = Path(text).expanduser()
    markers = (marker,) if isinstance(marker, str) else marker
    if not (may_read(studio, user, path) and any(next(path.glob(name), None) for name in markers)):
        raise refused
    return model
