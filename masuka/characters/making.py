"""Making a character: photos -> faces -> synthetic views -> identity filter -> dataset, and the edits after it
(reject a view, regenerate one, add real photos).

Every photo is checked (a readable picture with one face, or the face the user picked) before anything is made.
Views are generated one by one, scored against the photos' faces together, and those at or above the threshold
become a normal dataset whose captions all carry the trigger word: from a captioner when one is named, else
from the view's own prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.characters.faces import photo_face
from masuka.characters.identity import check_threshold, likeness_crop, load_embedder, scores
from masuka.characters.library import (
    character_dir,
    delete_character,
    find_character,
    new_character,
    update_character,
)
from masuka.characters.prompts import DEFAULT_VIEWS, check_prompts, pick_prompts
from masuka.characters.views import ViewRequest, check_outfit, edit_models, make_view
from masuka.datasets.adding import add_images
from masuka.datasets.caption_template import DEFAULT_TEMPLATE, apply_template
from masuka.datasets.captioning import CaptionRequest, caption_dataset
from masuka.datasets.library import create_dataset, delete_dataset, delete_image, find_dataset, set_caption
from masuka.errors import InvalidInput, NotFound
from masuka.gpu import check_stop
from masuka.image.tasks import open_picture
from masuka.jobs import Watch
from masuka.store import LOCAL_USER
from masuka.studio import Studio
from masuka.validation import whole_number

MAX_PHOTOS = 5
#: a character dataset keeps small views (64 px and up) and refuses only exact look-alikes
DATASET_OPTIONS = {"min_side": 64, "near_distance": 0}
REAL_PHOTO = "a real photo"
AUTO_CAPTIONER = "auto"
Progress = Callable[[int, int, str], None]  # (views done, views in all, what happened)


def chosen_captioner(choice: str) -> str:
    """The captioner a character's views get: ``auto`` is Florence-2 when it is already downloaded, else none
    (captions come from the view prompts)."""
    choice = (choice or "").strip()
    if choice != AUTO_CAPTIONER:
        return choice
    from masuka.datasets.captioners import resolve_captioner
    from masuka.models.manage import cached_repos

    source = resolve_captioner("florence2").source
    return source if source in cached_repos() else ""


def default_view_model() -> str:
    """The catalog's smallest edit model, else SDXL (image-to-image)."""
    models = sorted(edit_models(), key=lambda m: m["vram_gb"] or 0)
    return models[0]["id"] if models else "sdxl"


