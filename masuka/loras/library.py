"""The LoRA library: what the LoRA pickers offer, and how a new LoRA file joins it."""

from __future__ import annotations

import re
import time
from contextlib import suppress
from pathlib import Path

from masuka.disk import TMP_AGE_S
from masuka.errors import InvalidInput
from masuka.loras.files import LoraInfo, inspect_lora, lora_hash
from masuka.loras.usage import while_unused
from masuka.store import LOCAL_USER, find_named, insert_named, is_id_text
from masuka.studio import Studio
from masuka.users import user_folder_name
from masuka.validation import composed

TAKEN = "You already have a LoRA named {!r}: choose another name."
SHARED = "A shared LoRA is named {!r} (the LoRA library offers it to everyone): choose another name."

MAX_NAME_CHARS, MAX_NAME_BYTES = 100, 200  # in UTF-8, for names of LoRA files
NAME_CHARS = re.compile(r"[\w.\-]+")


def register_lora(studio: Studio, info: LoraInfo, owner: str, source: str, job_id: int | None = None,
                  trigger: str = "", base_model: str = "") -> int:
    """Record an inspected LoRA file so every picker lists it; returns its row id (existing row if known).
    ``trigger`` and ``base_model`` (a CivitAI version's, say) replace what the file's metadata says.

    A LoRA is called by its name (the file's stem), so an owner's names are unique: a name the owner already
    gives another file is refused (:class:`InvalidInput`), unless that file is gone, and so is a name of digits
    only (:func:`check_not_a_number`). Callers choose the name before writing the file: :func:`check_name` and
    :func:`check_lora_name` (a name given), :func:`free_lora_name` (a name made up).
    """
    stored = studio.config.relative(info.path)
    row_id = _path_row(studio, stored)
    if row_id is None:
        check_not_a_number(info.name)
        for row in _named(studio, owner, info.name):
            if not studio.config.absolute(row["path"]).exists():  # its file went (with its run): the name is free
                studio.store.delete("loras", row["id"])
        try:
            return insert_named(studio.store, "loras", {
                "owner": owner, "name": info.name, "path": stored, "architecture": info.architecture,
                "base_model": base_model or info.metadata.get("masuka.base_model", ""),
                "trigger": trigger or info.trigger, "rank": info.rank, "source": source, "job_id": job_id,
                "size_bytes": info.path.stat().st_size, "metadata": info.metadata,
            }, TAKEN.format(info.name))
        except InvalidInput:  # taken by this very file if another caller recorded it meanwhile
            row_id = _path_row(studio, stored)
            if row_id is None:
                raise
    given = {field: value for field, value in (("trigger", trigger), ("base_model", base_model)) if value}
    if given:
        studio.store.update("loras", row_id, **given)
    return row_id


def _path_row(studio: Studio, stored: str) -> int | None:
    """The id of the library row for the file at ``stored`` (a data-dir relative path), if any."""
    rows = studio.store.find("loras", "path = ?", [stored], limit=1)
    return rows[0]["id"] if rows else None


def lora_folder(studio: Studio, owner: str) -> Path:
    """``owner``'s LoRA folder, where imports put their files."""
    return Path(studio.config.loras_dir) / user_folder_name(owner)


def check_name(name: str) -> None:
    """The rule for a LoRA name chosen or made up for a new file (an import's, a training run's): letters, digits,
    '-', '_' and '.', not hidden, not only digits, short enough for a file name; else :class:`InvalidInput`."""
    if not NAME_CHARS.fullmatch(name):
        raise InvalidInput(f"LoRA name {name!r} may hold only letters, digits, '-', '_' and '.'.")
    if name.startswith("."):
        raise InvalidInput(f"LoRA name {name!r} may not start with '.' (that would hide the file).")
    check_not_a_number(name)
    check_name_length(name)


