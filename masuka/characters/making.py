"""Making a character: photos -> faces -> synthetic views -> identity filter -> dataset, and the edits after it
(reject a view, regenerate one, add real photos).

Every photo is checked (a readable picture with one face, or the face the user picked for it) before anything is
made. Views are generated one by one, scored against the photos' faces together, and those at or above the
threshold become a normal dataset whose captions all carry the trigger word: from a captioner when one is named,
else from the view's own prompt. A view the safety check flagged is neither scored nor kept, and a view or photo the
dataset refuses (a duplicate) is not kept either.

Edits read the character again and change only their part of it in one transaction (another tab's edit made
meanwhile is kept). An image deleted in the Datasets tab takes its view out as it is deleted
(:func:`~masuka.characters.library.forget_deleted`); a dataset deleted there is made again from the kept views and
the real photos still in it at the next edit that needs it.
"""

from __future__ import annotations

import logging
import shlex
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.access import usable_model
from masuka.characters.faces import open_photo, photo_face
from masuka.characters.identity import check_threshold, likeness_crop, load_embedder, scores
from masuka.characters.library import (
    being_made,
    character_dir,
    character_name,
    character_trigger,
    check_made,
    discard_character,
    drop_abandoned,
    find_character,
    finish_building,
    name_taken,
    new_character,
    update_character,
)
from masuka.characters.prompts import DEFAULT_VIEWS, MAX_VIEWS, check_prompts, pick_prompts
from masuka.characters.views import ViewRequest, check_outfit, edit_models, make_view
from masuka.datasets.adding import add_images
from masuka.datasets.caption_template import DEFAULT_TEMPLATE, apply_template
from masuka.datasets.captioners import DEFAULT_FAMILY, FAMILIES, family_ids, resolve_captioner
from masuka.datasets.captioning import CaptionRequest, caption_dataset, check_captioner
from masuka.datasets.library import create_dataset, delete_dataset, delete_image, find_dataset, set_caption
from masuka.errors import InvalidInput, NotFound
from masuka.gpu import check_stop
from masuka.history.browse import generation_params
from masuka.image.copies import KEPT_PNG
from masuka.image.generate import seed_run
from masuka.image.limits import MAX_STEPS
from masuka.image.tasks import open_picture
from masuka.jobs import Watch
from masuka.models.manage import fetch_for_use, repo_complete
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.validation import whole_number

log = logging.getLogger(__name__)
MAX_PHOTOS = 5
MAX_FACE = 100
#: a character dataset keeps small views (64 px and up) and refuses only exact look-alikes
DATASET_OPTIONS = {"min_side": 64, "near_distance": 0}
REAL_PHOTO = "a real photo"
AUTO_CAPTIONER = "auto"
FLAGGED = "flagged by the safety check"
Progress = Callable[[int, int, str], None]  # (views done, views in all, what happened)
#: which face a photo's character is when it shows several: one number for every photo, or one per photo
FacePick = int | str | Sequence[int | str | None] | None


def chosen_captioner(choice: str) -> str:
    """The captioner a character's views get: ``auto`` is the default family's model when it is already
    downloaded, else none (captions come from the view prompts)."""
    choice = (choice or "").strip()
    if choice != AUTO_CAPTIONER:
        return choice
    source = resolve_captioner(DEFAULT_FAMILY).source
    return source if repo_complete(source) else ""


def captioner_hint(no_captioner: str) -> str:
    """What a character's captioner field takes, for help texts; ``no_captioner`` is the value naming none."""
    return (f"{AUTO_CAPTIONER}: {FAMILIES[DEFAULT_FAMILY].label} when downloaded; {no_captioner}: the view prompts; "
            f"or {family_ids()}, a repo id or folder")


def default_view_model() -> str:
    """The catalog's smallest edit model, else SDXL (image-to-image)."""
    models = sorted(edit_models(), key=lambda m: m["vram_gb"] or 0)
    return models[0]["id"] if models else "sdxl"


