"""Export a dataset to a trainer's folder layout, or to a zip of it for download."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from masuka.datasets.formats import DEFAULT_REPEATS, FORMATS, write_layout, zip_folder
from masuka.datasets.library import dataset_images, exports_dir, final_caption, find_dataset
from masuka.errors import InvalidInput, as_disk_full, reason
from masuka.studio import Studio

#: uncaptioned images named in a kohya export's refusal
SHOWN = 3


def export_dataset(studio: Studio, ref: str | int, owner: str, fmt: str, out_dir: str | Path | None = None,
                   admin: bool = False, repeats: int = DEFAULT_REPEATS) -> Path:
    """Write the processed images and final captions in layout ``fmt`` (kohya: ``repeats`` per epoch).

    With ``out_dir`` (CLI) the layout goes there and the folder is returned; without it a zip is made in the
    dataset's ``exports`` folder (for download; removed when the dataset changes) and its path is returned. Either
    is built in a hidden folder of its own and renamed (into an existing empty folder: its entries moved) into
    place once whole, so a failed export leaves nothing behind and exports made at once never mix. A kohya export
    is refused while an image has no caption, as training is: sd-scripts stops at an empty caption file.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}: choose {' or '.join(FORMATS)}.")
    dataset = find_dataset(studio, ref, owner, admin)
    rows = dataset_images(studio, dataset["id"], augmented=True)
    if not rows:
        raise InvalidInput(f"Dataset {dataset['name']!r} has no images to export.")
    items = [(row["file"], row["file_name"], final_caption(row, dataset)) for row in rows]
    uncaptioned = [name for _, name, caption in items if not caption.strip()] if fmt == "kohya" else []
    if uncaptioned:
        named = ", ".join(uncaptioned[:SHOWN]) + ("…" if len(uncaptioned) > SHOWN else "")
        raise InvalidInput(f"Dataset {dataset['name']!r} has {len(uncaptioned)} image(s) without a caption "
                           f"({named}): caption them in the Datasets tab (or `dataset caption`) before a kohya "
                           "export.")
    layout: dict[str, Any] = dict(trigger=dataset["trigger"] or "", repeats=int(repeats),
                                  resolution=int((dataset["options"] or {}).get("size", 1024)))
    made: list[Path] = []  # folders above --out that the export makes, removed again when it fails
    if out_dir is None:
        target = exports_dir(studio, dataset["id"]) / f"{dataset['name'].replace(' ', '_')}-{fmt}.zip"
    else:
        target = _empty_folder(Path(out_dir).expanduser().resolve())
        made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    try:
        _build(items, fmt, target, zipped=out_dir is None, **layout)
    except OSError as error:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        why = reason(error) + (f": {error.filename}" if error.filename else "")
        raise as_disk_full(error) or InvalidInput(f"Could not export dataset {dataset['name']!r} ({why}); "
                                                  "nothing was kept.") from error
    return target


def _build(items: list[tuple[Path, str, str]], fmt: str, target: Path, zipped: bool, **layout: Any) -> None:
    """Write the layout into a hidden folder, then zip it to ``target`` or move it there: a new ``target`` is the
    hidden folder (made beside it) renamed; an existing, empty one keeps itself (its permissions, and a shell
    inside it sees the files) and the entries of the hidden folder (made inside it) move in."""
    hidden = _part_name(target, uuid.uuid4().hex[:8])
    filling = not zipped and target.is_dir()
    building = target / hidden if filling else target.with_name(hidden)
    try:
        write_layout(items, fmt, building, **layout)
        if zipped:
            zip_folder(building, target)
        elif filling:
            for entry in list(building.iterdir()):
                entry.replace(target / entry.name)
        else:
            building.replace(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _part_name(target: Path, tag: str) -> str:
    """The hidden folder an export to ``target`` is built in; ``tag``: 8 hex digits of its own."""
    return f".{target.name or 'export'}.{tag}.part"


def _is_part(target: Path, name: str) -> bool:
    """Whether ``name`` is one of :func:`_part_name`'s for ``target``."""
    tag = name[-13:-5]
    return re.fullmatch("[0-9a-f]{8}", tag) is not None and name == _part_name(target, tag)


def _empty_folder(target: Path) -> Path:
    """``target`` once it is a new or empty folder that can be made and written; else :class:`InvalidInput`."""
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{target} is a file: export into a new or empty folder.")
    if target.exists() and (entries := sorted(path.name for path in target.iterdir())):
        left = [name for name in entries if _is_part(target, name)]
        if left == entries:  # hidden, so a plain `ls` shows the folder empty; another export may still be filling it
            raise InvalidInput(f"{target} holds only {', '.join(left)}: what an export stopped part-way (or one "
                               "running now) left. Remove it once no export is running, or export into a new or "
                               "empty folder.")
        raise InvalidInput(f"{target} is not empty: export into a new or empty folder.")
    nearest = next(folder for folder in (target, *target.parents) if folder.exists())
    if not nearest.is_dir():
        raise InvalidInput(f"{target} cannot be made: {nearest} is a file. Export into a new or empty folder.")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise InvalidInput(f"{target} cannot be written: {nearest} is not writable. Export into a folder you may "
                           "write in.")
    return target
