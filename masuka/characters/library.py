"""Characters as rows: create, find, list and delete them, and keep their photos in the data dir.

A ``characters`` row holds the name (unique per owner), trigger word, ``params`` (view model, strength, threshold,
face pick, the prompt set) and ``state`` (photos and face crops, views with their scores, training run ids, test
grid), plus the dataset id and the final LoRA's name. Files live in ``characters/<id>/`` under the data dir.

A character being made carries its maker's process and studio in ``state["building"]``; one whose process is gone
(killed before it could remove what it made), or whose studio was closed, is discarded when characters are next
listed or looked up, so it is never seen half made. One still being made by another process (the app and the
CLI, say) stays, and so does its dataset: deleting that is refused meanwhile (:func:`forget_deleted`). Deleting the
character itself stops its making, which then discards the dataset it made.

The datasets library tells the character of what is deleted from its dataset as it happens
(:func:`forget_deleted`): an image deleted there takes its view out, and a real photo's image is forgotten, so a
dataset made again after its deletion holds only what was not deleted.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from masuka.datasets.caption_template import check_trigger
from masuka.datasets.library import NAME, delete_dataset, on_delete
from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER, find_named, holder_alive, insert_named, is_id_text, now, owner_clause
from masuka.studio import Studio
from masuka.validation import composed

BUILDING = "building"
DELETED_THERE = "deleted in the Datasets tab"


def character_dir(studio: Studio, character_id: int) -> Path:
    return studio.config.characters_dir / str(int(character_id))


def character_name(name: str | None) -> str:
    """``name`` as a character is named: trimmed and in Unicode's composed form (``e`` + a combining diaeresis, as
    some keyboards type it, is ``ë``); refused unless it is 1-64 letters, digits, spaces, dots, dashes or
    underscores, not only digits."""
    name = composed(name)
    if not NAME.match(name) or is_id_text(name):
        raise InvalidInput("Name the character with 1-64 letters, digits, spaces, dots, dashes or underscores "
                           "(not only digits), e.g. 'anna'.")
    return name


def character_trigger(trigger: str | None) -> str:
    """``trigger`` checked as a dataset's trigger word is; an empty one is refused (every caption carries it)."""
    trigger = check_trigger(trigger)
    if not trigger:
        raise InvalidInput("Give the character a trigger word (a rare word such as 'ohwx anna'): every caption "
                           "carries it and prompts call the character with it.")
    return trigger


def new_character(studio: Studio, name: str, owner: str, trigger: str, params: dict[str, Any]) -> dict:
    """A new character row (no files yet), marked as being made by this studio until :func:`finish_building`;
    the name (:func:`character_name`) must be unique among the owner's characters."""
    name = character_name(name)
    trigger = character_trigger(trigger)
    maker = {"pid": os.getpid(), "process": studio.runner().token}
    row = {"owner": owner, "name": name, "trigger": trigger, "params": params,
           "state": {"photos": [], "views": [], "runs": [], BUILDING: maker}, "updated_at": now()}
    character_id = insert_named(studio.store, "characters", row, name_taken(name))
    character_dir(studio, character_id).mkdir(parents=True, exist_ok=True)
    return studio.store.existing("characters", character_id)


def finish_building(studio: Studio, character: dict) -> dict:
    """Mark ``character`` as made: it is kept from now on whatever happens to this process."""
    return update_character(studio, character, lambda state: state.pop(BUILDING, None))


def being_made(character: dict) -> bool:
    """Whether ``character``'s views and dataset are still being made (the Create that made it has not ended)."""
    return BUILDING in (character["state"] or {})


def check_made(character: dict, action: str) -> None:
    """Refuse ``action`` (what the user asked for, as a verb: ``add photos``) on a character still being made:
    its views and dataset are not there yet."""
    if being_made(character):
        raise InvalidInput(f"The character {character['name']!r} is still being made: {action} when it is done.")


def drop_abandoned(studio: Studio) -> None:
    """Discard every character whose making was killed (its process, or the studio that made it, is gone), with its
    dataset."""
    for character in studio.store.find("characters", f"json_extract(state, '$.{BUILDING}') is not null"):
        if not _maker_alive(character):
            discard_character(studio, character)