@dataclass
class CharacterRequest:
    """Everything ``character create`` needs; the prompt set defaults to ``views`` prompts picked with ``seed``
    (``views`` None: DEFAULT_VIEWS, or as many as ``prompts`` has; naming both, their counts must agree)."""

    name: str
    photos: list[str | Path]
    trigger: str
    owner: str = LOCAL_USER
    model: str = field(default_factory=default_view_model)
    views: int | None = None
    prompts: list[str] | None = None
    seed: int = 0
    strength: float = 0.6
    steps: int | None = None
    size: int | None = None  # the views' longer side (they keep the photo's shape); None: the model's default
    threshold: float | None = None  # None: the identity model's own
    identity_model: str = ""
    face: FacePick = None  # which face (1 = biggest) when a photo shows several people (see face_picks)
    skip_faces: bool = False  # a character that is not a person, or a style
    captioner: str = AUTO_CAPTIONER  # "auto": the default family's model when downloaded; "" = view prompts
    outfit: str | Path | None = None  # a picture of the clothes every view wears (edit models taking several images)
    admin: bool = False


@dataclass
class CharacterReport:
    character: int
    dataset: str
    images: int
    rejected: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"character": self.character, "dataset": self.dataset, "images": self.images,
                "rejected": self.rejected}


def create_character(studio: Studio, request: CharacterRequest, *, on_progress: Progress | None = None,
                     stop: threading.Event | None = None, allow_any_path: bool = False,
                     on_download: Watch | None = None) -> CharacterReport:
    """Make the character, its views and its dataset; returns what was kept and what was refused and why.

    Everything that can be checked is checked before the character row is made: the name, the view model (a path
    another user could not tell from a missing one, as in the Image tab), the photos, the identity model and the
    captioner (fetched when needed). Its dataset is made next, so that the name is its own before any view.
    Nothing is left behind when it fails: the row, its files and its dataset go (the views stay in History), at once
    or, when this process is killed, at the next look at the characters (:func:`drop_abandoned`)."""
    name = character_name(request.name)
    character_trigger(request.trigger)  # before anything is fetched: an empty one is refused as such
    model = usable_model(studio, request.owner, request.model)
    photos = [Path(p) for p in request.photos]
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise InvalidInput(f"Give 1 to {MAX_PHOTOS} photos of the character (got {len(photos)}).")
    picks = face_picks(request.face, len(photos))
    faces = [photo_face(path, pick, request.skip_faces) for path, pick in zip(photos, picks)]
    seed = seed_run(request.seed, MAX_VIEWS + 1)  # view i is made with seed + i; -1 draws one
    prompts = view_prompts(request.views, request.prompts, seed)
    threshold = check_threshold(request.threshold)
    if request.outfit:
        check_outfit(model)
        outfit = open_photo(request.outfit, "outfit reference")
    size = None if request.size is None else whole_number("the view size", request.size, 64, 2048)
    steps = None if request.steps is None else whole_number("steps", request.steps, 1, MAX_STEPS)
    drop_abandoned(studio)  # a name left taken by a killed build is free again
    if studio.store.count("characters", "owner = ? and name = ?", [request.owner, name]):
        raise InvalidInput(name_taken(name))
    if studio.store.count("datasets", "owner = ? and name = ?", [request.owner, name]):
        raise InvalidInput(f"You already have a dataset named {name!r}: the character's dataset takes its name, so "
                           "pick another name.")
    # the identity model and the captioner are fetched (and checked) before any view is made: a missing one fails
    # in seconds, not after the views, and their downloads happen outside the views' GPU work
    load_embedder(studio, request.owner, request.identity_model, on_download, faces=not request.skip_faces)
    captioner = chosen_captioner(request.captioner)
    if captioner:  # not loaded: that would push the view model out of memory
        fetch_for_use(studio, request.owner, check_captioner(studio, request.owner, captioner).source, on_download)
    params = {"model": model, "strength": request.strength, "steps": steps, "size": size, "seed": seed,
              "threshold": threshold, "identity_model": request.identity_model, "face": picks,
              "skip_faces": request.skip_faces, "captioner": captioner, "prompts": prompts}
    character = new_character(studio, name, request.owner, request.trigger, params)
    try:
        character = _new_dataset(studio, character)
        character, _added = _keep_photos(studio, character, photos, faces)
        if request.outfit:
            character = _keep_outfit(studio, character, outfit)
        views = _make_views(studio, character, prompts, on_progress, stop, allow_any_path)
        notes = _score(studio, character, views, on_download)
        character = update_character(studio, character, lambda state: state.update(views=views, notes=notes))
        _add_to_dataset(studio, character, [(i, v) for i, v in enumerate(views) if v["kept"]], on_download)
        character = finish_building(studio, character)
    except BaseException:
        discard_character(studio, character)
        raise
    views = character["state"]["views"]
    rejected = [{"file": Path(v["file"]).name, "reason": v["reason"]} for v in views if not v["kept"]]
    return CharacterReport(character["id"], character["state"]["dataset"], sum(v["kept"] for v in views),
                           rejected, notes)