@dataclass
class CharacterRequest:
    """Everything ``character create`` needs; the prompt set defaults to ``views`` prompts picked with ``seed``."""

    name: str
    photos: list[str | Path]
    trigger: str
    owner: str = LOCAL_USER
    model: str = field(default_factory=default_view_model)
    views: int = DEFAULT_VIEWS
    prompts: list[str] | None = None
    seed: int = 0
    strength: float = 0.6
    steps: int | None = None
    size: int | None = None
    threshold: float | None = None  # None: the identity model's own
    identity_model: str = ""
    face: int | None = None  # which face (1 = biggest) when a photo shows several people
    skip_faces: bool = False  # a character that is not a person, or a style
    captioner: str = AUTO_CAPTIONER  # "auto": Florence-2 when downloaded; "" = captions from the view prompts
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

    Nothing is left behind when it fails: the row, its files and its dataset go (the views stay in History)."""
    photos = [Path(p) for p in request.photos]
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise InvalidInput(f"Give 1 to {MAX_PHOTOS} photos of the character (got {len(photos)}).")
    faces = [photo_face(path, request.face, request.skip_faces) for path in photos]
    prompts = check_prompts(request.prompts) if request.prompts else pick_prompts(request.views, request.seed)
    threshold = check_threshold(request.threshold)
    if request.outfit:
        check_outfit(request.model)
        with open_picture(request.outfit, "outfit reference") as picture:
            outfit = picture.convert("RGB")
    if request.size is not None and not 64 <= int(request.size) <= 2048:
        raise InvalidInput(f"The view size must be 64-2048 pixels (got {request.size}).")
    if studio.store.count("datasets", "owner = ? and name = ?", [request.owner, request.name.strip()]):
        raise InvalidInput(f"You already have a dataset named {request.name.strip()!r}: the character's dataset "
                           "takes its name, so pick another name.")
    # the identity model is fetched (and checked) before any view is made: a missing one fails in seconds, not
    # after the views, and its download happens outside the views' GPU work
    load_embedder(studio, request.owner, request.identity_model, on_download, faces=not request.skip_faces)
    params = {"model": request.model, "strength": request.strength, "steps": request.steps, "size": request.size,
              "seed": request.seed, "threshold": threshold, "identity_model": request.identity_model,
              "face": request.face, "skip_faces": request.skip_faces,
              "captioner": chosen_captioner(request.captioner),
              "prompts": prompts}
    character = new_character(studio, request.name, request.owner, request.trigger, params)
    try:
        character = _keep_photos(studio, character, photos, faces)
        if request.outfit:
            character = _keep_outfit(studio, character, outfit)
        views = _make_views(studio, character, prompts, on_progress, stop, allow_any_path)
        notes = _score(studio, character, views, on_download)
        dataset = create_dataset(studio, character["name"], character["owner"], character["trigger"],
                                 DEFAULT_TEMPLATE, DATASET_OPTIONS)
        character = update_character(studio, character, dataset_id=dataset["id"],
                                     state={**character["state"], "views": views, "dataset": dataset["name"]})
        refused = _add_to_dataset(studio, character, [(i, v) for i, v in enumerate(views) if v["kept"]],
                                  on_download)
    except BaseException:
        _discard(studio, character)
        raise
    character = find_character(studio, character["id"], character["owner"], admin=True)
    views = character["state"]["views"]
    rejected = [{"file": Path(v["file"]).name, "reason": v["reason"]} for v in views if not v["kept"]]
    return CharacterReport(character["id"], character["state"]["dataset"], sum(v["kept"] for v in views),
                           rejected + refused, notes)


def _discard(studio: Studio, character: dict) -> None:
    row = studio.store.get("characters", character["id"])
    if row and row["dataset_id"]:
        try:
            delete_dataset(studio, row["dataset_id"], row["owner"])
        except NotFound:
            pass
    delete_character(studio, character["id"], character["owner"], admin=True)


def _keep_photos(studio: Studio, character: dict, photos: list[Path], faces: list) -> dict:
    """Copy the photos and their face crops into the character's folder."""
    folder = character_dir(studio, character["id"])
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    kept = list(character["state"]["photos"])
    for path, face in zip(photos, faces):
        number = len(kept) + 1
        photo, crop = folder / "photos" / f"photo-{number}.png", folder / "photos" / f"face-{number}.png"
        face.photo.save(photo)
        face.crop.save(crop)
        kept.append({"photo": studio.config.relative(photo), "face": studio.config.relative(crop),
                     "box": list(face.box) if face.box else None, "source": path.name})
    return update_character(studio, character, state={**character["state"], "photos": kept})


def _keep_outfit(studio: Studio, character: dict, outfit: Image.Image) -> dict:
    """Copy the outfit reference into the character's folder; the views (and regenerated ones) use that copy."""
    path = character_dir(studio, character["id"]) / "photos" / "outfit.png"
    outfit.save(path)
    return update_character(studio, character, params={**character["params"], "outfit": studio.config.relative(path)})


def _view_request(studio: Studio, character: dict) -> ViewRequest:
    params = character["params"]
    size = params.get("size")
    outfit = studio.config.absolute(params["outfit"]) if params.get("outfit") else None
    return ViewRequest(params["model"], params["strength"], params.get("steps"), size, size, outfit)


def _new_view(studio: Studio, character: dict, description: str, seed: int, allow_any_path: bool) -> dict:
    photos = character["state"]["photos"]
    photo = studio.config.absolute(photos[seed % len(photos)]["photo"])
    result = make_view(studio, character["owner"], photo, description, seed, _view_request(studio, character),
                       allow_any_path)
    return {"file": studio.config.relative(result.path), "prompt": description, "seed": result.seed,
            "generation": result.id, "score": None, "kept": False, "reason": "", "image": None}


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


