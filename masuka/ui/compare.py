"""Compare tab: blind A/B of two LoRA sets (or a LoRA and none) with the Image tab's model and settings."""

from __future__ import annotations

import gradio as gr

from masuka.errors import InvalidInput
from masuka.image.compare import (
    MAX_PAIRS,
    create_ab,
    delete_comparison,
    describe_tally,
    list_comparisons,
    next_pair,
    nothing_left,
    standing,
    vote,
)
from masuka.image.generate import parse_lora
from masuka.image.prompts import prompt_lines
from masuka.loras.library import list_loras
from masuka.studio import Studio
from masuka.ui.common import (
    UIContext,
    bind,
    friendly,
    stop_flag,
    stoppable,
    user_of,
    whole_number_box,
    wire_stop,
)
from masuka.ui.queue import FORM, SAMPLER_FORM, form_request
from masuka.validation import whole_number

TAB = "compare"  # the key of its Stop flag


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    gr.Markdown("Render pairs with the same prompt and seed for side A and side B, then pick the better image of "
                "each pair without knowing which side is which. Uses the Image tab's model and settings.")
    with gr.Row():
        side_a = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Side A LoRAs",
                             info="empty = no LoRA; name:0.7 for another weight")
        side_b = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Side B LoRAs")
        refresh = gr.Button("↻", scale=0, min_width=40)
    with gr.Row():
        prompts = gr.Textbox("", label="Prompts, one a line", lines=3, scale=3)
        # no precision: Gradio would round a fraction, which the handler refuses instead
        seeds = gr.Number(value=4, minimum=1, label="Seeds per prompt", scale=1)
        with gr.Column(scale=1, min_width=120):
            render = gr.Button("Render pairs", variant="primary")
            stop = gr.Button("Stop", variant="stop")
    with gr.Row():
        picker = whole_number_box(gr.Dropdown([], label="A/B test", scale=3))
        load = gr.Button("Load", scale=0, min_width=80)
        remove = gr.Button("Delete test", variant="stop", scale=0, min_width=110)
    shown = gr.State(None)  # (test, pair index) of the pair on screen: what a vote is for
    caption = gr.Markdown()
    with gr.Row():
        left = gr.Image(label="Left", type="filepath", interactive=False, height=360)
        right = gr.Image(label="Right", type="filepath", interactive=False, height=360)
    with gr.Row():
        picks = {pick: gr.Button(label) for pick, label in (("left", "Left is better"), ("tie", "Tie"),
                                                            ("right", "Right is better"))}
    result = gr.Markdown(label="Tally")

    views, private = [shown, caption, left, right, result], {"api_visibility": "private", "show_progress_on": result}
    ctx.picker(bind(choices, studio), [side_a, side_b, picker], refresh)
    image = ctx.form("image")
    rendered = stoppable(TAB, render.click(bind(make, studio), image.pick(FORM) + [side_a, side_b, prompts, seeds]
                                           + image.pick(SAMPLER_FORM), picker, **private, **ctx.gpu_event()))
    rendered.success(bind(show, studio), picker, views, **private)
    rendered.then(bind(test_choices, studio), None, picker, **private)  # a stopped one's pairs are a test too
    wire_stop(studio, TAB, stop, result)
    load.click(bind(show, studio), picker, views, **private)
    picker.input(bind(show, studio, None), None, views, queue=False, **private)  # another test: Load shows it
    remove.click(bind(forget, studio), picker, [picker, *views], **private)
    for pick, button in picks.items():
        button.click(bind(judge, studio, pick), shown, views, **private)


def choices(studio: Studio, request: gr.Request):
    """The LoRA pickers' and the A/B test picker's choices."""
    rows = list_loras(studio, user_of(request))
    loras = [(f"{r['name']} ({r['architecture']})", r["name"]) for r in rows]
    return gr.Dropdown(choices=loras), gr.Dropdown(choices=loras), test_choices(studio, request)


def test_choices(studio: Studio, request: gr.Request):
    """The A/B test picker's choices, its value kept."""
    return gr.Dropdown(choices=_tests(studio, request))


def _tests(studio: Studio, request: gr.Request) -> list[tuple[str, int]]:
    """The user's own A/B tests (an admin's too: a blind test is judged by its owner alone)."""
    return [(f"{r['id']}: {r['title']}", r["id"]) for r in list_comparisons(studio, user_of(request))]


@friendly
def show(studio: Studio, comparison: int | None, request: gr.Request):
    """The next pair of ``comparison`` to judge: what is shown ((test, pair index), or (test, None) once every
    pair is judged), its caption, left and right images, and how many remain (the tally once all are judged)."""
    if comparison is None:
        return None, "", None, None, ""
    user = user_of(request)
    pair = next_pair(studio, user, comparison)
    text = describe_tally(standing(studio, user, comparison))
    if pair is None:
        return (comparison, None), nothing_left(studio, user, comparison), None, None, text
    return ((comparison, pair["index"]), f"Pair {pair['index'] + 1} ({pair['remaining']} left): *{pair['prompt']}*",
            pair["left"], pair["right"], text)


@friendly
def make(studio: Studio, prompt: str, model: str, negative_prompt: str, steps: int | None, guidance: float | None,
         width: int | None, height: int | None, seed: int | None, batch: int, loras: list[str] | None,
         memory_plan: str, fast: bool, step_cache: float, a: list[str] | None, b: list[str] | None, lines: str,
         count: int | None, sampler: str = "", request: gr.Request = None, progress=gr.Progress()):
    """Render the pairs of a new A/B test with the Image tab's settings (Stop ends it between steps); the test
    picker with it chosen."""
    with stop_flag(studio, TAB, request) as stop:  # first: a refusal drops the flag the click armed too
        base = form_request(user_of(request), prompt, model, negative_prompt, steps, guidance, width, height, seed,
                            1, [], memory_plan, fast, step_cache, sampler=sampler)
        made = create_ab(studio, base, [parse_lora(x) for x in a or []], [parse_lora(x) for x in b or []],
                         prompt_lines(lines) or [base.prompt],
                         whole_number("seeds per prompt", count or 1, 1, MAX_PAIRS),
                         on_image=lambda _r: progress(None, desc="Rendering pairs…"), stop=stop)
    return gr.Dropdown(choices=_tests(studio, request), value=made)


@friendly
def forget(studio: Studio, comparison: int | None, request: gr.Request):
    """Delete the chosen A/B test (its images stay in History); the picker without it and an empty view."""
    if comparison is None:
        raise InvalidInput("Choose an A/B test to delete.")
    delete_comparison(studio, user_of(request), comparison)
    return (gr.Dropdown(choices=_tests(studio, request), value=None), None,
            f"A/B test {comparison} deleted; its images stay in History.", None, None, "")


@friendly
def judge(studio: Studio, pick: str, shown: tuple[int, int | None] | None, request: gr.Request):
    """Record ``pick`` (left, tie or right) for the pair on screen (``shown`` by :func:`show`, never the
    picker's choice); the next pair."""
    if shown is None:
        raise InvalidInput("Choose an A/B test and press Load first, or render pairs.")
    comparison, pair = shown
    if pair is None:
        raise InvalidInput(f"Every pair of A/B test {comparison} is judged: the tally is shown below.")
    vote(studio, user_of(request), comparison, pair, pick)
    return show(studio, comparison, request)