def view_prompts(views: int | None, prompts: list[str] | None, seed: int) -> list[str]:
    """The prompt set: ``prompts`` (their count must be ``views`` when both are given), else ``views`` prompts
    (default DEFAULT_VIEWS) picked with ``seed``; a set given empty (an empty file) is refused, not replaced."""
    if prompts is None:
        return pick_prompts(DEFAULT_VIEWS if views is None else views, seed)
    checked = check_prompts(prompts)
    count = len(checked) if views is None else whole_number("the number of views", views, 1, MAX_VIEWS)
    if count != len(checked):
        raise InvalidInput(f"{count} views were asked for, but the prompt set has {len(checked)} prompts (one view "
                           "a line): give as many views as prompts, or no prompts for a set of that many views "
                           "picked with the seed.")
    return checked


def face_picks(face: FacePick, count: int) -> list[int | None]:
    """The face pick of each of ``count`` photos (None: the only face, else the photo is refused until one is
    chosen): ``face`` is None or 0, one number for every photo, or one per photo in order (a list, or text such
    as ``"2, 0"``; 0 = the only face). A pick matters only in a photo that shows several faces."""
    if face is None or isinstance(face, int):
        values: list = [face]
    elif isinstance(face, str):
        values = face.replace(",", " ").split() or [None]
    else:
        values = list(face) or [None]
    if len(values) == 1:
        values *= count
    if len(values) != count:
        raise InvalidInput(f"Give one face number for every photo, or one per photo in order ({count} photo(s), "
                           f"{len(values)} face numbers).")
    return [None if value is None else whole_number("the face number", value, 0, MAX_FACE) or None
            for value in values]


def _new_dataset(studio: Studio, character: dict) -> dict:
    """A new dataset named like the character, linked to it; returns the character."""
    dataset = create_dataset(studio, character["name"], character["owner"], character["trigger"], DEFAULT_TEMPLATE,
                             DATASET_OPTIONS)
    try:
        return update_character(studio, character, lambda state: state.update(dataset=dataset["name"]),
                                dataset_id=dataset["id"])
    except NotFound:
        delete_dataset(studio, dataset["id"], character["owner"])
        raise


def _keep_photos(studio: Studio, character: dict, photos: list[Path], faces: list) -> tuple[dict, list[dict]]:
    """Copy the photos and their face crops into the character's folder; returns the character and the photos'
    entries in its state."""
    folder = character_dir(studio, character["id"]) / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for path, face in zip(photos, faces):
        name = uuid.uuid4().hex[:12]
        photo, crop = folder / f"photo-{name}.png", folder / f"face-{name}.png"
        face.photo.save(photo, **KEPT_PNG)
        face.crop.save(crop, **KEPT_PNG)
        entries.append({"photo": studio.config.relative(photo), "face": studio.config.relative(crop),
                        "box": list(face.box) if face.box else None, "source": path.name})
    return update_character(studio, character, lambda state: state["photos"].extend(entries)), entries


def _keep_outfit(studio: Studio, character: dict, outfit: Image.Image) -> dict:
    """Copy the outfit reference into the character's folder; the views (and regenerated ones) use that copy."""
    path = character_dir(studio, character["id"]) / "photos" / "outfit.png"
    outfit.save(path, **KEPT_PNG)
    return update_character(studio, character,
                            params={**character["params"], "outfit": studio.config.relative(path)})


