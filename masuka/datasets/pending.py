"""Where an "add images" writes its files before they are recorded, and how they take their place.

Each add writes into its own pending folders (``datasets/<id>/originals|processed/.adding-<token>``) and moves each
file up into place right after the transaction that records its row commits, so an add cut off part-way leaves no
file under a name that looks kept: :func:`settle` moves the files whose rows were recorded and leaves the rest for
the caller to remove (the add on its way out; ``masuka.disk.clean_leftovers`` for a killed add's folders).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from masuka.studio import Studio

#: how the folders an add writes its files in before they are recorded start (``originals/.adding-<token>``)
PENDING = ".adding-"


def pending_folders(studio: Studio) -> list[Path]:
    """Every pending folder of every dataset (a live add's, or one a killed add left)."""
    return [folder for area in ("originals", "processed")
            for folder in studio.config.datasets_dir.glob(f"*/{area}/{PENDING}*")
            if folder.is_dir() and not folder.is_symlink()]


def kept(pending: Path) -> Path:
    """Where a file written in a pending folder goes once its row is recorded: the same name in the folder above."""
    return pending.parent.parent / pending.name


def recorded(studio: Studio, path: Path) -> bool:
    """Whether a row of a dataset's images names ``path`` (as its original or processed file)."""
    stored = studio.config.relative(path)
    return bool(studio.store.find("dataset_images", "processed_path = ? or original_path = ?", [stored, stored],
                                  limit=1))


def settle(studio: Studio, folder: Path) -> None:
    """Move each file of the pending ``folder`` whose row is recorded to its place, as the add would have; the files
    no row records stay (the caller removes the folder). Used by the add itself on its way out (Stop, Ctrl-C, an
    error between a row and its moves) and by ``masuka.disk.clean_leftovers`` for an add that was killed. Nothing
    when the folder is gone."""
    try:
        paths = list(folder.iterdir())
    except OSError:  # gone (its dataset deleted, the add ended) or not a folder: nothing to settle
        return
    for path in paths:
        final = kept(path)
        if path.is_file() and not final.exists() and recorded(studio, final):
            with contextlib.suppress(FileNotFoundError):  # gone meanwhile, its dataset with it
                os.replace(path, final)
                if not recorded(studio, final):  # its image deleted meanwhile (the row goes before the files)
                    final.unlink(missing_ok=True)
