"""Disk use per area of the data dir (and the model cache), and clean-up actions that only remove leftovers."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from masuka.access import SHARED, file_owner
from masuka.store import Store
from masuka.studio import Studio
from masuka.users import user_folder_name

TMP_AGE_S = 3600
FAILED = ("failed", "cancelled", "interrupted")
IMAGE_SUFFIXES = {".png", ".jpg", ".webp"}


def areas(studio: Studio) -> dict[str, Path]:
    from masuka.models.hub import hub_cache_dir

    config = studio.config
    return {"outputs": config.outputs_dir, "loras": config.loras_dir, "datasets": config.datasets_dir,
            "runs": config.runs_dir, "characters": config.characters_dir, "models cache": hub_cache_dir(),
            "tmp": config.tmp_dir}


#: the areas whose files belong to users (:func:`masuka.access.file_owner` names whose)
USERS_AREAS = ("outputs", "loras", "datasets", "runs", "characters")
#: those of them with a folder per user (:func:`masuka.users.user_folder_name`)
FOLDERED_AREAS = ("outputs", "loras")
#: how :func:`usage_by_user` names files of no user: everyone's (a shared LoRA, a base model), or nobody's
SHARED_FILES, NO_OWNER = "(shared)", "(no owner)"


def usage(studio: Studio) -> list[dict]:
    """Bytes and files per area."""
    rows = []
    for name, root in areas(studio).items():
        files = _files(root)
        rows.append({"area": name, "path": str(root), "files": len(files),
                     "bytes": sum(p.stat().st_size for p in files)})
    return rows


def usage_by_user(studio: Studio) -> list[dict]:
    """Bytes and files per owner in the areas that hold users' files (:data:`USERS_AREAS`), owners named as access
    names them (:func:`~masuka.access.file_owner`: a user taken off the sign-in list too, by the rows of their
    files), :data:`SHARED_FILES` and :data:`NO_OWNER` for the rest; largest first."""
    folders = areas(studio)
    by_folder = _owners_by_folder(studio)
    totals: dict[str, list[int]] = {}
    for area in USERS_AREAS:
        for path in _files(folders[area]):
            owner = file_owner(studio, path)
            if owner is None and area in FOLDERED_AREAS:  # a file of no row in the folder of a former user
                inside = path.relative_to(folders[area]).parts
                owner = by_folder.get(inside[0]) if len(inside) > 1 else None
            name = SHARED_FILES if owner is SHARED else owner if isinstance(owner, str) else NO_OWNER
            total = totals.setdefault(name, [0, 0])
            total[0], total[1] = total[0] + 1, total[1] + path.stat().st_size
    rows = [{"user": name, "files": files, "bytes": size} for name, (files, size) in totals.items()]
    return sorted(rows, key=lambda row: (-row["bytes"], row["user"]))


def _owners_by_folder(studio: Studio) -> dict[str, str]:
    """Each owner of rows, by the name of their folder in ``outputs/`` and ``loras/``: on the sign-in list or not."""
    return {user_folder_name(owner): owner for owner in studio.store.owned_rows()}


def _files(root: Path) -> list[Path]:
    """The files under ``root`` (links left out: what they point at is counted where it lies)."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()] if root.is_dir() else []


def clean_tmp(studio: Studio) -> tuple[int, int]:
    """Remove what is older than an hour in ``tmp/`` (newer files may belong to an import in progress)."""
    cutoff = time.time() - TMP_AGE_S
    removed = freed = 0
    for path in list(studio.config.tmp_dir.iterdir()):
        if _modified(path) > cutoff:
            continue
        size = _size(path)
        _remove(path)
        removed, freed = removed + 1, freed + size
    return removed, freed


def still_used(store: Store, path: Path) -> bool:
    """Whether any history row or queued job (of any status) still points at an input picture: a batch, an entry
    reused with the same picture and the queue share one copy."""
    needle = f"{path.parent.name}/{path.name}"
    return any(store.find(table, "instr(params, ?) > 0", [needle], limit=1)
               for table in ("generations", "jobs", "queue"))


def clean_leftovers(studio: Studio) -> tuple[int, int]:
    """Remove files of failed generations, and half-written ``*.part`` files and folders (a checkpoint's), the
    staging folders killed dataset imports left in dataset folders (they unpack into ``tmp/`` now), the files a
    killed "add images" left unrecorded in its pending folders (:func:`settle_pending`), exported zips
    (of generations and of datasets),
    images in the image folders that no generation row records, copies of input pictures that no row or queued job
    points at (a request refused before its work ran) and the A1111 extras upscales older versions kept, once they
    are older than an hour (newer ones may belong to a download, import or generation in progress)."""
    config = studio.config
    recorded, failed = set(), []
    for row in studio.store.find("generations", "output_path is not null"):
        recorded.add(config.absolute(row["output_path"]).resolve())
        if row["status"] in FAILED:
            failed.append(config.absolute(row["output_path"]))
    unsure = [path for root in (config.outputs_dir, config.loras_dir, config.runs_dir, config.datasets_dir)
              for path in root.rglob("*.part")]
    unsure += config.datasets_dir.glob("*/staging-*")
    unsure += (path for root in (config.outputs_dir, config.datasets_dir) for path in root.glob("*/exports/*.zip"))
    unsure += (p for p in config.outputs_dir.glob("*/images/*/*") if p.suffix in IMAGE_SUFFIXES
               and p.resolve() not in recorded)
    unsure += config.outputs_dir.glob("*/extras/*")
    cutoff = time.time() - TMP_AGE_S
    inputs = (p for p in config.outputs_dir.glob("*/inputs/*")
              if _modified(p) < cutoff and not still_used(studio.store, p))
    removed = freed = 0
    for path in {*failed, *(p for p in unsure if _modified(p) < cutoff), *inputs, *settle_pending(studio, cutoff)}:
        if path.exists():
            size = _size(path)
            _remove(path)
            removed, freed = removed + 1, freed + size
    return removed, freed


def settle_pending(studio: Studio, cutoff: float) -> list[Path]:
    """The pending folders of dataset adds (:mod:`masuka.datasets.pending`) where nothing was written since
    ``cutoff``, left by an add that was killed: a file of one whose row was recorded (killed between the row and
    the move) is moved to its place first; the folders are returned, to be removed with what is left in them (files
    no row records). A folder that goes meanwhile (its add ended) is none of them."""
    from masuka.datasets.pending import pending_folders, settle

    stale = [folder for folder in pending_folders(studio) if _newest(folder) < cutoff]
    for folder in stale:
        settle(studio, folder)
    return stale


def _newest(folder: Path) -> float:
    """When anything in ``folder`` (or the folder itself: a file added or moved out) was last written; +inf when it
    is gone (its add ended meanwhile: nothing stale)."""
    try:
        paths = list(folder.iterdir())
    except OSError:
        return float("inf")
    return max([_modified(folder), *(_modified(path) for path in paths)])


def _modified(path: Path) -> float:
    """When ``path`` was last written; +inf when it is gone (nothing to remove)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else \
        path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