def check_not_a_number(name: str) -> None:
    """Refuse a LoRA name of digits only: such text names a LoRA by its id (the delete picker sends ids)."""
    if is_id_text(name):
        raise InvalidInput(f"LoRA name {name!r} is only digits, which name a LoRA by its id: add a letter "
                           f"(e.g. 'lora-{name}').")


def check_name_length(name: str) -> None:
    """Refuse a LoRA name too long for its file (``<name>.safetensors`` within every file system's 255 bytes)."""
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidInput(f"The LoRA name is too long ({len(name)} characters): at most {MAX_NAME_CHARS} characters "
                           f"({MAX_NAME_BYTES} bytes in UTF-8).")


def check_lora_name(studio: Studio, owner: str, name: str) -> None:
    """Refuse (:class:`InvalidInput`) a name chosen for a new LoRA that ``owner`` is offered already: one of theirs
    or a shared one."""
    row = _taken(studio, owner, name)
    if row is not None:
        raise InvalidInput((TAKEN if row["owner"] == owner else SHARED).format(name))


def free_lora_name(studio: Studio, owner: str, name: str, folder: Path) -> str:
    """``name``, else ``name-2``, ``name-3``…: the first that no LoRA offered to ``owner`` has, for a file to be written
    as ``<folder>/<name>.safetensors`` (a file written there again keeps its name)."""
    candidate, number = name, 1
    while _taken(studio, owner, candidate, folder / f"{candidate}.safetensors"):
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _taken(studio: Studio, owner: str, name: str, path: Path | None = None) -> dict | None:
    """The library row offered to ``owner`` as ``name`` (theirs or a shared one, other than ``path``) whose file is
    still there, if any."""
    rows = studio.store.find("loras", "owner in (?, ?) and name = ?", [owner, LOCAL_USER, name])
    return next((row for row in rows if (path is None or row["path"] != studio.config.relative(path))
                 and studio.config.absolute(row["path"]).exists()), None)


def _named(studio: Studio, owner: str, name: str) -> list[dict]:
    """``owner``'s library rows called ``name``, files present or not."""
    return studio.store.find("loras", "owner = ? and name = ?", [owner, name])


def loras_in(studio: Studio, folder: Path) -> list[dict]:
    """The library rows (anyone's) whose files lie in ``folder``, a training run's say."""
    inside = folder.resolve()
    return [row for row in studio.store.find("loras", order_by="id")
            if studio.config.absolute(row["path"]).resolve().is_relative_to(inside)]


def list_loras(studio: Studio, owner: str, every_owner: bool = False) -> list[dict]:
    """LoRAs this user may use (their own and the shared ones, as generation finds them by name; an admin too),
    or with ``every_owner`` everyone's (an admin's view of the library): recorded ones plus valid files dropped
    into the library folder (registered whoever looks) and files of the user's own folder that no row lists (an
    import killed between its file and its row). A name is offered once: a shared LoRA named like one of the
    user's own (dropped after the import) is left out, as the name calls the user's."""
    find_new_loras(studio, owner)
    where, args = (None, []) if every_owner else ("owner in (?, ?)", [owner, LOCAL_USER])
    rows = [r for r in studio.store.find("loras", where, args, order_by="name")
            if studio.config.absolute(r["path"]).exists()]
    if every_owner:
        return rows
    own = {r["name"] for r in rows if r["owner"] == owner}
    return [r for r in rows if r["owner"] == owner or r["name"] not in own]


def find_new_loras(studio: Studio, owner: str) -> None:
    """Record the valid files dropped into the library folder (shared LoRAs, ``local``'s, whoever asks: A1111's
    ``refresh-loras``) and those of ``owner``'s own folder that no row lists."""
    _adopt(studio, owner)
    _adopt(studio, LOCAL_USER, Path(studio.config.loras_dir))