def _view_request(studio: Studio, character: dict) -> ViewRequest:
    params = character["params"]
    outfit = studio.config.absolute(params["outfit"]) if params.get("outfit") else None
    return ViewRequest(params["model"], params["strength"], params.get("steps"), params.get("size"), outfit)


def _new_view(studio: Studio, character: dict, description: str, seed: int, allow_any_path: bool) -> dict:
    photos = character["state"]["photos"]
    photo = studio.config.absolute(photos[seed % len(photos)]["photo"])
    try:
        result = make_view(studio, character["owner"], photo, description, seed, _view_request(studio, character),
                           allow_any_path)
    except InvalidInput:  # its photo may have gone with it
        _check_kept(studio, character)
        raise
    _check_kept(studio, character)
    flagged = (generation_params(studio, result.id).get("safety") or {}).get("flagged")
    return {"file": studio.config.relative(result.path), "prompt": description, "seed": result.seed,
            "generation": result.id, "score": None, "kept": False, "reason": FLAGGED if flagged else "",
            "image": None}


def _make_views(studio: Studio, character: dict, prompts: list[str], on_progress: Progress | None,
                stop: threading.Event | None, allow_any_path: bool) -> list[dict]:
    views = []
    for index, description in enumerate(prompts):
        check_stop(stop)
        views.append(_new_view(studio, character, description, character["params"]["seed"] + index,
                               allow_any_path))
        if on_progress:
            on_progress(index + 1, len(prompts), description)
    return views


def _check_kept(studio: Studio, character: dict) -> None:
    """:class:`NotFound` saying so when the character was deleted (another tab) while a view of it was made."""
    if studio.store.get("characters", character["id"]) is None:
        raise NotFound(f"The character {character['name']!r} was deleted while a view of it was being made: "
                       "nothing more was done.")


def _score(studio: Studio, character: dict, views: list[dict],
           on_download: Watch | None) -> list[str]:
    """Score ``views`` in place against the photos' faces; keep those at or above the threshold. A view the safety
    check flagged is neither scored nor kept. Returns the identity model's note (it fell back to CLIP)."""
    params, config = character["params"], studio.config
    views = [view for view in views if view["reason"] != FLAGGED]
    if not views:
        return []
    faces = not params.get("skip_faces")
    embedder, note = load_embedder(studio, character["owner"], params.get("identity_model"), on_download, faces)
    threshold = embedder.threshold if params["threshold"] is None else params["threshold"]
    references = [_open(config.absolute(p["face" if faces else "photo"])) for p in character["state"]["photos"]]
    pictures = [likeness_crop(_open(config.absolute(v["file"])), faces) for v in views]
    for view, score in zip(views, scores(embedder, references, pictures)):
        view["score"] = score
        view["kept"] = score >= threshold
        view["reason"] = "" if view["kept"] else f"identity score {score:.2f} is below the threshold {threshold:.2f}"
    return [note] if note else []


def _open(path: Path) -> Image.Image:
    return open_picture(path, "picture").convert("RGB")


