"""Characters tab: photos + name + trigger → face check, synthetic views scored for likeness, a dataset, a LoRA run
and its test grid. Each view can be rejected or made again; real photos can be added; a character can be deleted.
An admin of a shared app picks among every user's characters, each shown with its owner and chosen by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.components import Component

from masuka.characters import library, making, training, use
from masuka.characters.identity import OWN_THRESHOLDS
from masuka.characters.prompts import DEFAULT_VIEWS, MAX_VIEWS, pick_prompts
from masuka.characters.views import DEFAULT_STRENGTH, edit_models
from masuka.errors import InvalidInput
from masuka.image.generate import seed_run
from masuka.image.tasks import open_picture
from masuka.models.catalog import image_models, trainable_models
from masuka.studio import Studio
from masuka.ui.common import (
    UIContext,
    bind,
    friendly,
    is_admin,
    stop_flag,
    stoppable,
    user_of,
    verbatim,
    whole_number_box,
    wire_stop,
)

TAB = "character"  # the key of its Stop flag


@dataclass
class CreationForm:
    """Name, trigger word, photos and how the views are made (``create_character``'s parameters), with the
    buttons of the left column."""

    name: gr.Textbox
    trigger: gr.Textbox
    photos: gr.File
    not_a_person: gr.Checkbox
    face: gr.Textbox
    model: gr.Dropdown
    views: gr.Slider
    strength: gr.Slider
    threshold: gr.Slider
    prompts: gr.Textbox
    identity_model: gr.Textbox
    captioner: gr.Textbox
    size: gr.Number
    steps: gr.Number
    seed: gr.Number
    outfit: gr.Image
    reshuffle: gr.Button
    create: gr.Button
    stop: gr.Button

    def inputs(self) -> list[Component]:
        """What ``create_character`` takes, in order."""
        return [self.name, self.trigger, self.photos, self.model, self.views, self.prompts, self.strength,
                self.threshold, self.not_a_person, self.face, self.identity_model, self.captioner, self.size,
                self.steps, self.seed, self.outfit]


@dataclass
class CharacterPanel:
    """The chosen character: summary, faces, views with their actions, real photos, training and test grid."""

    character: gr.Dropdown
    refresh: gr.Button
    status: gr.Markdown
    faces: gr.Gallery
    gallery: gr.Gallery
    view: gr.Textbox
    reject: gr.Button
    regenerate: gr.Button
    real_photos: gr.File
    real_face: gr.Textbox
    add: gr.Button
    base: gr.Dropdown
    train_steps: gr.Number
    weight: gr.Number
    train: gr.Button
    grid: gr.Image
    confirm_delete: gr.Checkbox
    delete: gr.Button

    def details(self) -> list[Component]:
        """What ``show`` fills, in order."""
        return [self.status, self.faces, self.gallery, self.grid]


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    with gr.Row():
        with gr.Column(scale=2):
            form = _creation()
        with gr.Column(scale=3):
            panel = _character_panel()
    private, character, details = {"api_visibility": "private"}, panel.character, panel.details()
    # a person's moves only (``input``: the mouse or the keyboard), never the other's update: no loop between them
    for trigger_event in (form.reshuffle.click, form.views.input):
        trigger_event(new_prompt_set, [form.views, form.seed], form.prompts, **private)
    form.prompts.input(prompt_count, form.prompts, form.views, queue=False, trigger_mode="always_last", **private)
    ctx.on_page_load(new_prompt_set, form.prompts, [form.views, form.seed])  # the API's default stays empty
    wire_stop(studio, TAB, form.stop, panel.status, api_name="stop_character", step="view")
    # Create shows the status and views, then (``created_details``) the faces and test grid, and Delete clears them:
    # themselves, as setting the picker fires no event (``input``: only a person's pick, or an API call, shows)
    listed = bind(choices, studio)
    refused_here = {"show_progress_on": panel.status}  # progress, and a refusal, mark the status, not the views
    created = stoppable(TAB, form.create.click(bind(create_character, studio), form.inputs(),
                                               [character, panel.status, panel.gallery], api_name="create_character",
                                               **refused_here, **ctx.gpu_event()))
    created.then(listed, None, character, **private)
    created.success(bind(created_details, studio), character, [panel.faces, panel.grid], **private)
    for action, button in (("reject", panel.reject), ("regenerate", panel.regenerate)):
        button.click(bind(edit_view, studio), [character, panel.view, gr.State(action)], details,
                     api_name=f"{action}_character_view", **refused_here, **ctx.gpu_event())
    panel.add.click(bind(add_real_photos, studio), [character, panel.real_photos, panel.real_face],
                    [*details, panel.real_photos], api_name="add_character_photos", **refused_here)
    deleted = panel.delete.click(bind(delete_character, studio), [character, panel.confirm_delete],
                                 [character, panel.status, panel.confirm_delete], api_name="delete_character",
                                 **refused_here)
    deleted.then(listed, None, character, **private)
    deleted.success(lambda: ([], [], None), None, [panel.faces, panel.gallery, panel.grid], **private)
    run_info = gr.JSON(visible=False, label="Training run")
    panel.train.click(bind(train_character, studio), [character, panel.base, panel.train_steps, panel.weight],
                      [run_info, panel.status], api_name="train_character")
    character.input(bind(show, studio), character, details, api_name="character_details")
    panel.refresh.click(listed, None, character, **private).then(bind(show, studio), character, details, **private)
    ctx.on_page_load(listed, character)
    ctx.once_built(lambda: _link_image_tab(ctx))


def _link_image_tab(ctx: UIContext) -> None:
    """Picking a character's LoRA in the Image tab writes its trigger word into the prompt."""
    image = ctx.forms.get("image")
    if image is not None:
        image["loras"].input(bind(insert_triggers, ctx.studio), [image["prompt"], image["loras"]], image["prompt"],
                             api_visibility="private")


def _creation() -> CreationForm:
    """Name, trigger word, photos and how the views are made; Create and Stop."""
    edits = edit_models()
    vram = ", ".join(f"{m['name']} ~{m['vram_gb']} GB" for m in edits) or "no edit model in this build"
    view_models = [(f"{m['name']} (edit, ~{m['vram_gb']} GB)", m["id"]) for m in edits] + \
        [(f"{entry['name']} (image-to-image)", key) for key, entry in image_models().items()
         if key not in {m["id"] for m in edits}]
    with gr.Row():
        name = gr.Textbox(label="Name", placeholder="anna")
        trigger = gr.Textbox(label="Trigger word", placeholder="ohwx anna",
                             info="A rare word: every caption carries it, prompts call the character by it")
    photos = gr.File(file_count="multiple", file_types=["image"], label="1-5 photos of the character")
    with gr.Row():
        not_a_person = gr.Checkbox(False, label="Not a person (skip face checks)",
                                   info="For a creature, an object or a style: no face is looked for")
        face = _face_box()
    model = gr.Dropdown(view_models, value=making.default_view_model(), allow_custom_value=True,
                        label="View model", info=f"Edit models take the photo as a reference (GPU memory: "
                                                 f"{vram}); others start from it (image-to-image)")
    with gr.Row():
        views = gr.Slider(1, MAX_VIEWS, value=DEFAULT_VIEWS, step=1, label="Views",
                          info="Picks a new prompt set of this size; follows the prompts you type")
        strength = gr.Slider(0.1, 1, value=DEFAULT_STRENGTH, step=0.05, label="Strength (image-to-image)")
        threshold = gr.Slider(-1, 1, value=0, step=0.01, label="Identity threshold (0 = the model's own)",
                              info=f"Views less alike are rejected; the models' own: {OWN_THRESHOLDS}")
    prompts = gr.Textbox("", lines=6, max_lines=12, label="Prompt set (one view a line; saved with the character)",
                         placeholder="empty: as many prompts as Views, picked with the seed")
    with gr.Accordion("More options", open=False):
        with gr.Row():
            identity_model = gr.Textbox("", label="Face-embedding model (empty: SFace; clip: CLIP similarity)",
                                        placeholder="owner/name or a local folder (ONNX or transformers)")
            captioner = gr.Textbox("auto", label="Captioner",
                                   info=making.captioner_hint("empty"))
        with gr.Row():
            # no precision: Gradio would round a fraction, which the handlers refuse instead
            size = gr.Number(0, label="View size: longer side (0 = the model's)", info="Views keep the photo's shape")
            steps = gr.Number(0, label="Steps (0 = the model's)")
            seed = gr.Number(0, label="Seed (prompt set and views)")
            reshuffle = gr.Button("New prompt set from this seed")
        outfit = gr.Image(type="filepath", image_mode=None, height=160,
                          label="Outfit reference (optional): every view wears it; needs an edit model that takes "
                          "several images (Qwen-Image-Edit-Plus, FLUX.2)")
    with gr.Row():
        create = gr.Button("Create character", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    return CreationForm(name, trigger, photos, not_a_person, face, model, views, strength, threshold, prompts,
                        identity_model, captioner, size, steps, seed, outfit, reshuffle, create, stop)


def _character_panel() -> CharacterPanel:
    """The chosen character: summary, faces, views with their actions, real photos, training and test grid."""
    with gr.Row():
        character = gr.Dropdown([], label="Character", allow_custom_value=True, scale=3)
        refresh = gr.Button("↻", scale=0, min_width=40)
    status = gr.Markdown(label="Status")
    # whole faces, one small square each (a row of 8, then a scroll bar): not widened to fill the row, nor cropped
    faces = gr.Gallery(label="Faces the views are compared with (cropped from the photos)", columns=8, height=150,
                       fit_columns=False, object_fit="contain", interactive=False)
    gallery = gr.Gallery(label="Views: number, identity score, kept or rejected", columns=6, height=360,
                         interactive=False)
    with gr.Row():
        # text, checked by the handler: an empty box or a fraction is refused, not taken as view 1 or rounded
        view = whole_number_box(gr.Textbox(label="View number", placeholder="the number under the view", scale=1))
        reject = gr.Button("Reject view", scale=1)
        regenerate = gr.Button("Regenerate view", scale=1)
    with gr.Row():
        real_photos = gr.File(file_count="multiple", file_types=["image"], label="Real photos", scale=3)
        real_face = _face_box()
        add = gr.Button("Add real photos", scale=1)
    with gr.Row():
        trainable = trainable_models()
        base = gr.Dropdown([(m["name"], key) for key, m in trainable.items()], value=next(iter(trainable)),
                           allow_custom_value=True, label="Base model to train", scale=3)
        train_steps = gr.Number(training.CHARACTER_PRESET["steps"], label="Steps", scale=1)  # a fraction is refused
        weight = gr.Number(training.DEFAULT_WEIGHT, label="LoRA weight", scale=1)
    train = gr.Button("Train character LoRA", variant="primary")
    grid = gr.Image(label="Test grid (after training)", type="filepath", interactive=False)
    with gr.Accordion("Delete character", open=False), gr.Row():
        confirm_delete = gr.Checkbox(False, label="Yes, delete this character and its photos",
                                     info="Its dataset, runs and LoRA stay: delete them in their own tabs", scale=3)
        delete = gr.Button("Delete character", variant="stop", scale=1)
    return CharacterPanel(character, refresh, status, faces, gallery, view, reject, regenerate, real_photos,
                          real_face, add, base, train_steps, weight, train, grid, confirm_delete, delete)


def _face_box() -> gr.Textbox:
    """Which face is the character in photos that show several people."""
    return gr.Textbox("", label="Face number (empty or 0 = the only face)", placeholder="2, or 2, 0, 1",
                      info="When a photo shows several people: 1 is the biggest face. One number for every photo, "
                           "or one per photo in order")


@friendly
def show(studio: Studio, character: str, request: gr.Request):
    """A character's summary (notes and a failed test grid included), its face crops, its views with their scores,
    and its test grid; with no character chosen, the status is left as it is."""
    if not character:
        return gr.skip(), [], [], None
    found = library.find_character(studio, character, user_of(request), is_admin(studio, request))
    text, pictures = _summary(studio, found, user_of(request))
    crops, grid = _faces_and_grid(studio, found)
    return text, crops, pictures, grid


@friendly
def created_details(studio: Studio, character: str, request: gr.Request):
    """The face crops and test grid of the character Create has just made and shown (its status and views)."""
    return _faces_and_grid(studio, library.find_character(studio, character, user_of(request),
                                                          is_admin(studio, request)))


def _summary(studio: Studio, found: dict, user: str) -> tuple[str, list[tuple[str, str]]]:
    """A character's status Markdown (what users typed shown as typed) and its views with their scores."""
    summary = library.summary(studio, found)
    # a view whose History entry was deleted shows its dataset's copy, else is left out (its number says so)
    shown = [(library.view_picture(studio, found, v), f"{i}. {_verdict(v)}") for i, v in enumerate(summary["views"], 1)]
    pictures = [(str(path), caption) for path, caption in shown if path is not None]
    flagged = sum(1 for v in summary["views"] if v["reason"] == making.FLAGGED)
    runs = ", ".join(f"run {r}" for r in summary["runs"]) or "not trained yet (or train it in the Train tab)"
    owner = "" if found["owner"] == user else f" ({verbatim(found['owner'])})"
    made = (f"{library.BEING_MADE} (press ↻)" if summary["being_made"] else
            f"{library.dataset_words(summary)}, {summary['rejected'] - flagged} rejected"
            + (f", {flagged} {making.FLAGGED}" if flagged else ""))
    text = (f"**{verbatim(summary['name'])}**{owner}: trigger {verbatim(summary['trigger'])}, {verbatim(made)}; "
            f"{runs}; LoRA {verbatim(summary['lora'] or '-')}")
    text += "".join(f"\n\nNote: {verbatim(note)}" for note in summary["notes"])
    if summary["grid_error"]:
        text += f"\n\nThe test grid failed: {verbatim(summary['grid_error'])}"
    return text, pictures


def _verdict(view: dict) -> str:
    """A view's caption after its number: its identity score and whether it is kept; a view the safety check
    flagged (never scored) says so."""
    if view["reason"] == making.FLAGGED:
        return making.FLAGGED
    return f"{'-' if view['score'] is None else view['score']} {'kept' if view['kept'] else 'rejected'}"


def _faces_and_grid(studio: Studio, found: dict) -> tuple[list, str | None]:
    """A character's face crops and its test grid's file (None before one is made)."""
    crops = [open_picture(studio.config.absolute(p["face"]), "face crop") for p in found["state"]["photos"]]
    grid = found["state"].get("grid")
    path = studio.config.absolute(grid) if grid else None
    return crops, str(path) if path is not None and path.is_file() else None  # a grid deleted in History: none


def choices(studio: Studio, request: gr.Request):
    """The picker's characters: their names, or for an admin of a shared app ``name (owner)`` chosen by id (two
    users' characters may share a name)."""
    rows = library.list_characters(studio, user_of(request), is_admin(studio, request))
    if _by_id(studio, request):
        return gr.Dropdown(choices=[(f"{r['name']} ({r['owner']})", str(r["id"])) for r in rows])
    return gr.Dropdown(choices=[r["name"] for r in rows])


def _by_id(studio: Studio, request: gr.Request | None) -> bool:
    """Whether the picker offers every user's characters by id (an admin of a shared app)."""
    return studio.config.multi_user and is_admin(studio, request)


def uploads(studio: Studio, files: list[str] | None) -> list[Path]:
    if not files:
        raise InvalidInput("Drop one to five photos of the character first.")
    return [uploaded(studio, path) for path in files]


def uploaded(studio: Studio, path: str) -> Path:
    """``path`` when it is a file uploaded to this app (nothing else on the disk is taken)."""
    return studio.config.inside(path, Path(gr.utils.get_upload_folder()))


@friendly
def create_character(studio: Studio, name: str, trigger: str, photos: list[str] | None, model: str = "sdxl",
                     views: int = DEFAULT_VIEWS, prompts: str = "", strength: float = DEFAULT_STRENGTH,
                     threshold: float = 0, not_a_person: bool = False, face: str = "",
                     identity_model: str = "", captioner: str = "auto", size: int = 0, steps: int = 0,
                     seed: int = 0, outfit: str | None = None, request: gr.Request = None, progress=gr.Progress()):
    """Check the photos, make the views (dressed as in ``outfit`` when given), score them and keep the likely ones
    as a dataset; returns the character's name, a summary and the views with their scores. Given ``prompts``
    (one a line), their count is the number of views and ``views`` is not read (the slider follows them in the
    tab; an API client sends the slider's default)."""
    picked = [line for line in (prompts or "").splitlines() if line.strip()] or None
    with stop_flag(studio, TAB, request) as stop:  # first: a refusal drops the flag the click armed too
        job = making.CharacterRequest(
            name=name, photos=uploads(studio, photos), trigger=trigger, owner=user_of(request), model=model,
            views=None if picked else views, prompts=picked, seed=seed or 0, strength=float(strength),
            steps=steps or None, size=size or None, threshold=float(threshold or 0) or None,
            identity_model=identity_model, face=face or None, skip_faces=bool(not_a_person),
            captioner=captioner, outfit=uploaded(studio, outfit) if outfit else None)
        report = making.create_character(
            studio, job, on_progress=lambda done, total, text: progress((done, total), desc=f"View {done}/{total}"),
            stop=stop)
    value = str(report.character) if _by_id(studio, request) else library.character_name(name)
    found = library.find_character(studio, value, user_of(request), is_admin(studio, request))
    return value, *_summary(studio, found, user_of(request))  # faces and grid follow: created_details


@friendly
def edit_view(studio: Studio, character: str, number: str | int | None, action: str, request: gr.Request = None):
    owner, admin = user_of(request), is_admin(studio, request)
    if action == "reject":
        making.reject_view(studio, character, owner, number, admin)
    else:
        making.regenerate_view(studio, character, owner, number, admin)
    return show(studio, character, request)


@friendly
def add_real_photos(studio: Studio, character: str, photos: list[str] | None, face: str = "",
                    request: gr.Request = None):
    """Add real photos; the ones the character's dataset refuses (duplicates) are not kept, and the message says
    which and why. The file box is emptied, so that pressing Add again does not add them twice."""
    _found, refused = making.add_photos(studio, character, user_of(request), uploads(studio, photos),
                                        is_admin(studio, request), face or None)
    text, faces, pictures, grid = show(studio, character, request)
    text += "".join(f"\n\nNot kept: {verbatim(r['file'])}, {verbatim(r['reason'])}" for r in refused)
    return text, faces, pictures, grid, None


@friendly
def delete_character(studio: Studio, character: str, confirm: bool = False, request: gr.Request = None):
    """Delete the character and its photos (its dataset, runs and LoRA stay); returns the picker emptied, a message
    saying what stays, and the confirmation box cleared."""
    if not confirm:
        raise InvalidInput("Tick “Yes, delete this character and its photos” first: it cannot be undone.")
    found = library.delete_character(studio, character, user_of(request), is_admin(studio, request))
    return "", verbatim(library.deleted_note(studio, found)), False


@friendly
def train_character(studio: Studio, character: str, base: str, steps: int = training.CHARACTER_PRESET["steps"],
                    weight: float = training.DEFAULT_WEIGHT, request: gr.Request = None):
    """Queue the character's LoRA run (character preset); the test grid follows when it completes."""
    run_id = training.train_character(studio, character, user_of(request), base=base,
                                      admin=is_admin(studio, request),
                                      weight=float(weight), steps=steps)
    return {"run": run_id}, f"Run {run_id} queued: follow it in the Train tab; press ↻ here for the test grid."


def prompt_count(prompts: str):
    """The Views slider following the prompt set typed in the box: its count of prompts (left as it is while the box
    is empty)."""
    count = sum(1 for line in (prompts or "").splitlines() if line.strip())
    return min(count, MAX_VIEWS) if count else gr.skip()


@friendly
def new_prompt_set(count: int, seed: int) -> str:
    return "\n".join(pick_prompts(count, seed_run(seed or 0, 1)))  # -1: a random set


def insert_triggers(studio: Studio, prompt: str, picked: list[str] | None, request: gr.Request):
    return use.with_triggers(studio, user_of(request), prompt, picked or [])


