"""The Image tab's modes (Text, Image, Inpaint/Outpaint, Edit): their widgets, which form fields each uses, and
the "Send to" buttons that put a result back into a mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from masuka.errors import InvalidInput, MasukaError
from masuka.image.control import FORM_PICTURES as CONTROL_PICTURES
from masuka.image.control import Control
from masuka.image.generate import ImageRequest, image_spec, parse_loras
from masuka.image.limits import MAX_SIDE, MIN_SIDE
from masuka.image.masks import save_painted_mask
from masuka.image.outpaint import parse_outpaint
from masuka.image.preprocess import KINDS
from masuka.image.reference import FORM_PICTURES as REFERENCE_PICTURES
from masuka.image.reference import StyleReference
from masuka.image.tasks import (
    INPAINT_AREAS,
    MASK_MODES,
    MASKED_CONTENTS,
    MAX_SIDE_PADDING,
    ONLY_MASKED_PADDING,
    InitImage,
    picture_size,
    read_inpaint_options,
    seen_size,
)
from masuka.models.catalog import ModelSpec
from masuka.studio import Studio
from masuka.ui.common import UIContext, bind, user_of
from masuka.ui.paint_canvas import canvas_picture, paint_canvas

TEXT, IMAGE, INPAINT, EDIT = MODES = ("Text", "Image", "Inpaint/Outpaint", "Edit")
VIDEO = "Video first frame"
UPSCALE = "Upscale"
DATASETS = "Datasets"
#: "Send to" buttons that fill another tab's form: target -> (form kind, field, whether the field takes a list)
OTHER_TABS = {VIDEO: ("video", "image", False), DATASETS: ("dataset", "files", True)}
#: the history's task -> the mode that redoes it
TASK_MODES = {"img2img": IMAGE, "inpaint": INPAINT, "outpaint": INPAINT, "edit": EDIT}
#: the mode fields as the form opens with them: what Reuse and Read parameters set where the entry or the image
#: has none (a text-to-image has no strength, an image-to-image no mask blur or padding), so nothing of the task
#: the form showed before stays
MODE_BLANKS: dict[str, Any] = {"strength": InitImage.strength, "mask_blur": InitImage.mask_blur, "outpaint": ""}
#: the Control and Reference pictures (emptied, with :data:`GUIDE_BLANKS`, for an entry made without them)
GUIDE_PICTURES = (*CONTROL_PICTURES, *REFERENCE_PICTURES)
#: the Control and Reference settings Reuse and Read parameters set for an entry or image made without them
GUIDE_BLANKS: dict[str, Any] = {"control_kind": KINDS[0], "control_weight": Control.weight,
                                "control_start": Control.start, "control_end": Control.end,
                                "reference_weight": StyleReference.weight}


#: the brush that paints the mask: a see-through red, as image editors show a mask, so a stroke shows on a white
#: wall or a dark sky alike, with the picture under it (any paint counts: :func:`~masuka.image.masks.painted_mask`)
MASK_COLOUR = ("#ff2d55", 0.55)
#: the Inpaint options' fields, in the order the form (and the generate_image API) takes them
INPAINT_FIELDS = ("mask_mode", "masked_content", "inpaint_area", "only_masked_padding")


@dataclass
class ModeWidgets:
    """The widgets only some modes show (the starting image, mask and strength are the tab's own)."""

    canvas: gr.ImageEditor
    mask_blur: gr.Slider
    outpaint: gr.Textbox
    inpaint_accordion: gr.Accordion
    inpaint: list[gr.Radio | gr.Slider]  # A1111's inpaint options, in the order of INPAINT_FIELDS
    references: gr.File
    send_buttons: dict[str, gr.Button] | None = None

    @classmethod
    def build(cls) -> ModeWidgets:
        canvas = paint_canvas(type="filepath", format="png", label="Mask: paint over what to repaint",
                                brush=gr.Brush(default_size=24, colors=[MASK_COLOUR], color_mode="fixed"),
                                transforms=(), layers=False, height=320, visible=False, elem_id="masuka-canvas")
        with gr.Row():
            mask_blur = gr.Slider(0, 64, value=MODE_BLANKS["mask_blur"], step=1, label="Mask blur (px)",
                                  visible=False)
            outpaint = gr.Textbox("", label="Outpaint: left,right,top,bottom (px)", placeholder="e.g. 0,256,0,0",
                                  visible=False, info="Grows the canvas; leave empty to inpaint only")
        inpaint_accordion, inpaint = cls._build_inpaint_options()
        references = gr.File(file_count="multiple", file_types=["image"], label="Images to edit (the prompt says "
                             "what to change; Qwen-Image-Edit takes 3, FLUX.2 several)", visible=False)
        return cls(canvas, mask_blur, outpaint, inpaint_accordion, inpaint, references)

    @staticmethod
    def _build_inpaint_options() -> tuple[gr.Accordion, list[gr.Radio | gr.Slider]]:
        """A1111's inpaint options, as its form words them, in a closed accordion (Inpaint/Outpaint mode only)."""
        with gr.Accordion("Inpaint options", open=False, visible=False) as accordion, gr.Row():
            options = [gr.Radio(list(choices), value=INPAINT_BLANKS[name], label=label, min_width=160)
                       for name, choices, label in (("mask_mode", MASK_MODES, "Mask mode"),
                                                    ("masked_content", MASKED_CONTENTS, "Masked content"),
                                                    ("inpaint_area", INPAINT_AREAS, "Inpaint area"))]
            padding = gr.Slider(0, MAX_SIDE_PADDING, value=INPAINT_BLANKS["only_masked_padding"], step=1,
                                label="Only masked padding (px)", min_width=160,
                                info="With Only masked: the margin kept around the mask")
        return accordion, [*options, padding]

    def build_send_to(self) -> dict[str, gr.Button]:
        """Buttons under the gallery that send the selected result to a mode."""
        with gr.Row():
            self.send_buttons = {target: gr.Button(f"Send to {target}", size="sm")
                                 for target in (IMAGE, INPAINT, EDIT, UPSCALE, VIDEO, DATASETS)}
        return self.send_buttons

    def shown(self) -> list[Any]:
        return [self.canvas, self.mask_blur, self.outpaint, self.inpaint_accordion, self.references]

    @staticmethod
    def show(mode: str) -> list[Any]:
        """Visibility of (start group, starting image, mask file, strength, Generate, Edit, aspect, width, height,
        *:meth:`shown`): an edit takes its first image's size and an inpaint or outpaint its picture's (plus the
        padding), so the size fields go in those modes."""
        starts, inpaint, edit = mode in (IMAGE, INPAINT, EDIT), mode == INPAINT, mode == EDIT
        visible = [starts, mode in (IMAGE, INPAINT), inpaint, mode in (IMAGE, INPAINT), not edit, edit,
                   *[mode in (TEXT, IMAGE)] * 3,
                   inpaint, inpaint, inpaint, inpaint, edit]
        return [gr.update(visible=flag) for flag in visible]


def mode_request_inputs(mode: str, init_image: str | None, mask: str | None, outpaint: str | None,
                        canvas: dict | None) -> tuple[str | None, str | None, tuple | None]:
    """(starting image, mask, outpaint padding) as ``mode`` uses them; an empty mode (the API) takes them as given,
    a canvas given there (its picture or strokes) making it an Inpaint/Outpaint as in the tab. A mode that starts
    from a picture refuses to run without it (rather than quietly make a text-to-image); Inpaint/Outpaint takes the
    starting image (the canvas shows it, perhaps smaller: the strokes are scaled to it), else the canvas's picture
    (an API caller's)."""
    canvas = canvas or {}
    layers = [layer for layer in canvas.get("layers") or [] if layer]
    if mode == "" and (canvas.get("background") or layers):
        if init_image:
            raise InvalidInput("Give the picture to inpaint as init_image (with a mask) or as the canvas's "
                               "background (with painted layers), not both.")
        mode = INPAINT
    padding = parse_outpaint(outpaint) if mode in ("", INPAINT) else None
    if mode == IMAGE and not init_image:
        raise InvalidInput("Add the starting image to vary (or choose Text mode).")
    if mode in ("", IMAGE):
        return init_image, (mask if mode == "" else None), padding
    if mode != INPAINT:
        return None, None, None
    picture = init_image or canvas.get("background")
    if not picture:
        raise InvalidInput("Add the picture to inpaint or outpaint.")
    painted = save_painted_mask(layers, picture)
    if painted and mask:
        raise InvalidInput("Paint the mask or give a mask file, not both: clear one of them.")
    mask = painted or mask
    if mask is None and padding is None:
        raise InvalidInput("Paint over the part to repaint, add a mask file, or give outpaint padding.")
    return str(picture), mask and str(mask), padding


def inpaint_options(mask_mode: str | None, masked_content: str | None, inpaint_area: str | None,
                    only_masked_padding: float | None) -> dict[str, Any]:
    """The form's inpaint options (A1111's words, another refused; None: as the form opens) as
    :class:`InitImage`'s fields."""
    chosen = {"mask_mode": mask_mode, "masked_content": masked_content, "inpaint_area": inpaint_area}
    for (name, value), choices in zip(chosen.items(), (MASK_MODES, MASKED_CONTENTS, INPAINT_AREAS)):
        if value not in (None, *choices):
            words = name.replace("_", " ").capitalize()
            raise InvalidInput(f"{words} must be one of: {', '.join(choices)} (got {value!r}).")
    padding = ONLY_MASKED_PADDING if only_masked_padding is None else int(only_masked_padding)
    return {"invert_mask": mask_mode == MASK_MODES[1], "fill_masked": masked_content == MASKED_CONTENTS[1],
            "only_masked_padding": padding if inpaint_area == INPAINT_AREAS[1] else None}


def inpaint_fields(options: dict) -> dict[str, Any]:
    """The form's inpaint options for an entry's or an image's (under :class:`InitImage`'s names, as a history
    row's params keep them), A1111's defaults (as the form opens) for those it lacks."""
    padding = options.get("only_masked_padding")
    return {"mask_mode": MASK_MODES[bool(options.get("invert_mask"))],
            "masked_content": MASKED_CONTENTS[bool(options.get("fill_masked"))],
            "inpaint_area": INPAINT_AREAS[padding is not None],
            "only_masked_padding": ONLY_MASKED_PADDING if padding is None else padding}


#: the inpaint options as the form opens
INPAINT_BLANKS = inpaint_fields({})


def inpaint_from_parameters(extra: dict[str, str]) -> list[Any]:
    """The inpaint options (in :data:`INPAINT_FIELDS` order) from A1111's infotext fields, the blanks for those
    the image lacks; a padding beyond the slider's range leaves the padding as it is."""
    fields = inpaint_fields(read_inpaint_options(extra))
    if not 0 <= fields["only_masked_padding"] <= MAX_SIDE_PADDING:
        fields["only_masked_padding"] = gr.skip()
    return [fields[name] for name in INPAINT_FIELDS]


#: the fields A1111 and Forge write for a text-to-image with Hires fix (whose ``Denoising strength`` is the second
#: pass's, not an image-to-image's)
HIRES_FIELDS = ("Hires upscale", "Hires steps", "Hires upscaler", "Hires resize-1")


def hires_fix(extra: dict[str, str]) -> bool:
    """Whether the image is a text-to-image made with Hires fix."""
    return any(name in extra for name in HIRES_FIELDS) and "Mask blur" not in extra and "Outpaint" not in extra


def task_from_parameters(extra: dict[str, str]) -> tuple[Any, Any, Any, Any]:
    """(strength, mask blur, outpaint, mode) from A1111 fields (``Denoising strength``, ``Mask blur``,
    ``Outpaint``), :data:`MODE_BLANKS` for those the image lacks. A text-to-image (no denoising strength, or one
    of Hires fix: the second pass's) takes the Text mode; unreadable values leave the form as it is."""
    if "Denoising strength" not in extra or hires_fix(extra):
        return MODE_BLANKS["strength"], MODE_BLANKS["mask_blur"], MODE_BLANKS["outpaint"], TEXT
    try:
        strength = float(extra["Denoising strength"])
        blur = int(extra.get("Mask blur", MODE_BLANKS["mask_blur"]))
    except ValueError:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    inpaint = "Mask blur" in extra or "Outpaint" in extra
    return strength, blur, extra.get("Outpaint", MODE_BLANKS["outpaint"]), INPAINT if inpaint else IMAGE


def guide_fields(found: dict) -> dict:
    """``found`` (an entry's or an image's fields) over the Control and Reference fields as the form opens
    (:data:`GUIDE_BLANKS`, no pictures): Reuse and Read parameters leave nothing of a guide the entry or the image
    was made without, so the next Generate does not use it."""
    return {**GUIDE_BLANKS, **dict.fromkeys(GUIDE_PICTURES), **found}


def reuse_fields(fields: dict) -> dict:
    """A reused image row's fields plus the mode that redoes its task and the blanks of the mode, inpaint option and
    guide fields it lacks, so that nothing of the entry reused before stays in the form (the inpaint canvas follows
    the starting image)."""
    return {**MODE_BLANKS, **guide_fields(fields), **inpaint_fields(fields),
            "mode": TASK_MODES.get(fields.get("task"), TEXT)}


def _file_path(item: Any) -> str | None:
    """The path of one file of a ``gr.File`` list: a path, a ``FileData`` or its dict (as an API caller sends it)."""
    return item if isinstance(item, str) else getattr(item, "path", None) or item.get("path")


def edit_request(prompt, model, images, negative_prompt, steps, guidance, seed, batch, loras,
                 owner: str) -> ImageRequest:
    """The Edit mode's (and ``/edit_image``'s) values as the domain request."""
    paths = [_file_path(image) for image in images or []]
    if not paths:
        raise InvalidInput("Add one or more images to edit.")
    return ImageRequest(prompt=prompt, model=model, negative_prompt=negative_prompt or "", steps=steps,
                        guidance=guidance, seed=seed, batch=1 if batch is None else batch, loras=parse_loras(loras),
                        owner=owner, references=paths)


def wire_picture_size(studio: Studio, widgets: ModeWidgets, init_image: gr.Image, model: gr.Dropdown,
                      width: gr.Number, height: gr.Number) -> None:
    """A picture put in the starting image sets the size to its own, rounded to the model's multiple (an edit always
    takes its first image's size); one sent there sets it too (:func:`send_picture`). The inpaint canvas shows the
    starting image, whatever put it there."""
    init_image.upload(bind(picture_form_size, studio), [init_image, model], [width, height], api_visibility="private")
    init_image.change(canvas_picture, init_image, widgets.canvas, api_visibility="private", show_progress="hidden")


def picture_form_size(studio: Studio, path: str | None, model_id: str, request: gr.Request = None):
    """The width and height for a picture put in the form: its size rounded to the model's multiple; left as they
    are without a picture, for a model not usable here or a picture that is not."""
    if not path:
        return gr.skip(), gr.skip()
    try:
        return fitted_size(path, image_spec(studio, user_of(request), model_id))
    except MasukaError:
        return gr.skip(), gr.skip()


def starting_size(mode: str, init_image: str | None, spec: ModelSpec) -> tuple[int, int] | None:
    """The size of the starting image in Image mode as :func:`fitted_size` gives it; None in another mode, without
    one or with an unreadable one (Inpaint/Outpaint keeps its picture's size whatever the form says)."""
    try:
        return fitted_size(init_image, spec) if mode == IMAGE and init_image else None
    except MasukaError:
        return None


def fitted_size(path: str, spec: ModelSpec) -> tuple[int, int]:
    """A picture's size as the form's width and height take it: its shape at about the model's own pixels where it
    has more (a 12 MP photo runs at about a megapixel), rounded to the model's multiple, within the sides a
    request may have."""
    return picture_size(seen_size(path, "picture"), spec.size_multiple, MIN_SIDE, MAX_SIDE, pixels=spec.pixels)


def picked(images: list | None, index: int | None) -> str:
    """The path of the gallery's selected (else first) image."""
    if not images:
        raise gr.Error("Generate an image first, then send it on.")
    item = images[min(index or 0, len(images) - 1)]
    return item[0] if isinstance(item, (list, tuple)) else item.get("image", {}).get("path")


def still_selected(images: list | None, index: int | None) -> int | None:
    """The selection once the gallery shows new results, as the gallery keeps it: the same place, within the
    results shown (a new batch streams in one image at a time, so a place past the first becomes the first);
    nothing selected stays so."""
    return None if index is None or not images else min(index, len(images) - 1)


def wire_send_to(studio: Studio, send: dict[str, gr.Button], gallery: gr.Gallery, mode: gr.Radio,
                 init_image: gr.Image, widgets: ModeWidgets, model: gr.Dropdown, size: list[gr.Number]) -> gr.State:
    """Each "Send to" button of a mode puts the selected (else the first) result in that mode's picture field (and
    the ``size`` fields, width and height, to the picture's, as an upload does); returns the selected index, which
    follows the gallery's own (the other tabs' buttons are wired by :func:`send_to_other_tabs` once those tabs are
    built)."""
    selected = gr.State(None)

    def remember(event: gr.SelectData) -> int:
        return event.index

    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    gallery.select(remember, None, selected, **quiet)
    gallery.preview_close(lambda: None, None, selected, **quiet)  # the picture closed: nothing selected
    gallery.change(still_selected, [gallery, selected], selected, **quiet)
    for target, button in send.items():
        if target in MODES:
            button.click(bind(send_picture, studio, target), [gallery, selected, model],
                         [mode, init_image, widgets.references, *size], api_visibility="private")
    return selected


def send_picture(studio: Studio, target: str, images: list | None, index: int | None, model_id: str,
                 request: gr.Request = None):
    """(mode, starting image, images to edit, width, height) for the picked result sent to the ``target`` mode:
    :func:`into_mode`."""
    return target, *into_mode(studio, target, picked(images, index), model_id, request)


def carry_picture(studio: Studio, mode: str, left: str, init_image: str | None, references: list | None,
                  model_id: str, request: gr.Request = None):
    """(starting image, images to edit, width, height) once the mode changes from ``left`` to ``mode``: the picture
    of the mode left goes into the chosen mode's field when that is empty (:func:`into_mode`), as A1111's "Copy
    image to" does; nothing changes otherwise (Image and Inpaint/Outpaint share the starting image)."""
    pictures = {IMAGE: init_image, INPAINT: init_image, EDIT: _file_path(references[0]) if references else None}
    if mode not in pictures or pictures[mode] or not pictures.get(left):
        return (gr.skip(),) * 4
    return into_mode(studio, mode, pictures[left], model_id, request)


def into_mode(studio: Studio, mode: str, path: str, model_id: str, request: gr.Request | None) -> tuple:
    """(starting image, images to edit, width, height) with the picture at ``path`` in ``mode``'s field (the
    starting image for Image and Inpaint/Outpaint), and the size its own where the mode takes one, as an upload
    sets it."""
    starts = mode in (IMAGE, INPAINT)
    size = picture_form_size(studio, path, model_id, request) if starts else (gr.skip(),) * 2
    return path if starts else gr.skip(), [path] if mode == EDIT else gr.skip(), *size


def send_to_upscale(button: gr.Button, gallery: gr.Gallery, selected: gr.State, panel: Any) -> None:
    """The "Send to Upscale" button: the result becomes the Upscale panel's picture, the panel opened."""
    button.click(send_picked_to_upscale, [gallery, selected], [panel.image, panel.accordion],
                 api_visibility="private")


def send_picked_to_upscale(images: list | None, index: int | None):
    """The picked result as the picture to upscale, and the Upscale panel open."""
    return picked(images, index), gr.Accordion(open=True)


def send_to_other_tabs(ctx: UIContext, send: dict[str, gr.Button], gallery: gr.Gallery, selected: gr.State) -> None:
    """The "Send to Video first frame" and "Send to Datasets" buttons: the result goes into that tab's form (the
    first frame; the files to add to a dataset), that tab is shown and the form does what it does with a picture
    sent (the Video form: the size of its shape). Call once every tab is built; a button whose tab is missing does
    nothing."""
    for target, (kind, field, many) in OTHER_TABS.items():
        form = ctx.forms.get(kind)
        if form is not None and ctx.tabs is not None:
            event = send[target].click(bind(send_picked, form.tab_id, many), [gallery, selected],
                                       [form[field], ctx.tabs], api_visibility="private")
            if form.sent is not None:
                event.then(*form.sent, api_visibility="private")


def send_picked(tab: str, many: bool, images: list | None, index: int | None):
    """The picked result (in a list where the field takes several files), and ``tab`` shown."""
    path = picked(images, index)
    return [path] if many else path, gr.Tabs(selected=tab)