def _add_to_dataset(studio: Studio, character: dict, items: list[tuple[int | None, dict]],
                    on_download: Watch | None = None) -> list[dict]:
    """Add views (index, view) or real photos (None, photo) to the character's dataset, captioned with the trigger
    (by the character's captioner, else from the view prompt). What the dataset refuses (a duplicate, say) is not
    kept: such a view is rejected with the reason, such a photo is dropped with its files. Returns the refused ones
    (a photo by its own file name) with the reason. A view remade meanwhile (another tab) keeps the new one: the
    image added for it goes."""
    owner, config = character["owner"], studio.config
    files = [config.absolute(item["file"] if index is not None else item["photo"]) for index, item in items]
    dataset = _dataset_of(studio, character)
    if dataset is None and being_made(character):  # its making discards the character: nothing is made again
        raise NotFound(f"The dataset of character {character['name']!r} was deleted while the character was being "
                       "made: the character was not made (its views stay in History as generations); create it "
                       "again.")
    if dataset is None:
        raise NotFound(f"The dataset of character {character['name']!r} was deleted meanwhile: it is made again at "
                       "the next edit or training.")
    report = add_images(studio, dataset["id"], owner, files)
    added = {entry["file"]: entry["id"] for entry in report.added}
    reasons = {refusal.file: f"refused by the dataset: {_known_names(character, refusal.reason)}"
               for refusal in report.rejected}
    captioner = character["params"].get("captioner")
    images: list[tuple[int | None, dict, int]] = []
    refused: list[tuple[int | None, dict, str]] = []
    for (index, item), path in zip(items, files):
        image_id = added.get(path.name)
        if image_id is None:
            refused.append((index, item, reasons[path.name]))
            continue
        images.append((index, item, image_id))
        if not captioner:
            description = item["prompt"] if index is not None else REAL_PHOTO
            set_caption(studio, image_id, apply_template(dataset["template"], dataset["trigger"], description),
                        owner, source="character")
    stale: list[int] = []

    def target(state: dict, index: int | None, item: dict) -> dict | None:
        """The state's entry of ``item``; None when it is gone or was remade meanwhile."""
        if index is None:
            return next((photo for photo in state["photos"] if photo["photo"] == item["photo"]), None)
        view = state["views"][index]
        return view if view["generation"] == item["generation"] else None

    def link(state: dict) -> None:
        for index, item, image_id in images:
            entry = target(state, index, item)
            if entry is None:
                stale.append(image_id)
            else:
                entry["image"] = image_id
        for index, item, reason in refused:
            entry = target(state, index, item)
            if entry is not None and index is None:
                state["photos"].remove(entry)
            elif entry is not None:
                entry.update(kept=False, image=None, reason=reason)

    update_character(studio, character, link)
    for image_id in stale:
        _drop_image(studio, image_id, owner)
    for index, item, _reason in refused:
        if index is None:
            for key in ("photo", "face"):
                config.absolute(item[key]).unlink(missing_ok=True)
    if captioner and added:  # only the new images: they are the ones without a caption
        caption_dataset(studio, CaptionRequest(dataset["id"], owner, captioner), watch=on_download)
    return [{"file": item["source"] if index is None else Path(item["file"]).name, "reason": reason}
            for index, item, reason in refused]


def _known_names(character: dict, text: str) -> str:
    """``text`` (why the dataset refused an image) with the file names the character's views and photos have in
    its folders as the user knows them: ``view 2``, ``the real photo me.png``."""
    state = character["state"]
    names = {Path(view["file"]).name: f"view {number}" for number, view in enumerate(state["views"], 1)}
    names.update((Path(photo["photo"]).name, f"the real photo {photo['source']}") for photo in state["photos"])
    for stored, known in names.items():
        text = text.replace(stored, known)
    return text


def _dataset_of(studio: Studio, character: dict) -> dict | None:
    """The character's dataset; None when it has none yet or it was deleted (Datasets tab)."""
    if character["dataset_id"] is None:
        return None
    try:
        return find_dataset(studio, character["dataset_id"], character["owner"])
    except NotFound:
        return None


def _drop_image(studio: Studio, image_id: int | None, owner: str) -> None:
    """Take an image out of the character's dataset; one deleted already (Datasets tab) is gone as wanted."""
    if image_id is not None:
        with suppress(NotFound):
            delete_image(studio, image_id, owner)


def ensure_dataset(studio: Studio, character: dict, action: str, on_download: Watch | None = None) -> dict:
    """The character with its dataset: made again from the kept views and the real photos still in it when it was
    deleted in the Datasets tab. Refuses ``action`` (as :func:`~masuka.characters.library.check_made` words it)
    while the character is still being made."""
    check_made(character, action)
    if _dataset_of(studio, character) is None:
        return _remake_dataset(studio, character, on_download)
    return character