def _maker_alive(character: dict) -> bool:
    """Whether ``character`` is being made by a process (or studio) that still runs."""
    building = (character["state"] or {}).get(BUILDING)
    return building is not None and holder_alive(building["pid"], building["process"])


def discard_character(studio: Studio, character: dict) -> None:
    """Remove what an unfinished character made; either part may be gone already (deleted meanwhile), and a dataset
    that a training run took meanwhile (Train tab) stays. The row goes first, in the dataset's transaction: a
    character being made refuses its dataset's deletion."""
    with studio.store.transaction():
        studio.store.delete_where("characters", "id = ? and owner = ?", [character["id"], character["owner"]])
        if character["dataset_id"] is not None:
            with suppress(NotFound, InvalidInput):
                delete_dataset(studio, character["dataset_id"], character["owner"])
    shutil.rmtree(character_dir(studio, character["id"]), ignore_errors=True)


def name_taken(name: str) -> str:
    """The message for a character name the owner has already given."""
    return f"You already have a character named {name!r}: pick another name."


def find_character(studio: Studio, ref: str | int, owner: str, admin: bool = False) -> dict:
    """A character by id or name: the user's own (admins: anyone's); else :class:`NotFound`."""
    drop_abandoned(studio)
    return find_named(studio.store, "characters", ref, owner, admin, "character",
                      "create it first (Characters tab or `character create`)")


def list_characters(studio: Studio, owner: str, admin: bool = False) -> list[dict]:
    """The user's characters, newest first."""
    drop_abandoned(studio)
    where, args = owner_clause(owner, admin)
    return studio.store.find("characters", where, args, order_by="id desc")


def update_character(studio: Studio, character: dict, change: Callable[[dict], None] | None = None,
                     **fields: Any) -> dict:
    """Write ``fields`` (columns) and let ``change`` edit the state in place, the row read again in the same
    transaction as the write: an edit made meanwhile (another tab, the CLI) is kept. :class:`NotFound` when the
    character was deleted meanwhile. Returns the row as written."""
    with studio.store.transaction():
        row = studio.store.get("characters", character["id"])
        if row is None or row["owner"] != character["owner"]:
            raise NotFound(f"The character {character['name']!r} was deleted meanwhile: nothing more was done.")
        if change is not None:
            change(row["state"])
            fields["state"] = row["state"]
        studio.store.update("characters", row["id"], updated_at=now(), **fields)
        return studio.store.existing("characters", row["id"])


def delete_character(studio: Studio, ref: str | int, owner: str, admin: bool = False) -> dict:
    """Remove a character's row and its photos; its dataset, runs and LoRA stay (they have their own tabs). A
    character still being made stops being made at its next step, and its making discards the dataset it made
    (:func:`deleted_note` says so)."""
    character = find_character(studio, ref, owner, admin)
    _remove(studio, character)
    return character


def _remove(studio: Studio, character: dict) -> None:
    studio.store.delete_where("characters", "id = ? and owner = ?", [character["id"], character["owner"]])
    shutil.rmtree(character_dir(studio, character["id"]), ignore_errors=True)


def forget_deleted(studio: Studio, dataset_id: int, image_ids: list[int] | None) -> None:
    """Told by the datasets library (:func:`~masuka.datasets.library.on_delete`) of deleted images of a dataset,
    or of the whole dataset (``image_ids`` None): the character whose dataset it is takes out each view whose
    image went (:data:`DELETED_THERE`) and forgets each real photo's image, or forgets the dataset (made again from
    the kept views and the real photos still in it, at the next edit or training). The deletion of a whole dataset
    that a character is being made into (by a live process) is refused: its making adds the views to it."""
    gone = set(image_ids or ())

    def forget(state: dict) -> None:
        for view in state["views"]:
            if view["image"] in gone:
                view.update(kept=False, image=None, reason=DELETED_THERE)
        for photo in state["photos"]:  # the real photos added to the dataset (the first ones are not in it)
            if photo.get("image") in gone:
                photo["image"] = None

    for character in studio.store.find("characters", "dataset_id = ?", [dataset_id]):
        if image_ids is None and _maker_alive(character):
            raise InvalidInput(f"The character {character['name']!r} is being made into this dataset: let it finish, "
                               "or stop it (deleting the character stops it and deletes the dataset), before "
                               "deleting the dataset.")
        if image_ids is None:
            update_character(studio, character, dataset_id=None)
        else:
            update_character(studio, character, forget)


