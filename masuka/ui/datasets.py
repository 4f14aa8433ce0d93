"""Datasets tab: create a dataset, add photos or a zip, see every refusal, edit captions, caption, export."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.components import Component
from gradio.events import Dependency

from masuka.datasets import adding, captioning, export, library
from masuka.datasets.caption_template import DEFAULT_TEMPLATE
from masuka.datasets.captioners import DEFAULT_FAMILY, MODES, captioner_models, family_names
from masuka.datasets.formats import FORMATS
from masuka.datasets.preprocess import CROPS, MAX_SIZE, SIZES, PrepOptions
from masuka.datasets.stats import dataset_statistics
from masuka.errors import Cancelled, InvalidInput, MasukaError
from masuka.store import row_id
from masuka.studio import Studio
from masuka.ui.common import (
    MAX_ID,
    UIContext,
    bind,
    friendly,
    is_admin,
    stop_flag,
    stoppable,
    usable_file,
    user_of,
    whole_number_box,
    wire_stop,
)
from masuka.validation import page_number, whole_number

REPORT_COLUMNS = ["file", "result", "reason"]
IMAGE_COLUMNS = ["id", "file", "caption"]
PAGE_SIZES = [24, 48, 96]
GPU_WAIT_S = 5.0
CAPTIONS = "captions"  # the key of the caption pass's Stop flag


@dataclass
class NewDataset:
    """The "New dataset" form: name, trigger word, caption template and the preprocessing options."""

    name: gr.Textbox
    trigger: gr.Textbox
    template: gr.Textbox
    size: gr.Dropdown
    crop: gr.Radio
    flip: gr.Checkbox
    min_side: gr.Number
    blur: gr.Number
    dedupe: gr.Checkbox
    create: gr.Button

    def form(self) -> list[Component]:
        """What ``create_dataset`` takes, in order."""
        return [self.name, self.trigger, self.template, self.size, self.crop, self.flip, self.min_side, self.blur,
                self.dedupe]


@dataclass
class ImagesView:
    """One page of the dataset's images: statistics, gallery, the caption table and the selected image."""

    stats: gr.Markdown
    page: gr.Number
    page_size: gr.Dropdown
    page_info: gr.Markdown
    gallery: gr.Gallery
    table: gr.Dataframe
    loaded: gr.State  # {image id: caption} of the page as drawn, in its order: what Save compares edits with
    save: gr.Button
    selected: gr.Textbox
    remove: gr.Button

    def outputs(self) -> list[Component]:
        """What ``view`` fills, in order."""
        return [self.stats, self.gallery, self.table, self.loaded, self.page_info, self.selected]


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    with gr.Row():
        dataset = gr.Dropdown([], value=None, label="Dataset", allow_custom_value=True, scale=4,
                              info="Pick one of your datasets, or create one below")
        refresh = gr.Button("↻", scale=0, min_width=40)
    new = _new_dataset()
    status = gr.Markdown(label="Status")
    with gr.Accordion("Add images", open=True):
        # no file_types filter: a file of another type reaches the check and is listed with the reason
        files = gr.File(file_count="multiple", label="Photos, a .zip, .txt captions or a metadata.jsonl")
        add = gr.Button("Add to dataset", variant="primary")
        report = gr.Dataframe(headers=REPORT_COLUMNS, interactive=False, wrap=True, max_height=320,
                              label="Added and refused files")
    images = _images_view()
    caption_form, caption, stop, caption_status = _auto_caption()
    with gr.Accordion("Export", open=False):
        with gr.Row():
            fmt = gr.Radio(list(FORMATS), value=FORMATS[0], label="Layout",
                           info="kohya: image + .txt; imagefolder: metadata.jsonl for 🤗 datasets")
            export_button = gr.Button("Export as zip")
        download = gr.File(label="Download", interactive=False)
    with gr.Accordion("Delete dataset", open=False):
        delete = gr.Button("Delete this dataset…", variant="stop")
        with gr.Group(visible=False) as confirm:
            confirm_text = gr.Markdown()
            named = gr.State(None)  # {"id", "name"} of the dataset the confirmation names (None for API callers)
            with gr.Row():
                really = gr.Button("Yes, delete it and its files", variant="stop")
                cancel = gr.Button("Cancel")

    private, listed = {"api_visibility": "private"}, bind(choices, studio)
    view_page, view_inputs = bind(view, studio), [dataset, images.page, images.page_size, images.selected]
    view_outputs = images.outputs()
    edits = _wire_images(ctx, dataset, images, view_page, view_inputs, status, listed)
    on_status = {"show_progress_on": status}  # progress, and a refusal, mark the status, not the report or picker
    new.create.click(bind(create_dataset, studio), new.form(), [dataset, status], api_name="create_dataset",
                     **on_status).then(
        listed, None, dataset, **private)
    ctx.register_form("dataset", {"dataset": dataset, "files": files}, tab="datasets")  # "Send to Datasets"
    added = add.click(bind(add_images, studio), [dataset, files], [report, status], api_name="add_images",
                      **on_status)
    added.then(view_page, view_inputs, view_outputs, **private).then(listed, None, dataset, **private)
    captioned = stoppable(CAPTIONS, caption.click(bind(caption_dataset, studio), [dataset, *caption_form],
                                                  caption_status, api_name="caption_dataset", **ctx.gpu_event()))
    captioned.then(view_page, view_inputs, view_outputs, **private)
    wire_stop(studio, CAPTIONS, stop, caption_status, api_name="stop_captioning", step="batch")
    export_button.click(bind(export_dataset, studio), [dataset, fmt], download, api_name="export_dataset")
    delete.click(bind(ask_delete, studio), dataset, [confirm, confirm_text, named], **private)
    hide = lambda: gr.Group(visible=False)  # noqa: E731
    cancel.click(hide, None, confirm, **private)
    dataset.change(hide, None, confirm, **private)  # the confirmation names the dataset it was asked for
    for event in (dataset.change, added.then, captioned.then, *(edit.then for edit in edits)):
        # an export of another (or a deleted) dataset, or one its change removed (drop_exports): a 403 link
        event(lambda: None, None, download, **private)
    really.click(bind(confirm_delete, studio), [dataset, named], [dataset, status], api_name="delete_dataset",
                 **on_status).then(
        hide, None, confirm, **private).then(listed, None, dataset, **private)
    ctx.picker(listed, dataset, refresh)