def _score(studio: Studio, character: dict, views: list[dict],
           on_download: Watch | None) -> list[str]:
    """Score ``views`` in place against the photos' faces; keep those at or above the threshold."""
    params, config = character["params"], studio.config
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
    (by the character's captioner, else from the view prompt). Returns the files the dataset refused (duplicates)
    with the reason."""
    owner, config = character["owner"], studio.config
    files = [config.absolute(item["file"] if index is not None else item["photo"]) for index, item in items]
    report = add_images(studio, character["dataset_id"], owner, files, admin=True)
    added = {entry["file"]: entry["id"] for entry in report.added}
    dataset = find_dataset(studio, character["dataset_id"], owner, admin=True)
    captioner = character["params"].get("captioner")
    state = character["state"]
    for (index, item), path in zip(items, files):
        image_id = added.get(path.name)
        if image_id is None:
            continue
        if not captioner:
            description = item["prompt"] if index is not None else REAL_PHOTO
            set_caption(studio, image_id, apply_template(dataset["template"], dataset["trigger"], description),
                        owner, admin=True, source="character")
        if index is not None:
            state["views"][index]["image"] = image_id
        else:
            item["image"] = image_id
    update_character(studio, character, state=state)
    if captioner and added:  # only the new images: they are the ones without a caption
        caption_dataset(studio, CaptionRequest(dataset["id"], owner, captioner, admin=True), watch=on_download)
    return [r.to_dict() for r in report.rejected]


def reject_view(studio: Studio, ref: str | int, owner: str, index: int, admin: bool = False) -> dict:
    """Take view ``index`` (from 1) out of the dataset; it stays listed as rejected by the user."""
    character = find_character(studio, ref, owner, admin)
    _position, view = _view(character["state"]["views"], index)
    if view["image"]:
        delete_image(studio, view["image"], character["owner"], admin=True)
    view.update(kept=False, image=None, reason="rejected by you")
    return update_character(studio, character, state=character["state"])


def regenerate_view(studio: Studio, ref: str | int, owner: str, index: int, admin: bool = False,
                    on_download: Watch | None = None) -> dict:
    """Make view ``index`` (from 1) again with a new seed, score it, and put it in the dataset when it passes."""
    character = find_character(studio, ref, owner, admin)
    views = character["state"]["views"]
    position, old = _view(views, index)
    view = _new_view(studio, character, old["prompt"], max(v["seed"] for v in views) + 1, allow_any_path=False)
    _score(studio, character, [view], on_download)
    if old["image"]:
        delete_image(studio, old["image"], character["owner"], admin=True)
    views[position] = view
    character = update_character(studio, character, state=character["state"])
    if view["kept"] and character["dataset_id"]:
        _add_to_dataset(studio, character, [(position, view)], on_download)
    return find_character(studio, character["id"], character["owner"], admin=True)


def add_photos(studio: Studio, ref: str | int, owner: str, photos: list[str | Path], admin: bool = False) -> dict:
    """Add real photos of the character: kept with the others and added to its dataset as they are."""
    character = find_character(studio, ref, owner, admin)
    paths = [Path(p) for p in photos]
    if not paths or len(character["state"]["photos"]) + len(paths) > 4 * MAX_PHOTOS:
        raise InvalidInput(f"Add 1 or more photos; a character keeps at most {4 * MAX_PHOTOS}.")
    params = character["params"]
    faces = [photo_face(path, params.get("face"), params.get("skip_faces", False)) for path in paths]
    before = len(character["state"]["photos"])
    character = _keep_photos(studio, character, paths, faces)
    if character["dataset_id"]:
        _add_to_dataset(studio, character, [(None, p) for p in character["state"]["photos"][before:]])
    return find_character(studio, character["id"], character["owner"], admin=True)


def _view(views: list[dict], number: int) -> tuple[int, dict]:
    """The position in ``views`` of view ``number`` (from 1), and the view."""
    if not views:
        raise InvalidInput("This character has no views.")
    position = whole_number("the view number", number, 1, len(views)) - 1
    return position, views[position]
