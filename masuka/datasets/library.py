"""Datasets as rows: create, find, list and delete datasets; list, re-caption and delete their images.

A dataset is a ``datasets`` row (name unique per owner, trigger word, caption template, preprocessing
options) and its ``dataset_images`` rows. Files live in ``datasets/<id>/originals`` and
``datasets/<id>/processed`` under the data dir; rows hold paths relative to it. An add writes its files in a
pending folder inside each of those first and moves each one out right after the transaction that records its row
(:mod:`masuka.datasets.pending`), so a killed add leaves no file under a name that looks kept. A horizontally
flipped copy is its own row whose ``augment_of`` names the image it mirrors: it follows that image's caption and
goes when it goes.

Training (``masuka.training.data.dataset_for_training``) and export (:mod:`masuka.datasets.export`) read the
processed image files and final captions (:func:`final_caption`: the trigger word added where a caption lacks it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from masuka.datasets.caption_template import DEFAULT_TEMPLATE, check_template, check_trigger, has_trigger
from masuka.datasets.formats import MAX_CAPTION_CHARS
from masuka.datasets.preprocess import PrepOptions
from masuka.errors import InvalidInput, NotFound
from masuka.store import UNFINISHED, find_named, insert_named, is_id_text, now, owner_clause, row_id
from masuka.studio import Studio
from masuka.validation import composed, plain_text

NAME = re.compile(r"^[\w][\w .\-]{0,63}$")
#: the key of a job's ``state`` that names the dataset it reads or writes (a training run, a caption pass):
#: :func:`delete_dataset` is refused while such a job is queued or running
HOLDS = "dataset_id"
#: ``listener(studio, dataset_id, image_ids)``: told of deleted images of a dataset (``image_ids``: their ids, flipped
#: copies included), or of the whole dataset (None)
DeletionListener = Callable[[Studio, int, list[int] | None], None]
_deletion_listeners: list[DeletionListener] = []


def on_delete(listener: DeletionListener) -> None:
    """Have ``listener`` called inside the transaction of every deletion of a dataset or of images of one, so rows
    elsewhere that link to them (a character's views) forget them at once; the module that keeps such links
    registers it, so this one imports none of them. Told of a whole dataset, before anything is deleted, it may
    refuse the deletion with :class:`InvalidInput` (a character being made into the dataset)."""
    if listener not in _deletion_listeners:
        _deletion_listeners.append(listener)


def _tell_deleted(studio: Studio, dataset_id: int, image_ids: list[int] | None) -> None:
    for listener in _deletion_listeners:
        listener(studio, dataset_id, image_ids)


def dataset_dir(studio: Studio, dataset_id: int) -> Path:
    return studio.config.datasets_dir / str(int(dataset_id))


def exports_dir(studio: Studio, dataset_id: int) -> Path:
    """Where the dataset's export zips are made for download."""
    return dataset_dir(studio, dataset_id) / "exports"


def drop_exports(studio: Studio, dataset_id: int) -> None:
    """Remove the dataset's export zips: called wherever its images or captions change, so no download shows
    what it no longer holds."""
    for path in exports_dir(studio, dataset_id).glob("*.zip"):
        path.unlink(missing_ok=True)


def create_dataset(studio: Studio, name: str, owner: str, trigger: str = "", template: str = DEFAULT_TEMPLATE,
                   options: PrepOptions | dict | None = None) -> dict:
    """A new empty dataset; the name (:func:`~masuka.validation.composed`) must be unique among the owner's
    datasets."""
    name = composed(name)
    if not NAME.match(name) or is_id_text(name):
        raise InvalidInput("Name the dataset with 1-64 letters, digits, spaces, dots, dashes or underscores "
                           "(not only digits), e.g. 'my-cat'.")
    if not isinstance(options, PrepOptions):
        options = PrepOptions.from_dict(options)
    row = {"owner": owner, "name": name, "trigger": check_trigger(trigger), "template": check_template(template),
           "options": options.to_dict(), "updated_at": now()}
    dataset_id = insert_named(studio.store, "datasets", row,
                              f"You already have a dataset named {name!r}: pick another name or add images to it.")
    dataset_dir(studio, dataset_id).mkdir(parents=True, exist_ok=True)
    return studio.store.existing("datasets", dataset_id)


def find_dataset(studio: Studio, ref: str | int, owner: str, admin: bool = False) -> dict:
    """A dataset by id or name: the user's own first, then (admins) anyone's; else :class:`NotFound`."""
    return find_named(studio.store, "datasets", ref, owner, admin, "dataset",
                      "create it first (Datasets tab or `dataset create`)")


def list_datasets(studio: Studio, owner: str, admin: bool = False) -> list[dict]:
    """The user's datasets, newest first, each with ``images`` (flipped copies not counted)."""
    where, args = owner_clause(owner, admin)
    rows = studio.store.find("datasets", where, args, order_by="id desc")
    for row in rows:
        row["images"] = count_images(studio, row["id"])
    return rows


def ensure_exists(studio: Studio, dataset: dict, meanwhile: str = "meanwhile") -> None:
    """:class:`NotFound` when ``dataset`` was deleted since it was read (``meanwhile`` says when). Called inside
    the transaction that writes for it, so nothing is written for a dataset that is gone."""
    if studio.store.get("datasets", dataset["id"]) is None:
        raise NotFound(f"Dataset {dataset['name']!r} was deleted {meanwhile}.")


def update_dataset(studio: Studio, dataset: dict, *, meanwhile: str = "meanwhile", **fields) -> dict:
    """Set ``fields`` (and ``updated_at``) of a dataset whose content changed (its export zips go);
    :class:`NotFound` when it was deleted meanwhile (as :func:`ensure_exists` words it)."""
    with studio.store.transaction():
        ensure_exists(studio, dataset, meanwhile)
        studio.store.update("datasets", dataset["id"], updated_at=now(), **fields)
        row = studio.store.existing("datasets", dataset["id"])
    drop_exports(studio, dataset["id"])
    return row


def delete_dataset(studio: Studio, ref: str | int, owner: str, admin: bool = False) -> dict:
    """Remove a dataset's rows and files; returns the deleted row. Refused while a job that holds it (its state's
    :data:`HOLDS`: a training run, a caption pass) is queued or running, or a deletion listener refuses it (a
    character being made into it), checked in the transaction that deletes."""
    dataset = find_dataset(studio, ref, owner, admin)
    with studio.store.transaction():
        users = studio.store.find("jobs", f"status in ({', '.join('?' * len(UNFINISHED))}) and "
                                  f"json_extract(state, '$.{HOLDS}') = ?", [*UNFINISHED, dataset["id"]],
                                  order_by="id", limit=1)
        if users:
            job = users[0]
            raise InvalidInput(f"The {job['kind']} job #{job['id']} ({job['title']}) is {job['status']} "
                               f"on dataset {dataset['name']!r}: stop it, or let it finish, before deleting the "
                               "dataset.")
        _tell_deleted(studio, dataset["id"], None)
        images = studio.store.find("dataset_images", "dataset_id = ?", [dataset["id"]])
        for row in images:
            studio.store.delete("dataset_images", row["id"])
        studio.store.delete("datasets", dataset["id"])
    shutil.rmtree(dataset_dir(studio, dataset["id"]), ignore_errors=True)
    return dataset


def dataset_images(studio: Studio, dataset_id: int, limit: int | None = None, offset: int = 0,
                   augmented: bool = False) -> list[dict]:
    """Images in the order they were added; ``augmented`` includes flipped copies. Rows gain ``file``."""
    where = "dataset_id = ?" + ("" if augmented else " and augment_of is null")
    rows = studio.store.find("dataset_images", where, [dataset_id], order_by="id", limit=limit, offset=offset)
    for row in rows:
        row["file"] = studio.config.absolute(row["processed_path"])
    return rows


def count_images(studio: Studio, dataset_id: int) -> int:
    return studio.store.count("dataset_images", "dataset_id = ? and augment_of is null", [dataset_id])


def _image(studio: Studio, image_id: int, owner: str, admin: bool) -> tuple[dict, dict]:
    number = row_id(image_id)
    row = studio.store.get("dataset_images", number) if number else None
    dataset = row and studio.store.get("datasets", row["dataset_id"])
    if row is None or not dataset or not (admin or dataset["owner"] == owner):
        raise NotFound(f"No image #{image_id} in your datasets.")
    return row, dataset


def dataset_image(studio: Studio, dataset: dict, image_id: int | str, see: str = "") -> dict:
    """The row of image #``image_id`` of ``dataset``; :class:`NotFound` ("Dataset 'x' has no image #N", ``see``
    added as where to look) for an id of another dataset, of no image, or of a flipped copy (which is no image of
    its own: it goes, and is captioned, with the image it mirrors)."""
    number = row_id(image_id)
    row = studio.store.get("dataset_images", number) if number else None
    if row is None or row["dataset_id"] != dataset["id"] or row["augment_of"] is not None:
        raise NotFound(f"Dataset {dataset['name']!r} has no image #{image_id}{f' (see {see})' if see else ''}.")
    return row


def set_caption(studio: Studio, image_id: int, caption: str, owner: str, admin: bool = False,
                source: str = "manual", expected: str | None = None) -> bool:
    """Set an image's caption (and its flipped copy's); with ``expected`` only while the stored caption is still
    that text (``""``: while the image has none), checked in the same transaction as the write. Returns whether it
    was written (not when the image was deleted meanwhile)."""
    row, dataset = _image(studio, image_id, owner, admin)
    caption = (caption or "").strip()
    if len(caption) > MAX_CAPTION_CHARS:
        raise InvalidInput(f"The caption is too long (at most {MAX_CAPTION_CHARS} characters).")
    with studio.store.transaction():
        current = studio.store.get("dataset_images", row["id"])
        if current is None or (expected is not None and _text(current["caption"]) != _text(expected)):
            return False
        for item in [row, *_copies(studio, row["id"])]:
            studio.store.update("dataset_images", item["id"], caption=caption, caption_source=source)
        studio.store.update("datasets", dataset["id"], updated_at=now())
    drop_exports(studio, dataset["id"])
    return True


@dataclass
class CaptionEdits:
    """What saving edited captions did: the images whose caption was written, and ``{image id: the text not
    saved}`` for those whose caption was changed elsewhere (or that were deleted) since the page was loaded, and
    the ids that name no image of the dataset (ignored)."""

    saved: list[int] = field(default_factory=list)
    conflicts: dict[int, str] = field(default_factory=dict)
    unknown: list[int] = field(default_factory=list)


def save_edits(studio: Studio, ref: str | int, captions: Mapping[int, str], owner: str, admin: bool = False,
               loaded: Mapping[int, str] | None = None) -> CaptionEdits:
    """Save the captions of ``{image id: caption}`` that were edited: those that differ from ``loaded`` (the
    captions as the page showed them; for an image it lacks, the stored caption). Each is written only while the
    stored caption is still the loaded one, so a caption changed elsewhere since (another tab, the CLI, a caption
    pass) is never put back: it is listed in ``conflicts``. Only edited captions are checked (a stored caption is
    not refused for what it holds), each naming its image; one refused saves none."""
    dataset = find_dataset(studio, ref, owner, admin)
    stored = {row["id"]: row for row in dataset_images(studio, dataset["id"])}
    loaded = loaded or {}
    edits: dict[int, tuple[str, str]] = {}  # image id -> (caption typed, caption loaded)
    result = CaptionEdits()
    for image_id, text in captions.items():
        number = row_id(image_id) or 0  # a key that is no id names no image
        row = stored.get(number)
        current = _text(row["caption"]) if row else None
        before = _text(loaded[number]) if number in loaded else current
        typed = _text(text) if isinstance(text, str | None) else text  # anything else: refused below
        if before is None:  # no image of the dataset (nor one shown on the page)
            result.unknown.append(number)
            continue
        if typed in (before, current):
            continue  # not edited
        if row is None:  # deleted since the page was loaded
            result.conflicts[number] = str(typed)
            continue
        name = f"the caption of image #{number} ({row['source_name']})"
        edits[number] = (plain_text(name, text, MAX_CAPTION_CHARS).strip(), before)
    for number, (text, before) in edits.items():
        if set_caption(studio, number, text, owner, admin, expected=before):
            result.saved.append(number)
        else:
            result.conflicts[number] = text
    return result


def save_captions(studio: Studio, ref: str | int, captions: dict[int, str], owner: str, admin: bool = False) -> int:
    """Set the captions of a dataset's images from ``{image id: caption}`` (:func:`save_edits` against what is
    stored now); returns how many changed."""
    return len(save_edits(studio, ref, captions, owner, admin).saved)


def _text(caption: str | None) -> str:
    return (caption or "").strip()


def _copies(studio: Studio, image_id: int) -> list[dict]:
    return studio.store.find("dataset_images", "augment_of = ?", [image_id])


def delete_image(studio: Studio, image_id: int, owner: str, admin: bool = False,
                 dataset: str | int | None = None) -> None:
    """Remove an image, its flipped copy and their files; with ``dataset`` (the one the user sees), only an image
    of that dataset. A flipped copy's id is refused (:func:`dataset_image`): the copy goes with its image."""
    row, held_by = _image(studio, image_id, owner, admin)
    if dataset not in (None, "") and find_dataset(studio, dataset, owner, admin)["id"] != row["dataset_id"]:
        raise InvalidInput(f"Image #{row['id']} is not in dataset {str(dataset)!r} (it is in {held_by['name']!r}): "
                           "select an image of the dataset shown.")
    dataset_image(studio, held_by, row["id"])
    rows = [row, *_copies(studio, row["id"])]
    with studio.store.transaction():
        for item in rows:
            studio.store.delete("dataset_images", item["id"])
        _tell_deleted(studio, row["dataset_id"], [item["id"] for item in rows])
    for item in rows:
        for stored in (item["processed_path"], item["original_path"]):
            if stored:
                studio.config.absolute(stored).unlink(missing_ok=True)
    drop_exports(studio, row["dataset_id"])


def final_caption(row: dict, dataset: dict) -> str:
    """The caption training and export use: the image's own, with ``"<trigger>, "`` in front when it lacks the
    trigger word (an imported or hand-written caption), else the trigger word alone."""
    caption, trigger = (row["caption"] or "").strip(), dataset["trigger"] or ""
    if not caption or not trigger:
        return caption or trigger
    return caption if has_trigger(caption, trigger) else f"{trigger}, {caption}"