def _wire_images(ctx: UIContext, dataset: gr.Dropdown, images: ImagesView, view_page, view_inputs: list,
                 status: gr.Markdown, listed) -> tuple[Dependency, Dependency]:
    """Paging, caption editing and deleting one image (then the picker's image counts are redrawn); returns the
    events that change the dataset (saving captions, deleting an image)."""
    studio, private, view_outputs = ctx.studio, {"api_visibility": "private"}, images.outputs()
    dataset.change(view_page, view_inputs, view_outputs, **private)
    images.page.submit(view_page, view_inputs, view_outputs, **private)
    images.page_size.change(view_page, view_inputs, view_outputs, **private)
    saved = images.save.click(bind(save_captions, studio), [dataset, images.table, images.loaded], status,
                              api_name="save_captions")
    saved.success(view_page, view_inputs, view_outputs, **private)  # a refused caption stays in the table as typed
    images.gallery.select(pick, images.loaded, images.selected, **private)
    images.table.select(pick, images.loaded, images.selected, **private)
    removed = images.remove.click(bind(remove_image, studio), [images.selected, dataset], [status, images.selected],
                                  api_name="delete_image")
    removed.then(view_page, view_inputs, view_outputs, **private).then(listed, None, dataset, **private)
    return saved, removed


def _new_dataset() -> NewDataset:
    defaults = PrepOptions()
    with gr.Accordion("New dataset", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name", placeholder="my-cat")
            trigger = gr.Textbox(label="Trigger word", placeholder="sks cat",
                                 info="The word your prompts will use to call the concept")
            template = gr.Textbox(DEFAULT_TEMPLATE, label="Caption template", info="{trigger} and {caption}")
        with gr.Row():
            size = gr.Dropdown(list(SIZES), value=defaults.size, label="Target size (px)", allow_custom_value=True)
            crop = gr.Radio(list(CROPS), value=defaults.crop, label="Crop",
                            info="none: longest side to the target size; center/face: square")
            flip = gr.Checkbox(defaults.flip, label="Add flipped copies")
        with gr.Row():
            # no precision: Gradio would round a fraction, which the handler refuses instead
            min_side = gr.Number(defaults.min_side, label="Minimum short side (px)")
            blur = gr.Number(defaults.blur_threshold, label="Blur threshold (0 = off)",
                             info="Variance of the Laplacian; blurry photos score below ~50")
            dedupe = gr.Checkbox(defaults.dedupe, label="Refuse duplicates and near-duplicates")
        create = gr.Button("Create dataset", variant="primary")
    return NewDataset(name, trigger, template, size, crop, flip, min_side, blur, dedupe, create)


def _images_view() -> ImagesView:
    stats = gr.Markdown()
    with gr.Row(equal_height=True):
        page = gr.Number(value=1, label="Page", scale=1, min_width=100)  # unrounded: view refuses a fraction
        page_size = gr.Dropdown(PAGE_SIZES, value=PAGE_SIZES[0], label="Per page", scale=1, min_width=100)
        page_info = gr.Markdown()
        gr.Column(scale=4)
    gallery = gr.Gallery(label="Images", columns=6, height=420, interactive=False, allow_preview=True)
    table = gr.Dataframe(headers=IMAGE_COLUMNS, interactive=True, static_columns=[0, 1], wrap=True, type="array",
                         column_widths=["8%", "22%", "70%"], label="Captions: edit in place, then save")
    loaded = gr.State({})
    with gr.Row():
        save = gr.Button("Save captions")
        selected = whole_number_box(gr.Textbox(label="Selected image id", placeholder="click an image", scale=0,
                                               min_width=140))
        remove = gr.Button("Delete selected image", variant="stop")
    return ImagesView(stats, page, page_size, page_info, gallery, table, loaded, save, selected, remove)


def _auto_caption() -> tuple[list[Component], gr.Button, gr.Button, gr.Markdown]:
    """The Auto-caption accordion: its options (in the order ``caption_dataset`` takes them after the dataset),
    Caption, Stop and the status line."""
    with gr.Accordion("Auto-caption", open=False):
        with gr.Row():
            captioner = gr.Dropdown([(e["name"], key) for key, e in captioner_models().items()],
                                    value=next(iter(captioner_models())), allow_custom_value=True, label="Captioner",
                                    info=f"{family_names()}: catalog, repo id (owner/name) or local folder")
            mode = gr.Radio(list(MODES), value="detailed", label=f"Caption length ({family_names(length_modes=True)})")
        with gr.Row():
            caption_template = gr.Textbox("", label="Template (empty: the dataset's)", placeholder=DEFAULT_TEMPLATE)
            overwrite = gr.Checkbox(False, label="Overwrite existing captions")
            batch_size = gr.Slider(1, 32, value=8, step=1, label="Batch size")
        with gr.Row():
            caption = gr.Button("Caption images", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        caption_status = gr.Markdown(label="Status")
    return [captioner, mode, caption_template, overwrite, batch_size], caption, stop, caption_status


def choices(studio: Studio, request: gr.Request):
    """The dataset picker's choices: the user's datasets with their sizes."""
    rows = library.list_datasets(studio, user_of(request), is_admin(studio, request))
    return gr.Dropdown(choices=[(f"{r['name']} ({r['images']} images)", r["name"]) for r in rows])


@friendly
def create_dataset(studio: Studio, name: str, trigger: str = "", template: str = DEFAULT_TEMPLATE, size: int = 1024,
                   crop: str = "none", flip: bool = False, min_side: int = 256, blur_threshold: float = 0.0,
                   dedupe: bool = True, request: gr.Request = None):
    """Create an empty dataset; returns its name and a status line."""
    if min_side is not None:  # the options would cut a fraction off
        min_side = whole_number("minimum short side", min_side, 0, MAX_SIZE)
    options = {"size": size, "crop": crop, "flip": flip, "min_side": min_side, "blur_threshold": blur_threshold,
               "dedupe": dedupe}
    row = library.create_dataset(studio, name, user_of(request), trigger, template, options)
    return row["name"], f"Created dataset **{row['name']}** (id {row['id']}). Add images below."


@friendly
def add_images(studio: Studio, dataset: str, files: list[str] | None, request: gr.Request = None,
               progress=gr.Progress()):
    """Add photos, zips and captions to a dataset; returns one row per file: added or refused, and why."""
    if not files:
        raise InvalidInput("Drop some photos or a zip first.")
    files = [usable_file(studio, request, path) for path in files]  # uploaded, or a result sent from another tab
    result = adding.add_images(studio, dataset, user_of(request), files, admin=is_admin(studio, request),
                    on_progress=lambda done, total, file: progress((done, total), desc=file, unit="files"))
    notes: dict[str, list[str]] = {}
    for note in result.notes:
        notes.setdefault(note["file"], []).append(note["note"])
    rows = [[a["file"], "added", "; ".join(notes.get(a["file"], []))] for a in result.added]
    rows += [[r.file, "refused", r.reason] for r in result.rejected]
    summary = f"Added **{len(result.added)}**, refused **{len(result.rejected)}**."
    return rows, summary


@friendly
def view(studio: Studio, dataset: str | None, page: float | None, size: int, selected: int | str | None = None,
         request: gr.Request = None):
    """One page of the dataset: statistics, gallery, caption table, the page's ``{image id: caption}``, "page n
    of m" and the selected image id, kept only while that image is on the page (another dataset or page clears
    it, so Delete never takes an image no longer shown)."""
    if not dataset:
        return "", [], [], {}, "", ""
    try:
        row = library.find_dataset(studio, dataset, user_of(request), is_admin(studio, request))
    except MasukaError:  # a name still being typed
        return "", [], [], {}, "", ""
    size = int(size or PAGE_SIZES[0])
    pages = max(1, -(-library.count_images(studio, row["id"]) // size))
    number = min(page_number(page), pages)
    images = library.dataset_images(studio, row["id"], limit=size, offset=(number - 1) * size)
    gallery_items = [(str(i["file"]), f"#{i['id']} {i['caption'] or '(no caption)'}") for i in images]
    data = [[i["id"], i["source_name"], i["caption"] or ""] for i in images]
    shown = {str(i["id"]) for i in images}
    return (_stats_text(dataset_statistics(studio, row)), gallery_items, data,
            {i["id"]: i["caption"] or "" for i in images}, f"page {number} of {pages}",
            selected if str(selected).strip() in shown else "")


@friendly
def save_captions(studio: Studio, dataset: str, table: list[list] | None, loaded: dict[int, str] | None = None,
                  request: gr.Request = None):
    """Save the captions edited in the table (rows of id, file, caption): those that differ from ``loaded`` (the
    page as drawn), and only where no one changed them since; returns how many were saved and which were not."""
    for number, row in enumerate(table or [], 1):
        if len(row) < len(IMAGE_COLUMNS):
            raise InvalidInput(f"Row {number} of the captions table has {len(row)} column(s): each row needs "
                               f"{', '.join(IMAGE_COLUMNS)}.")
    ids = [row_id(row[0]) for row in table or []]
    edited = {image_id: row[2] for image_id, row in zip(ids, table or []) if image_id is not None}
    result = library.save_edits(studio, dataset, edited, user_of(request), is_admin(studio, request), loaded)
    files = {str(row[0]).strip(): row[1] for row in table or []}
    lines = [f"Saved {len(result.saved)} caption(s)."]
    lines += [f"- ⚠ #{number} ({files.get(str(number), '?')}) was changed or deleted meanwhile, so your caption was "
              f"not saved (the table now shows what is stored): “{text}”" for number, text in result.conflicts.items()]
    lines += [f"- ⚠ Ignored row {number}: {str(row[0])[:40]!r} is not an image id." if image_id is None
              else f"- ⚠ Ignored row {number}: no image #{image_id} in this dataset."
              for number, (image_id, row) in enumerate(zip(ids, table or []), 1)
              if image_id is None or image_id in result.unknown]
    return "\n".join(lines)


def pick(loaded: dict[int, str], evt: gr.SelectData):
    """The id of the image clicked in the gallery or the table (``loaded`` holds the page's ids in order)."""
    ids = list(loaded)
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    return ids[index] if 0 <= index < len(ids) else None


@friendly
def remove_image(studio: Studio, image_id: int | str | None, dataset: str | None = None,
                 request: gr.Request = None):
    """Delete an image (of ``dataset``, the one shown, when given); returns a status line and an empty selection."""
    if image_id in (None, ""):
        raise InvalidInput("Select an image in the gallery or the table first.")
    number = whole_number("image id", image_id, 1, MAX_ID)
    library.delete_image(studio, number, user_of(request), is_admin(studio, request), dataset)
    return f"Deleted image #{number}.", ""


@friendly
def caption_dataset(studio: Studio, dataset: str, captioner: str = DEFAULT_FAMILY, mode: str = "detailed",
                    template: str = "", overwrite: bool = False, batch_size: int = 8, request: gr.Request = None,
                    progress=gr.Progress()):
    """Caption the dataset's images (trigger word and template applied); the captioner is a catalog id, a family,
    a repo id or a model folder."""
    progress(0, desc="Loading the captioner…")
    try:
        with stop_flag(studio, CAPTIONS, request) as stop:  # first: a refusal drops the flag the click armed too
            job = captioning.CaptionRequest(dataset, user_of(request), captioner, mode, template or None,
                                            bool(overwrite), int(batch_size or 8), is_admin(studio, request))
            result = captioning.caption_dataset(
                studio, job, stop=stop, gpu_timeout=GPU_WAIT_S,
                watch=lambda p: progress((p.step, p.total), desc=p.message, unit="images") if p.total
                else progress(p.fraction or 0, desc=p.message))
    except Cancelled as stopped:  # a Stop while it waited in the queue: nothing captioned
        return str(stopped)
    verb = "Stopped" if result.stopped else "Done"
    removed = f", skipped {result.removed} removed meanwhile" if result.removed else ""
    return (f"{verb}: captioned {result.captioned} of {result.total} image(s), kept {result.kept} existing "
            f"caption(s){removed}. Job #{result.job_id}.")


@friendly
def export_dataset(studio: Studio, dataset: str, format: str = "kohya", request: gr.Request = None) -> str:
    """Export the dataset (processed images and final captions) as a zip in the kohya or imagefolder layout."""
    return str(export.export_dataset(studio, dataset, user_of(request), format, admin=is_admin(studio, request)))


@friendly
def ask_delete(studio: Studio, dataset: str, request: gr.Request):
    """The confirmation shown, its question, and the dataset it names (what Yes deletes)."""
    row = library.find_dataset(studio, dataset, user_of(request), is_admin(studio, request))
    return gr.Group(visible=True), (f"Delete **{row['name']}** with its "
                                    f"{library.count_images(studio, row['id'])} image(s) and captions? This cannot "
                                    "be undone."), {"id": row["id"], "name": row["name"]}


@friendly
def confirm_delete(studio: Studio, dataset: str, named: dict | None = None, request: gr.Request = None):
    """Delete a dataset with its images, captions and files; returns an empty picker and a status line. ``named``
    (the page's confirmation: the dataset it asked about) is deleted only while the picker still shows it."""
    owner, admin = user_of(request), is_admin(studio, request)
    if named is not None:
        try:
            shown = library.find_dataset(studio, dataset, owner, admin)["id"]
        except MasukaError:
            shown = None
        if shown != named["id"]:
            raise InvalidInput(f"This confirmation was for dataset {named['name']!r}, which is no longer picked: "
                               "nothing was deleted. Pick the dataset and click “Delete this dataset…” again.")
        dataset = named["id"]
    row = library.delete_dataset(studio, dataset, owner, admin)
    return "", f"Deleted dataset **{row['name']}**."


def _stats_text(stats: dict) -> str:
    width, height, words = stats["width"], stats["height"], stats["caption_words"]
    lines = [f"**{stats['images']}** images (+{stats['flipped_copies']} flipped copies), **{stats['captioned']}** "
             f"captioned, trigger word in {stats['trigger_coverage']:.0%} of captions · size "
             f"{width['min']}-{width['max']} × {height['min']}-{height['max']} px · caption words "
             f"{words['min']}-{words['max']} (median {words['median']:g})"]
    lines += [f"- ⚠ {warning}" for warning in stats["warnings"]]
    return "\n".join(lines)


