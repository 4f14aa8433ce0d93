"""Export a dataset to a trainer's folder layout, or to a zip of it for download."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from masuka.datasets.formats import DEFAULT_REPEATS, FORMATS, write_layout, zip_folder
from masuka.datasets.library import dataset_dir, dataset_images, final_caption, find_dataset
from masuka.errors import InvalidInput
from masuka.studio import Studio


def export_dataset(studio: Studio, ref: str | int, owner: str, fmt: str, out_dir: str | Path | None = None,
                   admin: bool = False, repeats: int = DEFAULT_REPEATS) -> Path:
    """Write the processed images and final captions in layout ``fmt`` (kohya: ``repeats`` per epoch).

    With ``out_dir`` (CLI) the layout goes there and the folder is returned; without it a zip is made in the
    dataset's ``exports`` folder (for download) and its path is returned.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}: choose {' or '.join(FORMATS)}.")
    dataset = find_dataset(studio, ref, owner, admin)
    rows = dataset_images(studio, dataset["id"], augmented=True)
    if not rows:
        raise InvalidInput(f"Dataset {dataset['name']!r} has no images to export.")
    items = [(row["file"], row["file_name"], final_caption(row, dataset)) for row in rows]
    layout: dict[str, Any] = dict(trigger=dataset["trigger"] or "", repeats=int(repeats),
                                  resolution=int((dataset["options"] or {}).get("size", 1024)))
    if out_dir is not None:
        target = _empty_folder(Path(out_dir).expanduser())
        write_layout(items, fmt, target, **layout)
        return target
    exports = dataset_dir(studio, dataset["id"]) / "exports"
    folder = exports / f"{dataset['name']}-{fmt}"
    shutil.rmtree(folder, ignore_errors=True)
    write_layout(items, fmt, folder, **layout)
    try:
        return zip_folder(folder, exports / f"{dataset['name'].replace(' ', '_')}-{fmt}.zip")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _empty_folder(target: Path) -> Path:
    """``target`` once it is a new or empty folder that can be made and written; else :class:`InvalidInput`."""
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{target} is a file: export into a new or empty folder.")
    if target.exists() and any(target.iterdir()):
        raise InvalidInput(f"{target} is not empty: export into a new or empty folder.")
    nearest = next(folder for folder in (target, *target.parents) if folder.exists())
    if not nearest.is_dir():
        raise InvalidInput(f"{target} cannot be made: {nearest} is a file. Export into a new or empty folder.")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise InvalidInput(f"{target} cannot be written: {nearest} is not writable. Export into a folder you may "
                           "write in.")
    return target
