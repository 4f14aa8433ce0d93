"""What unfinished work uses: a LoRA, or a training run's checkpoints and LoRAs, may not be deleted while queued or
running work (a queue job, a background job, a generation, an image request waiting for the GPU) names it.

An image request holds its LoRA files (:func:`lora_files_in_use`) from its checks to its end, so one still waiting
for the GPU, before it has a ``generations`` row, counts too, whichever process on the data dir makes it (the app,
the CLI); a deletion checks and removes under the same lock (:func:`while_unused`, :meth:`Holds.deleting
<masuka.holds.Holds.deleting>`), so a request never takes a file that is being deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.holds import Holds
from masuka.loras.files import deleted
from masuka.loras.tags import split_lora_tags
from masuka.store import LOCAL_USER, QUEUE_UNFINISHED, UNFINISHED
from masuka.studio import Studio
from masuka.validation import composed

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
    needle = f"{where}/" if files.is_dir() else where  # its path as stored; a name only where work calls it so
    for table, column, statuses in (("queue", "params", QUEUE_UNFINISHED), ("jobs", "params", UNFINISHED),
                                    ("generations", "loras", UNFINISHED)):
        marks = ", ".join("?" * len(statuses))
        using = studio.store.find(table, f"status in ({marks}) and instr({column}, ?) > 0", [*statuses, needle],
                                  limit=1)
        if using:
            raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {using[0]['id']}) uses "
                               f"it. {later}")
        if (naming := _naming_file(studio, table, column, statuses, target)) is not None:
            raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {naming}) uses it. {later}")
        if table != "generations":  # whose LoRA list holds the tags' LoRAs already
            for name, owner in names:
                if (tagging := _tagging(studio, table, statuses, name, owner)) is not None:
                    raise InvalidInput(f"{what} cannot be deleted yet: unfinished work ({table} {tagging}) calls "
                                       f"LoRA {name!r} in its prompt or LoRA list. {later}")


def lora_ref_file(config: Config, ref: str) -> Path:
    """The file a LoRA reference that is not a library name names, as generation reads it: an absolute path as it
    is; else the LoRA folder's ``ref`` (``.safetensors`` added when missing) when that exists or ``ref`` names no
    folder; else the data dir's ``ref``."""
    ref = ref.strip()
    candidate = Path(ref).expanduser()
    if candidate.is_absolute():
        return candidate
    library = config.loras_dir / (ref if ref.endswith(".safetensors") else ref + ".safetensors")
    return library if library.exists() or "/" not in ref else config.data_dir / ref


def _naming_file(studio: Studio, table: str, column: str, statuses: tuple[str, ...], target: Path) -> int | None:
    """The id of an unfinished row of ``table`` whose stored ``column`` names a file at or under ``target``
    (resolved) by a LoRA reference (:func:`_refs`) in any form generation reads (:func:`lora_ref_file`): a path in
    the LoRA folder or the data dir, with or without ``.safetensors``, with ``..``, through a symlink, absolute."""
    marks = ", ".join("?" * len(statuses))
    for row in studio.store.find(table, f"status in ({marks})", list(statuses)):
        if any(_resolved(studio, ref).is_relative_to(target) for ref in _refs(row[column], column == "loras")):
            return row["id"]
    return None


def _refs(value: object, listed: bool) -> Iterator[str]:
    """The LoRA references in a stored JSON value: every text of a LoRA list (``listed``: under a ``loras`` key),
    every ``<lora:ref:…>`` tag's reference, and any other text that names a ``.safetensors`` file."""
    if isinstance(value, str):
        if listed or value.lower().endswith(".safetensors"):
            yield value
        if "<lora:" in value:
            yield from (ref for ref, _ in split_lora_tags(value)[1])
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _refs(item, listed or key == "loras")
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item, listed)


def _resolved(studio: Studio, ref: str) -> Path:
    """The file ``ref`` names (resolved); an empty path when it names none."""
    if not ref.strip():
        return Path()
    try:
        return lora_ref_file(studio.config, ref).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL
        return Path()


def _tagging(studio: Studio, table: str, statuses: tuple[str, ...], name: str, owner: str) -> int | None:
    """The id of an unfinished row of ``table`` whose stored params call ``name`` in a LoRA list or a
    ``<lora:name…>`` tag (in every form A1111 reads: ``<lora:name>``, ``<lora:name:0.8>``...), compared in
    composed form (:func:`composed`), by ``owner`` unless the LoRA is shared."""
    marks = ", ".join("?" * len(statuses))
    mine = owner != LOCAL_USER
    rows = studio.store.find(table, f"status in ({marks})" + (" and owner = ?" if mine else ""),
                             [*statuses, *([owner] if mine else [])])
    wanted = composed(name)
    return next((row["id"] for row in rows if any(composed(ref) == wanted for ref in _refs(row["params"], False))),
                None)
