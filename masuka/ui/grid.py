"""Grid tab: an X/Y/Z grid from the Image tab's form, one parameter per axis, shown as one labelled image."""

from __future__ import annotations

import gradio as gr

from masuka.image.grid import ALLOW_LARGE, AXES, given_axes, plan_grid, run_grid
from masuka.queue.jobs import queue_grid
from masuka.studio import Studio
from masuka.ui.common import UIContext, bind, friendly, stop_flag, stoppable, user_of, wire_stop
from masuka.ui.queue import FORM, SAMPLER_FORM, form_request

TAB = "grid"  # the key of its Stop flag


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    gr.Markdown(f"Uses the Image tab's prompt, model and settings. Axes: `{'`, `'.join(AXES)}`, written "
                "`name=value1,value2` (`size=512x512,768x512`, `lora=none,my-style`, `prompt=red,green`: the first "
                "value is searched in the prompt and replaced by each value in turn).")
    with gr.Row():
        x = gr.Textbox("steps=4,8,16", label="X axis")
        y = gr.Textbox("", label="Y axis", placeholder="guidance=1,3.5")
        z = gr.Textbox("", label="Z axis", placeholder="lora=none,my-style")
    with gr.Row():
        large = gr.Checkbox(False, label=ALLOW_LARGE)
        run = gr.Button("Make grid", variant="primary")
        stop = gr.Button("Stop", variant="stop")
        add = gr.Button("Add to queue")
    message = gr.Markdown(label="Message")
    grid = gr.Image(label="Grid", type="filepath", interactive=False, format="png")
    cells = gr.Gallery(label="Cells (each one is in History: Reuse restores it)", columns=6, height=260,
                       interactive=False)

    image = ctx.form("image")
    inputs = image.pick(FORM) + [x, y, z, large] + image.pick(SAMPLER_FORM)
    stoppable(TAB, run.click(bind(make_grid, studio), inputs, [grid, cells], api_name="grid",
                             show_progress_on=message, **ctx.gpu_event()))
    wire_stop(studio, TAB, stop, message)
    add.click(bind(add_grid, studio), inputs, message, api_name="queue_grid")


@friendly
def make_grid(studio: Studio, prompt: str, model: str, negative_prompt: str = "", steps: int | None = None,
              guidance: float | None = None, width: int | None = None, height: int | None = None,
              seed: int | None = -1, batch: int = 1, loras: list[str] | None = None, memory_plan: str = "auto",
              fast: bool = False, step_cache: float = 0.0, x: str = "", y: str = "", z: str = "",
              allow_large: bool = False, sampler: str = "", request: gr.Request = None, progress=gr.Progress()):
    """An X/Y/Z grid: the grid image and every cell (each also a history row); Stop ends it between steps."""
    made: list = []

    def on_image(result) -> None:
        made.append(result)
        progress((len(made), len(planned)), desc=f"Cell {len(made)}/{len(planned)}", unit="cells")

    with stop_flag(studio, TAB, request) as stop:  # first: a refusal drops the flag the click armed too
        base, axes = grid_form(user_of(request), prompt, model, negative_prompt, steps, guidance, width, height,
                               seed, loras, memory_plan, fast, step_cache, sampler, x, y, z)
        planned = plan_grid(studio, base, axes, confirm_large=bool(allow_large))
        result = run_grid(studio, axes, planned, on_image=on_image, stop=stop)
    return str(result.grid), [(str(r.path), ", ".join(f"{k} {v}" for k, v in c.labels.items()))
                              for r, c in zip(result.images, planned)]


@friendly
def add_grid(studio: Studio, prompt: str, model: str, negative_prompt: str = "", steps: int | None = None,
             guidance: float | None = None, width: int | None = None, height: int | None = None,
             seed: int | None = -1, batch: int = 1, loras: list[str] | None = None, memory_plan: str = "auto",
             fast: bool = False, step_cache: float = 0.0, x: str = "", y: str = "", z: str = "",
             allow_large: bool = False, sampler: str = "", request: gr.Request = None) -> str:
    """Queue an X/Y/Z grid as one job (the Queue tab shows it; the grid image comes with its results)."""
    base, axes = grid_form(user_of(request), prompt, model, negative_prompt, steps, guidance, width, height, seed,
                           loras, memory_plan, fast, step_cache, sampler, x, y, z)
    job = queue_grid(studio, base, axes, confirm_large=bool(allow_large))
    return f"Queued grid job {job}: the Queue tab shows its progress and, when done, the grid."


def grid_form(owner: str, prompt: str, model: str, negative_prompt: str, steps: int | None, guidance: float | None,
              width: int | None, height: int | None, seed: int | None, loras: list[str] | None, memory_plan: str,
              fast: bool, step_cache: float, sampler: str, *axes: str) -> tuple:
    """The base request (one image a cell) and the axes the form describes (:func:`given_axes`)."""
    base = form_request(owner, prompt, model, negative_prompt, steps, guidance, width, height, seed, 1, loras,
                        memory_plan, fast, step_cache, sampler=sampler)
    return base, given_axes(axes)