def _remake_dataset(studio: Studio, character: dict, on_download: Watch | None) -> dict:
    """A new dataset for a character whose dataset was deleted: its kept views and real photos, captioned again."""
    name, owner = character["name"], character["owner"]
    if studio.store.count("datasets", "owner = ? and name = ?", [owner, name]):
        user = "" if owner == LOCAL_USER else f" --user {shlex.quote(owner)}"
        raise InvalidInput(f"The dataset of character {name!r} was deleted, and another dataset of yours is named "
                           f"{name!r} now: delete that dataset in the Datasets tab (or `python -m masuka dataset "
                           f"delete {shlex.quote(name)} --yes{user}`), and the character's is made again.")
    log.info("the dataset of character %s was deleted: making it again", character["id"])
    character = _new_dataset(studio, character)
    state = character["state"]
    items: list[tuple[int | None, dict]] = [(i, v) for i, v in enumerate(state["views"]) if v["kept"]]
    # the real photos added to the dataset and not deleted from it (the first ones never were in it)
    items += [(None, photo) for photo in state["photos"] if photo.get("image") is not None]
    _add_to_dataset(studio, character, items, on_download)
    return find_character(studio, character["id"], owner)


def reject_view(studio: Studio, ref: str | int, owner: str, index: int | str | None, admin: bool = False) -> dict:
    """Take view ``index`` (from 1) out of the dataset; it stays listed as rejected by you."""
    character = find_character(studio, ref, owner, admin)
    check_made(character, "reject views")
    position, _old = _view(character["state"]["views"], index)
    removed: list[int | None] = []

    def reject(state: dict) -> None:
        view = state["views"][position]
        removed.append(view["image"])
        view.update(kept=False, image=None, reason="rejected by you")

    character = update_character(studio, character, reject)
    _drop_image(studio, removed[0], character["owner"])
    return character


def regenerate_view(studio: Studio, ref: str | int, owner: str, index: int | str | None, admin: bool = False,
                    on_download: Watch | None = None) -> dict:
    """Make view ``index`` (from 1) again with a new seed, score it, and put it in the dataset when it passes."""
    character = find_character(studio, ref, owner, admin)
    usable_model(studio, character["owner"], character["params"]["model"])  # as create_character checked it
    character = ensure_dataset(studio, character, "regenerate views", on_download)
    views = character["state"]["views"]
    position, old = _view(views, index)
    view = _new_view(studio, character, old["prompt"], max(v["seed"] for v in views) + 1, allow_any_path=False)
    _score(studio, character, [view], on_download)
    replaced: list[int | None] = []

    def swap(state: dict) -> None:
        replaced.append(state["views"][position]["image"])
        state["views"][position] = view

    character = update_character(studio, character, swap)
    _drop_image(studio, replaced[0], character["owner"])
    if view["kept"]:
        _add_to_dataset(studio, character, [(position, view)], on_download)
    return find_character(studio, character["id"], character["owner"])


def add_photos(studio: Studio, ref: str | int, owner: str, photos: list[str | Path], admin: bool = False,
               face: FacePick = None) -> tuple[dict, list[dict]]:
    """Add real photos of the character (``face``: which face in each, as :func:`face_picks` reads it): kept with
    the others and added to its dataset as they are. Returns the character and the photos its dataset refused
    (a duplicate of one it has, say), which are not kept, with the reason. Refused while the character is still
    being made: its dataset is not ready for them."""
    character = find_character(studio, ref, owner, admin)
    check_made(character, "add photos")  # then the photos: a refused one costs no rebuild of a deleted dataset
    paths = [Path(p) for p in photos]
    if not paths or len(character["state"]["photos"]) + len(paths) > 4 * MAX_PHOTOS:
        raise InvalidInput(f"Add 1 or more photos; a character keeps at most {4 * MAX_PHOTOS}.")
    skip_faces = character["params"].get("skip_faces", False)
    faces = [photo_face(path, pick, skip_faces) for path, pick in zip(paths, face_picks(face, len(paths)))]
    character = ensure_dataset(studio, character, "add photos")
    character, added = _keep_photos(studio, character, paths, faces)
    refused = _add_to_dataset(studio, character, [(None, photo) for photo in added])
    return find_character(studio, character["id"], character["owner"]), refused


def _view(views: list[dict], number: int | str | None) -> tuple[int, dict]:
    """The position in ``views`` of view ``number`` (from 1, as typed), and the view."""
    if not views:
        raise InvalidInput("This character has no views.")
    if number is None or not str(number).strip():
        raise InvalidInput(f"Type a view number (1 to {len(views)}).")
    position = whole_number("the view number", number, 1, len(views)) - 1
    return position, views[position]
