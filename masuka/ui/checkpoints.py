"""The Train tab's checkpoint comparison: every checkpoint of the chosen run rendered with the same prompts and seed
(a grid, checkpoints x prompts), and "Use this checkpoint" to keep one in the LoRA library."""

from __future__ import annotations

import gradio as gr

from masuka.errors import InvalidInput, MasukaError
from masuka.image.generate import ImageRequest
from masuka.image.grid import ALLOW_LARGE, run_grid
from masuka.image.prompts import prompt_lines
from masuka.queue.jobs import queue_cells
from masuka.store import row_id
from masuka.studio import Studio
from masuka.training.checkpoint_lora import Comparison, checkpoint_loras, plan_comparison, use_checkpoint
from masuka.training.options import MAX_STEPS
from masuka.ui.common import (
    UIContext,
    bind,
    friendly,
    is_admin,
    stop_flag,
    stoppable,
    user_of,
    whole_number_box,
    wire_stop,
)
from masuka.validation import whole_number

TAB = "checkpoints"  # the key of its Stop flag


def build(ctx: UIContext, run: gr.Dropdown) -> None:
    """The accordion under the run panel; ``run`` is the Train tab's run picker."""
    studio = ctx.studio
    with gr.Accordion("Compare checkpoints", open=False):
        gr.Markdown("Renders every saved checkpoint of the run with the same prompts and seed, so you can pick the "
                    "step before the LoRA overfits. Empty prompts: the run's sample prompts.")
        prompts = gr.Textbox("", label="Prompts, one a line (one grid row each)", lines=2)
        with gr.Row():
            # whole numbers without precision: Gradio would round a fraction, which the handlers refuse instead
            seed = gr.Number(-1, label="Seed (-1 = one random seed)")
            steps = gr.Number(0, label="Steps (0 = model's)")
            width = gr.Number(0, label="Width (0 = model's)")
            height = gr.Number(0, label="Height (0 = model's)")
        with gr.Row():
            large = gr.Checkbox(False, label=ALLOW_LARGE)
            compare = gr.Button("Compare checkpoints", variant="primary")
            stop = gr.Button("Stop", variant="stop")
            queue = gr.Button("Add to queue")
        message = gr.Markdown(label="Message")
        grid = gr.Image(label="Checkpoints x prompts", type="filepath", interactive=False, format="png")
        cells = gr.Gallery(label="Cells (each one is in History)", columns=6, height=220, interactive=False)
        with gr.Row():
            step = whole_number_box(gr.Dropdown([], label="Checkpoint (step)", allow_custom_value=True,
                                                 scale=2))
            use = gr.Button("Use this checkpoint", scale=1)

    form, private = [run, prompts, seed, steps, width, height, large], {"api_visibility": "private"}
    stoppable(TAB, compare.click(bind(compare_checkpoints, studio), form, [grid, cells],
                                 api_name="compare_checkpoints", show_progress_on=message, **ctx.gpu_event()))
    wire_stop(studio, TAB, stop, message)
    queue.click(bind(queue_checkpoints, studio), form, message, api_name="queue_checkpoints")
    use.click(bind(keep_checkpoint, studio), [run, step], message, api_name="use_checkpoint")
    run.change(bind(steps_of, studio), run, step, **private)
    compare.click(bind(steps_of, studio), run, step, **private)


def plan(studio: Studio, run_id: float, prompts: str, seed: float, steps: float, width: float, height: float,
         allow_large: bool, request: gr.Request) -> Comparison:
    """The comparison grid of a run's checkpoints by the prompts, with the form's seed, steps and size; a large
    grid only when ``allow_large`` (the form's box)."""
    base = ImageRequest(prompt="", model="", seed=seed, steps=steps or None, width=width or None,
                        height=height or None, owner=user_of(request))  # plan_comparison checks them
    return plan_comparison(studio, _run_id(run_id), prompt_lines(prompts or ""), base, is_admin(studio, request),
                           confirm_large=bool(allow_large))


@friendly
def compare_checkpoints(studio: Studio, run_id: float, prompts: str = "", seed: float = -1, steps: float = 0,
                        width: float = 0, height: float = 0, allow_large: bool = False, request: gr.Request = None,
                        progress=gr.Progress()):
    """Every checkpoint of a run (X) by every prompt (Y): the grid image and its cells (each a history row); Stop
    ends it between steps."""
    made: list = []

    def on_image(result) -> None:
        made.append(result)
        progress((len(made), len(planned.cells)), desc=f"Cell {len(made)}/{len(planned.cells)}", unit="cells")

    with stop_flag(studio, TAB, request) as stop:  # first: a refusal drops the flag the click armed too
        planned = plan(studio, run_id, prompts, seed, steps, width, height, allow_large, request)
        result = run_grid(studio, planned.axes, planned.cells, on_image=on_image, stop=stop)
    return str(result.grid), [(str(r.path), ", ".join(f"{k} {v.rsplit('/', 1)[-1]}" for k, v in c.labels.items()))
                              for r, c in zip(result.images, planned.cells)]


@friendly
def queue_checkpoints(studio: Studio, run_id: float, prompts: str = "", seed: float = -1, steps: float = 0,
                      width: float = 0, height: float = 0, allow_large: bool = False,
                      request: gr.Request = None) -> str:
    """Queue the checkpoint comparison as one grid job (the Queue tab shows it and its grid)."""
    planned = plan(studio, run_id, prompts, seed, steps, width, height, allow_large, request)
    job = queue_cells(studio, planned.cells[0].request, planned.axes, planned.cells)
    return f"Queued job {job}: checkpoints at steps {', '.join(map(str, planned.steps))}."


@friendly
def keep_checkpoint(studio: Studio, run_id: float, checkpoint_step: float, request: gr.Request = None) -> str:
    """Copy a run's checkpoint into the LoRA library, named with its step; returns where it went."""
    if checkpoint_step in (None, ""):
        raise InvalidInput("Choose the checkpoint's step first.")
    step = whole_number("Checkpoint step", checkpoint_step, 1, MAX_STEPS)
    kept = use_checkpoint(studio, _run_id(run_id), step, user_of(request), is_admin(studio, request))
    where = "the Image tab's LoRA list" if kept["owner"] == user_of(request) else f"{kept['owner']}'s LoRA library"
    return f"Kept step {kept['step']} as **{kept['name']}**: it is in {where}."


def steps_of(studio: Studio, run_id: float | None, request: gr.Request):
    """The checkpoint picker for a run: its saved steps, the latest chosen."""
    try:
        found = checkpoint_loras(studio, _run_id(run_id), user_of(request), is_admin(studio, request))
    except MasukaError:
        return gr.Dropdown(choices=[], value=None)
    return gr.Dropdown(choices=[step for step, _path in found], value=found[-1][0])


def _run_id(value: float | str | None) -> int | None:
    """The run typed or picked (None when none is: the domain asks for one), refusing text that is no number."""
    if value in (None, ""):
        return None
    number = row_id(value)
    if number is None:
        raise InvalidInput(f"{value!r} is not a run: choose one from the Run list (or type its number).")
    return number