def _adopt(studio: Studio, owner: str, folder: Path | None = None) -> None:
    """Record the usable ``.safetensors`` files that no row lists yet, as ``owner``'s:
    those dropped into ``folder``, or by default those of ``owner``'s LoRA folder an import left without a row
    (killed half-way) once older than :data:`~masuka.disk.TMP_AGE_S` (a newer one may be an import still
    registering it). A file named like another LoRA of ``owner``'s is left out (that one keeps the name), and so
    are one named with digits only (such text is an id) and an unusable one."""
    source, settled = ("folder", float("inf")) if folder else ("import", time.time() - TMP_AGE_S)
    files = sorted((folder or lora_folder(studio, owner)).glob("*.safetensors"))
    known = {row["path"] for row in studio.store.query("select path from loras")} if files else set()
    for path in files:
        if studio.config.relative(path) in known:
            continue
        try:
            if path.stat().st_mtime > settled:
                continue
            info = inspect_lora(path)
        except Exception:  # an unusable (or vanished) file is simply not offered
            continue
        with suppress(InvalidInput):  # named like another LoRA of the owner's, which keeps the name
            register_lora(studio, info, owner, source)


def may_delete(row: dict, user: str, admin: bool) -> bool:
    """Whether ``user`` may delete the library's ``row``: their own (an admin, anyone's), unless a training run
    holds it (it goes with the run)."""
    return (admin or row["owner"] == user) and not row["job_id"]


def deletable_lora(studio: Studio, ref: str | int, user: str, admin: bool) -> dict:
    """The library row of the LoRA ``ref`` (id or name: the user's own, any owner's for an admin) if ``user`` may
    delete it, else :class:`~masuka.errors.NotFound` or, for a training run's LoRA (it goes with its run),
    :class:`InvalidInput`."""
    # a file of the user's with no row (an import killed half-way) can be deleted by name
    _adopt(studio, user)
    row = find_named(studio.store, "loras", ref, user, admin, "LoRA", "Models → LoRAs lists yours")
    if not may_delete(row, user, admin):
        raise InvalidInput(f"LoRA {row['name']!r} belongs to training run j{row['job_id']}: delete the run in History "
                           "(its LoRAs go with it).")
    return row


def delete_lora(studio: Studio, ref: str | int, user: str, admin: bool) -> dict:
    """Delete a LoRA (by id or name: the user's own, any owner's for an admin) with its file; returns its row.

    A training run's LoRA goes with its run (History), and a LoRA that unfinished work uses stays until that work is
    done: both are refused (:class:`InvalidInput`)."""
    row = deletable_lora(studio, ref, user, admin)
    path = studio.config.absolute(row["path"])
    with while_unused(studio, [(f"LoRA {row['name']!r}", path, [(row["name"], row["owner"])])]):
        path.unlink(missing_ok=True)
        studio.store.delete("loras", row["id"])
    return row


def match_loras(studio: Studio, owner: str, wanted: list[tuple[str, float]],
                hashes: str = "") -> tuple[list[tuple[str, float]], list[str]]:
    """Find an image's LoRAs (``<lora:name:w>`` tags, ``Lora hashes`` text) in the user's library.

    A tag matches a library LoRA of that name (compared in composed form: :func:`composed`), else one whose A1111
    hash is the one the image lists for that name (a file renamed since). Returns (library name, weight) per found
    LoRA, and the names not found.
    """
    rows = list_loras(studio, owner)
    by_name = {composed(row["name"]): row["name"] for row in rows}
    listed = {composed(name): value for name, value in (part.strip().rsplit(":", 1) for part in hashes.split(",")
                                                         if ":" in part)}
    found, missing = [], []
    for name, weight in wanted:
        match = by_name.get(composed(name))
        expected = listed.get(composed(name), "").strip().lower()
        if match is None and expected:
            match = next((row["name"] for row in rows if lora_hash(studio.config.absolute(row["path"]))
                          == expected), None)
        if match is None:
            missing.append(name)
        else:
            found.append((match, weight))
    return found, missing