on_delete(forget_deleted)


def _dataset(studio: Studio, character: dict) -> dict | None:
    """The character's dataset row; None when it has none (not made yet, or deleted in the Datasets tab)."""
    return studio.store.get("datasets", character["dataset_id"]) if character["dataset_id"] else None


def deleted_note(studio: Studio, character: dict) -> str:
    """What deleting ``character`` removed, and that its dataset (when it still has one, with the exact command
    that deletes it), runs and LoRA stay; for a character that was being made, that its making stops and discards
    its dataset."""
    if being_made(character):
        return (f"Deleted character {character['name']!r} and its photos while it was being made: its making stops "
                "and deletes the dataset it made (the views made so far stay in History).")
    dataset = _dataset(studio, character)
    user = "" if character["owner"] == LOCAL_USER else f" --user {shlex.quote(character['owner'])}"
    command = f"python -m masuka dataset delete {shlex.quote(dataset['name'])} --yes{user}" if dataset else ""
    kept = (f"its dataset {dataset['name']!r} (its kept views and the real photos you added) stays: delete it in "
            f"the Datasets tab (or `{command}`) if you no longer want it; its" if dataset else "its")
    return f"Deleted character {character['name']!r} and its photos; {kept} runs and LoRA stay."


#: a character still being made, in words (the tab, ``character show`` and ``list``)
BEING_MADE = "being made: its views and dataset come when it is done"


def dataset_words(summary: dict) -> str:
    """The dataset of a character's :func:`summary` in words (the tab, ``character show`` and ``list``): its name
    and what it holds, that it was deleted and what it is made again from, or (:data:`BEING_MADE`) that the
    character is still being made."""
    if summary["being_made"]:
        return BEING_MADE
    held = f"{summary['kept']} kept view(s) and {summary['real_photos']} real photo(s)"
    if summary["dataset_deleted"]:
        return f"its dataset was deleted: it is made again from {held} at the next edit or training"
    return f"dataset {summary['dataset']!r} with {held}"


def view_picture(studio: Studio, character: dict, view: dict) -> Path | None:
    """The picture to show for one of ``character``'s views: its file (a generation in History), else (its History
    entry was deleted) the copy its dataset keeps of it; None when neither is there."""
    path = studio.config.absolute(view["file"])
    if path.is_file():
        return path
    image = studio.store.get("dataset_images", view["image"]) if view.get("image") is not None else None
    if image is None or image["dataset_id"] != character["dataset_id"]:
        return None
    copy = studio.config.absolute(image["processed_path"])
    return copy if copy.is_file() else None


def summary(studio: Studio, character: dict) -> dict:
    """What ``character show`` and the tab print: counts, links and every view with its score. ``dataset`` is
    the dataset's name, None when it was deleted (``dataset_deleted``); ``images`` counts its kept views and real
    photos (``kept`` and ``real_photos``), which a deleted dataset is made again from."""
    state = character["state"] or {}
    views = state.get("views", [])
    kept = sum(1 for v in views if v["kept"])
    real = sum(1 for p in state.get("photos", []) if p.get("image") is not None)
    dataset = _dataset(studio, character)
    return {"character": character["id"], "name": character["name"], "trigger": character["trigger"],
            "photos": [studio.config.absolute(p["photo"]).as_posix() for p in state.get("photos", [])],
            "being_made": being_made(character), "dataset": dataset["name"] if dataset else None,
            "dataset_deleted": dataset is None and not being_made(character), "images": kept + real,
            "kept": kept, "real_photos": real,
            "rejected": sum(1 for v in views if not v["kept"]), "views": views, "runs": state.get("runs", []),
            "lora": character["lora"], "grid": state.get("grid"), "grid_error": state.get("grid_error"),
            "notes": state.get("notes", []), "params": character["params"]}
