"""What unfinished work uses: a LoRA, or a training run's checkpoints and LoRAs, may not be deleted while queued or
running work (a queue job, a background job, a generation, an image request waiting for the GPU) names it.

An image request holds its LoRA files (:func:`lora_files_in_use`) from its checks to its end, so one still waiting
for the GPU, before it has a ``generations`` row, counts too, whichever process on the data dir makes it (the app,
the CLI); a deletion checks and removes under the same lock (:func:`while_unused`, :meth:`Holds.deleting
<masuka.holds.Holds.deleting>`), so a request never takes a file that is being deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.holds import Holds
from masuka.loras.files import deleted
from masuka.store import LOCAL_USER, QUEUE_UNFINISHED, UNFINISHED
from masuka.studio import Studio

_HOLDS: Holds[Path] = Holds("lora", Path)  # LoRA files (resolved) of the image requests being made


def lora_files_in_use(studio: Studio, files: Iterable[Path]) -> AbstractContextManager[None]:
    """Hold ``files`` (the LoRA files of a checked image request) as used until the block ends: deleting them is
    refused meanwhile. :class:`InvalidInput` when one was deleted since the request was checked."""
    return _HOLDS.holding(studio.store, (Path(path).resolve() for path in files), check=_still_there)


def _still_there(path: Path) -> None:
    if not path.is_file():
        raise deleted(path.stem)


@contextmanager
def while_unused(studio: Studio, uses: Iterable[tuple[str, Path, list[tuple[str, str]]]]) -> Iterator[None]:
    """Refuse with :class:`InvalidInput` when unfinished work uses one of ``uses`` — (``what``, ``files``,
    ``names``): ``files`` a folder or one file, ``names`` the (library name, owner) pairs a LoRA is called by (only
    the owner's work calls it so, anyone's for a shared LoRA), in a LoRA list or a prompt's ``<lora:name:…>`` tag,
    ``what`` the thing to delete in the message — else run the block (the deletion) before any new image request
    may take those files."""
    with _HOLDS.deleting(studio.store) as held:
        for what, files, names in uses:
            _refuse(studio, what, files, names, held)
        yield


def _refuse(studio: Studio, what: str, files: Path, names: list[tuple[str, str]], held: set[Path]) -> None:
    later = "Let it finish or stop it first."
    target = files.resolve()
    if any(path.is_relative_to(target) for path in held):
        raise InvalidInput(f"{what} cannot be deleted yet: an image request (waiting for the GPU or generating) "
                           f"uses it. {later}")
    where = studio.config.relative(files)
    needles = [(f"{where}/" if files.is_dir() else where, None),
               *((json.dumps(name, ensure_ascii=False), None if owner == LOCAL_USER else owner)
                 for name, owner in names)]
    for table, column, statuses in (("queue", "params", QUEUE_UNFINISHED), ("jobs", "params", UNFINISHED),
                                    ("generations", "loras", UNFINISHED)):
        marks = ", ".join("?" * len(statuses))
        for needle, owner in needles:
            using = studio.store.find(table, f"status in ({marks}) and instr({column}, ?) > 0"
                                      + (" and owner = ?" if owner else ""),
                                      [*statuses, needle, *([owner] if owner else [])], limit=1)
            if using:
                raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {using[0]['id']}) uses "
                                   f"it. {later}")
        if (naming := _naming_file(studio, table, column, statuses, target)) is not None:
            raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {naming}) uses it. {later}")
        if table != "generations":  # whose LoRA list holds the tags' LoRAs already
            for name, owner in names:
                if (tagging := _tagging(studio, table, statuses, name, owner)) is not None:
                    raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {tagging}) calls "
                                       f"LoRA {name!r} in its prompt. {later}")


def _naming_file(studio: Studio, table: str, column: str, statuses: tuple[str, ...], target: Path) -> int | None:
    """The id of an unfinished row of ``table`` whose stored ``column`` names a ``.safetensors`` file at or under
    ``target`` (resolved) by another path than the data-dir-relative one: with ``..``, through a symlink, absolute."""
    marks = ", ".join("?" * len(statuses))
    rows = studio.store.find(table, f"status in ({marks}) and instr(lower({column}), '.safetensors') > 0",
                             list(statuses))
    for row in rows:
        for text in _texts(row[column]):
            if text.lower().endswith(".safetensors") and _resolved(studio, text).is_relative_to(target):
                return row["id"]
    return None


def _texts(value: object) -> Iterator[str]:
    """Every text in a stored JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _texts(item)


def _resolved(studio: Studio, text: str) -> Path:
    """``text`` as the file it names (a relative path from the data dir); an empty path when it names none."""
    try:
        return studio.config.absolute(Path(text.strip()).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL
        return Path()


def _tagging(studio: Studio, table: str, statuses: tuple[str, ...], name: str, owner: str) -> int | None:
    """The id of an unfinished row of ``table`` whose stored prompts call ``name`` with a ``<lora:name…>`` tag (in
    every form A1111 reads: ``<lora:name>``, ``<lora:name:0.8>``...), by ``owner`` unless the LoRA is shared."""
    tag = re.compile(r"<lora:\s*" + re.escape(json.dumps(name, ensure_ascii=False)[1:-1]) + r"\s*[:>]")
    marks = ", ".join("?" * len(statuses))
    mine = owner != LOCAL_USER
    rows = studio.store.find(table, f"status in ({marks}) and instr(params, '<lora:') > 0"
                             + (" and owner = ?" if mine else ""), [*statuses, *([owner] if mine else [])])
    return next((row["id"] for row in rows if tag.search(json.dumps(row["params"], ensure_ascii=False))), None)
