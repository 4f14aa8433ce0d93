"""The Image tab's Upscale panel: a picture 2x or 4x larger by a model upscaler, or by a detail upscale that
repaints it tile by tile with a diffusion model (the ``upscale_image`` API)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from masuka.errors import Cancelled, InvalidInput
from masuka.image.upscale.job import upscale_image
from masuka.image.upscale.models import upscaler_names
from masuka.image.upscale.request import DEFAULT_TILE, MAX_TILE, MIN_TILE, SCALES, UpscaleRequest
from masuka.models.catalog import image_models
from masuka.studio import Studio
from masuka.ui.common import UIContext, bind, failure, friendly, stop_flag, stoppable, user_of, wire_stop
from masuka.validation import whole_number

GPU_WAIT_S = 5.0
#: the panel's Stop flag (the Image tab's Stop button stops an upscale too)
PANEL = "upscale"


@dataclass
class UpscalePanel:
    """What other parts of the Image tab fill: the picture, and the accordion that opens on it."""

    accordion: gr.Accordion
    image: gr.Image


def build(ctx: UIContext, stop: gr.Button) -> UpscalePanel:
    """The panel, in a closed accordion; ``stop`` (the Image tab's Stop) ends an upscale too."""
    studio = ctx.studio
    models = image_models()
    with gr.Accordion("Upscale", open=False) as accordion:
        with gr.Row():
            with gr.Column(scale=2):
                # image_mode None: the file as given, so a transparent picture stays transparent
                image = gr.Image(type="filepath", image_mode=None, label="Picture to upscale", height=220)
                with gr.Row():
                    scale = gr.Radio(list(SCALES), value=SCALES[0], label="Scale")
                    upscaler = gr.Dropdown(upscaler_names(studio.config), value="Lanczos", label="Upscaler", scale=2,
                                           allow_custom_value=True,
                                           info="Model files (.safetensors, .pth) go in <data dir>/upscalers")
                    refresh = gr.Button("↻", scale=0, min_width=40)
                detail = gr.Checkbox(False, label="Detail: repaint tile by tile with a diffusion model (SD upscale)")
                with gr.Row():
                    model = gr.Dropdown([(m["name"], key) for key, m in models.items()], value=next(iter(models)),
                                        label="Model (detail)", allow_custom_value=True)
                    strength = gr.Slider(0.05, 1, value=0.3, step=0.05, label="Strength (detail)")
                prompt = gr.Textbox("", label="Prompt (detail; empty = the picture's own)", lines=1)
                with gr.Row():
                    # whole numbers without precision: Gradio would round a fraction, which the handler refuses
                    tile = gr.Number(value=DEFAULT_TILE,
                                     label="Tile size (px; 0 = whole, or with Detail the model's native size)",
                                     info="A model upscaler's input tiles; with Detail, the tiles repainted")
                    seed = gr.Number(value=-1, label="Seed (detail; -1 = random)")
                run = gr.Button("Upscale", variant="primary")
            with gr.Column(scale=3):
                result = gr.Image(label="Upscaled", type="filepath", format="png", interactive=False, height=420)
                status = gr.Markdown(label="Status")

    form = ctx.register_form("upscale", dict(image=image, scale=scale, upscaler=upscaler, detail=detail, model=model,
                                             strength=strength, prompt=prompt, tile=tile, seed=seed),
                             tab="image", adapt=reuse_fields, accordion=accordion)
    private = {"api_visibility": "private"}
    ctx.generated(stoppable(PANEL, run.click(starting, None, [result, status], queue=False,
                                             **private).then(
        bind(upscale, studio), form.pick(FIELDS), [result, status], api_name="upscale_image", show_progress_on=status,
        **ctx.gpu_event())))
    wire_stop(studio, PANEL, stop, status, api_name="stop_upscale", step="tile")
    detail.input(default_tile, detail, tile, **private)
    refresh.click(bind(choices, studio), None, upscaler, **private)
    return UpscalePanel(accordion, image)


#: the panel's fields, in the order ``upscale_image`` takes them
FIELDS = ("image", "scale", "upscaler", "detail", "model", "strength", "prompt", "tile", "seed")


def reuse_fields(fields: dict) -> dict:
    """An upscale entry's fields as the panel takes them: its kept source picture, the diffusion model only for a
    detail upscale, and the tile size that makes the same tiles (:func:`detail_tile` for a detail upscale)."""
    values = {name: fields[name] for name in ("scale", "upscaler", "detail", "strength", "seed") if name in fields}
    values["image"] = fields.get("init_image")
    values["model"] = fields.get("model") if fields.get("detail") else None
    if not fields.get("detail"):
        values["tile"] = fields.get("tile")
        values.pop("seed", None)
    else:
        values["prompt"] = fields.get("prompt", "")
        values["tile"] = detail_tile(fields.get("tile"))
    return {name: value for name, value in values.items() if value is not None or name == "model"}


@friendly
def upscale(studio: Studio, image: str | None, scale: int = 2, upscaler: str = "Lanczos", detail: bool = False,
            model: str | None = None, strength: float = 0.3, prompt: str = "", tile: float | None = None,
            seed: float | None = -1, request: gr.Request = None, progress=gr.Progress()):
    """Upscale ``image`` 2x or 4x with ``upscaler`` (with ``detail``, then repaint it tile by tile with
    ``model``) in tiles of ``tile`` pixels (0: the whole picture, or with ``detail`` the model's native size; left
    out: 512, or the native size); returns the saved picture and a status line."""
    try:
        with stop_flag(studio, PANEL, request) as stop:  # the flag armed as it was queued (see stoppable)
            if not image:
                raise InvalidInput("Choose the picture to upscale.")
            made = upscale_image(studio, UpscaleRequest(
                image, scale=int(scale), upscaler=upscaler or "Lanczos", detail=bool(detail),
                model=model if detail else None, strength=float(strength), prompt=prompt or "",
                seed=None if seed in (None, -1) else seed,  # a detail upscale checks it as Generate does
                tile=None if tile is None else whole_number("tile size", tile, 0, MAX_TILE),
                owner=user_of(request)), gpu_timeout=GPU_WAIT_S, stop=stop, cancelled=stop.is_set,
                on_tile=lambda done, total: progress((done, total), desc=f"Tile {done}/{total}", unit="tiles"))[0]
    except Cancelled:
        return None, "Stopped: nothing saved."
    except Exception as error:
        raise failure("Upscale", error) from error
    seed_text = "" if made.seed is None else f", seed {made.seed}"
    return str(made.path), f"Done{seed_text}: saved and recorded in History."


def starting():
    """An upscale asked for: the previous result and its status cleared, so a failure does not leave them showing."""
    return None, ""


def default_tile(detail: bool) -> int:
    """The Tile size box's value for the Detail switch: 0 with it on (the model's native size, as the CLI's default),
    else a model upscaler's default."""
    return 0 if detail else DEFAULT_TILE


def detail_tile(kept: object) -> int:
    """The Tile size that cuts a detail upscale's picture into the tiles its row keeps (``[width, height]``: the
    size asked for, or the model's native one for 0, each cut to the picture's side): their longer side; 0 (the
    native size) for a row without them, or whose one tile, under the smallest size a request takes, was the whole
    picture."""
    sides = kept if isinstance(kept, list) and kept else [0]
    return max(sides) if max(sides) >= MIN_TILE else default_tile(True)


def choices(studio: Studio):
    """The upscalers: the built-in ones and the model files in the data dir."""
    return gr.Dropdown(choices=upscaler_names(studio.config))
