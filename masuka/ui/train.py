"""Train tab: dataset + base model + options → a queued training run (here, or on fal/Replicate once confirmed
at its estimated price), watched by polling its row. Building it resumes the remote runs a previous app process
left accepted but unfinished."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import gradio as gr
import pandas as pd
from gradio.components import Component

from masuka.errors import InvalidInput, MasukaError
from masuka.models.catalog import trainable_models
from masuka.studio import Studio
from masuka.training.backends import BACKENDS, LOCAL, REMOTE_BACKENDS, check_backend, trainer_catalog
from masuka.training.backends.remote import check_remote_run, destination_services, price_line
from masuka.training.data import dataset_choices
from masuka.training.options import (
    CAPTION_DROPOUT_BELOW,
    MAX_RANK,
    MAX_STEPS,
    MIN_RANK,
    OPTIMIZERS,
    PRESETS,
    SCHEDULERS,
    TrainOptions,
)
from masuka.training.runs import (
    list_runs,
    request_stop,
    resume_price,
    resume_remote_runs,
    resume_run,
    run_status,
    start_training,
)
from masuka.ui import checkpoints
from masuka.ui.common import MAX_ID, UIContext, bind, friendly, hidden_button, is_admin, user_of, whole_number_box
from masuka.validation import whole_number

POLL_S = 2.0
RUN_COLUMNS = ["run", "status", "title", "step", "total", "final loss", "error"]
#: ``start``'s parameters that take whole numbers
WHOLE_OPTIONS = ("steps", "rank", "batch_size", "grad_accum", "resolution", "warmup_steps", "seed", "sample_every",
                 "save_every", "keep_last")
DROPOUT_STEP = 0.01
#: the Caption dropout slider's end: its largest step below the limit the check refuses (options.py)
DROPOUT_MAX = round((math.ceil(CAPTION_DROPOUT_BELOW / DROPOUT_STEP) - 1) * DROPOUT_STEP, 2)


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    resume_remote_runs(studio)
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                dataset = gr.Dropdown([], label="Dataset", allow_custom_value=True, scale=3)
                refresh = gr.Button("↻", scale=0, min_width=40)
            options, cost = _options()
            with gr.Row():
                train = gr.Button("Train", variant="primary")
                confirm = gr.Button("Yes, train", variant="primary", visible=False)  # for a remote run
        with gr.Column(scale=3):
            with gr.Row():
                run = whole_number_box(gr.Dropdown([], label="Run", allow_custom_value=True, scale=3))
                stop = gr.Button("Stop", variant="stop", scale=1)
                resume = gr.Button("Resume", scale=1)
                confirm_resume = gr.Button("Yes, resume", variant="primary", visible=False, scale=1)  # a billed one
                asked = gr.State(None)  # the run the resume confirmation names (None for API callers)
            # a row of its own: next to the run picker (one form box) a narrow screen clips its label
            discard = gr.Checkbox(False, label="Discard (no checkpoint) when stopping")
            progress = gr.Markdown("No run yet.")
            curve = gr.LinePlot(None, x="step", y="loss", title="Loss", height=240)
            samples = gr.Gallery(label="Samples", columns=4, height=220, interactive=False)
            log = gr.Textbox(label="Log", lines=8, max_lines=8, interactive=False, autoscroll=True)
            runs = gr.Dataframe(headers=RUN_COLUMNS, label="Runs (queued ones train one after another)",
                                interactive=False)
            details = gr.JSON(label="Run details", visible=False)
            checkpoints.build(ctx, run)

    panel, private = [run, progress, curve, samples, log, runs], {"api_visibility": "private"}
    # Train starts a local run; a remote one, which the service bills, starts from the confirmation Train shows,
    # which names the price and goes when the price changes or the start is refused. API callers start directly.
    starting, hidden = [dataset, *options.values()], {"queue": False, "show_progress": "hidden", **private}
    train.click(bind(train_or_confirm, studio), starting, [details, run, confirm], **private)
    confirmed = confirm.click(bind(start, studio), starting, details, api_name="start_training")
    confirmed.success(started, details, [run, confirm], **private)
    confirmed.failure(hidden_button, None, confirm, **hidden)
    run.change(bind(status, studio), run, details, api_name="training_status")
    run.input(hidden_button, None, confirm_resume, **hidden)  # a pick (the panel's polling redraws the picker)
    stop.click(bind(stop_run, studio), [run, discard], details, api_name="stop_training")
    # Resume of a remote run that sends a new job asks the same way (API callers resume directly)
    resume.click(bind(resume_or_confirm, studio), run, [details, confirm_resume, asked], **private)
    resumed = confirm_resume.click(bind(resume_confirmed, studio), [run, asked], details, api_name="resume_training")
    resumed.then(hidden_button, None, confirm_resume, **hidden)
    details.change(bind(view, studio), run, panel, **private)
    ctx.poll(POLL_S, bind(view, studio), run, panel)
    priced = [options["backend"], options["base"], options["steps"]]
    for component in priced:
        component.change(remote_price, priced, cost, **private)
        component.change(hidden_button, None, confirm, **hidden)
    ctx.picker(bind(choices, studio), dataset, refresh)


def _options() -> tuple[dict[str, Component], gr.Markdown]:
    """The run's options by ``start``'s parameter names, in the order it takes them after the dataset; and the
    price line shown among them."""
    models = trainable_models()
    base = gr.Dropdown([(m["name"], key) for key, m in models.items()], value="flux-dev", label="Base model",
                       allow_custom_value=True, info="A catalog model, a repo id or a local pipeline folder")
    with gr.Row():
        backend = gr.Radio(list(BACKENDS), value=LOCAL, label="Backend", scale=2,
                           info=f"local: this GPU; {' or '.join(REMOTE_BACKENDS)}: their GPUs, paid per run (key in "
                                "Settings)")
        destination = gr.Textbox("", label=f"{' or '.join(destination_services())} destination (owner/model)", scale=2,
                                 placeholder="you/my-lora: a model of yours that receives the LoRA")
    cost = gr.Markdown(elem_id="train-cost")
    preset = gr.Dropdown(list(PRESETS), value="24gb", label="GPU memory preset",
                         info="Sets resolution, gradient checkpointing, fp8 base weights, batch size")
    # whole numbers without precision: Gradio would round a fraction, which the handlers refuse instead
    with gr.Row():
        steps = gr.Number(1000, label="Steps")
        # empty (0): what the CLI takes without --lr, so a remote trainer gets none and uses its own default
        lr = gr.Number(None, label="Learning rate (0 = default)", info="Empty: 1e-4, or a remote trainer's own")
        # the ranges are the checks' (options.py): the API takes what the CLI takes
        rank = gr.Slider(MIN_RANK, MAX_RANK, value=16, step=1, label="Rank")
        # Gradio's number box shows 0 for no value (and sends 0): the label says what the box shows
        alpha = gr.Number(None, label="Alpha (0 = the rank)", info="Empty: the rank")
    with gr.Accordion("More options", open=False):
        with gr.Row():
            batch = gr.Number(0, label="Batch size (0 = preset)")
            accum = gr.Number(1, label="Gradient accumulation")
            resolution = gr.Number(0, label="Resolution (0 = preset)")
        with gr.Row():
            optimizer = gr.Dropdown(list(OPTIMIZERS), value="adamw", label="Optimizer")
            scheduler = gr.Dropdown(list(SCHEDULERS), value="constant", label="LR scheduler")
            warmup = gr.Number(0, label="Warm-up steps")
        with gr.Row():
            dropout = gr.Slider(0, DROPOUT_MAX, value=0.05, step=DROPOUT_STEP, label="Caption dropout")
            seed = gr.Number(42, label="Seed")
        prompts = gr.Textbox("", label="Sample prompts (one a line)", lines=2)
        with gr.Row():
            sample_every = gr.Number(0, label="Sample every N steps (0 = never)")
            save_every = gr.Number(250, label="Save every N steps")
            keep_last = gr.Number(2, label="Keep last K checkpoints")
    return dict(base=base, preset=preset, steps=steps, lr=lr, rank=rank, alpha=alpha, batch_size=batch,
                grad_accum=accum, resolution=resolution, optimizer=optimizer, scheduler=scheduler,
                warmup_steps=warmup, caption_dropout=dropout, seed=seed, sample_prompts=prompts,
                sample_every=sample_every, save_every=save_every, keep_last=keep_last, backend=backend,
                destination=destination), cost


def choices(studio: Studio, request: gr.Request):
    """The dataset picker's choices."""
    return gr.Dropdown(choices=dataset_choices(studio, user_of(request)))


@friendly
def start(studio: Studio, dataset: str, base: str, preset: str | None = None, steps: int = 1000,
          lr: float | None = None, rank: int = 16, alpha: float | None = None, batch_size: int | None = None,
          grad_accum: int = 1, resolution: int | None = None, optimizer: str = "adamw", scheduler: str = "constant",
          warmup_steps: int = 0, caption_dropout: float = 0.05, seed: int = 42, sample_prompts: str = "",
          sample_every: int = 0, save_every: int = 250, keep_last: int = 2, backend: str = LOCAL,
          destination: str = "", request: gr.Request = None):
    """Check the options and queue a training run (here, or on fal/Replicate); returns its status. The names
    are the CLI's flags; ``sample_prompts`` holds one prompt a line, and 0 (or empty) takes the preset's batch
    size and resolution, the default learning rate (a remote trainer's own) and an alpha equal to the rank."""
    run_id = start_training(studio, run_options(locals()), user_of(request), backend or LOCAL, destination or "")
    return run_status(studio, run_id, user_of(request), is_admin(studio, request))


def run_options(chosen: dict[str, Any]) -> TrainOptions:
    """The run's options from ``start``'s arguments by name (empty boxes as ``start`` documents); a whole number
    sent as a float (``1000.0``) as the int it is, a fraction as it came (the checks refuse it)."""
    chosen = {name: int(value) if name in WHOLE_OPTIONS and isinstance(value, float) and value.is_integer() else value
              for name, value in chosen.items()}
    return TrainOptions(
        dataset=chosen["dataset"] or "", base=chosen["base"] or "", preset=chosen["preset"] or None,
        steps=chosen["steps"], lr=chosen["lr"] or None, rank=chosen["rank"], alpha=chosen["alpha"] or None,
        batch_size=chosen["batch_size"] or None, grad_accum=chosen["grad_accum"],
        resolution=chosen["resolution"] or None, optimizer=chosen["optimizer"], scheduler=chosen["scheduler"],
        warmup_steps=chosen["warmup_steps"] or 0, caption_dropout=chosen["caption_dropout"], seed=chosen["seed"],
        sample_prompts=[p.strip() for p in (chosen["sample_prompts"] or "").splitlines() if p.strip()],
        sample_every=chosen["sample_every"] or 0, save_every=chosen["save_every"] or 0,
        keep_last=chosen["keep_last"])


@friendly
@functools.wraps(start, assigned=("__annotations__",))  # start's parameters: Gradio passes the request by them
def train_or_confirm(studio: Studio, *args: Any, **kwargs: Any):
    """Train's click, with ``start``'s parameters: a local run starts at once (its status and id, the confirmation
    hidden); a remote run, which the service bills, starts nothing yet: checked the way its start checks it (a
    refusal shows now, the confirmation stays hidden), it shows the confirmation naming its service and estimated
    price (``start`` runs on its click)."""
    chosen = inspect.signature(start).bind(studio, *args, **kwargs)
    chosen.apply_defaults()
    backend = check_backend(chosen.arguments["backend"])
    if backend == LOCAL:
        info = start(studio, *args, **kwargs)
        return info, *started(info)
    _entry, price, _data = check_remote_run(studio, run_options(chosen.arguments), backend,
                                            user_of(chosen.arguments["request"]), chosen.arguments["destination"] or "")
    return gr.skip(), gr.skip(), confirmation("train", backend, price)


def confirmation(verb: str, backend: str, price: float) -> gr.Button:
    """The confirmation of a billed remote run, naming its service and estimated price."""
    return gr.Button(f"Yes, {verb} on {trainer_catalog()[backend]['name']} for about ${price:.2f}", visible=True)


def started(info: dict) -> tuple[int, gr.Button]:
    """Once a run started: the run picker shows it, the confirmation goes."""
    return info["run"], hidden_button()


@friendly
def status(studio: Studio, run_id: float, request: gr.Request = None):
    """Progress, losses, speed, ETA, VRAM, samples, log tail and result of a run."""
    return run_status(studio, run_id, user_of(request), is_admin(studio, request))


@friendly
def stop_run(studio: Studio, run_id: float, discard_progress: bool = False, request: gr.Request = None):
    """Stop a run: a checkpoint is saved first unless ``discard_progress``."""
    return request_stop(studio, run_id, user_of(request), is_admin(studio, request), bool(discard_progress))


@friendly
def resume_training(studio: Studio, run_id: float, request: gr.Request = None):
    """Queue a stopped, interrupted or failed run again from its latest checkpoint."""
    resume_run(studio, run_id, user_of(request), is_admin(studio, request))
    return run_status(studio, run_id, user_of(request), is_admin(studio, request))


@friendly
def resume_or_confirm(studio: Studio, run_id: float, request: gr.Request = None):
    """Resume's click: a run whose Resume bills nothing new resumes at once (its status, the confirmation hidden);
    a remote one that would send a new job, which the service bills, resumes nothing yet: it shows the confirmation
    naming its service and estimated price, and the run it names (:func:`resume_confirmed` runs on its click)."""
    billed = resume_price(studio, run_id, user_of(request), is_admin(studio, request))
    if billed:
        return gr.skip(), confirmation("resume", *billed), whole_number("run", run_id, 1, MAX_ID)
    return resume_training(studio, run_id, request), hidden_button(), None


@friendly
def resume_confirmed(studio: Studio, run_id: float, asked: int | None = None, request: gr.Request = None):
    """The resume confirmation's click (and the ``resume_training`` API, which has no ``asked``): resume the run
    the confirmation named, only while the picker still shows it."""
    if asked is not None and whole_number("run", run_id, 1, MAX_ID) != asked:
        raise InvalidInput(f"This confirmation was for run {asked}, which is no longer picked: nothing was resumed. "
                           "Pick the run and click Resume again.")
    return resume_training(studio, run_id, request)


def view(studio: Studio, selected: float | None, request: gr.Request):
    """Everything the run panel shows, from the store (polled by the timer)."""
    user, admin = user_of(request), is_admin(studio, request)
    rows = list_runs(studio, user, admin)
    table = [[r["run"], r["status"], r["title"], r["step"], r["total"],
              None if r["final_loss"] is None else round(r["final_loss"], 4), r["error"] or ""] for r in rows]
    picker = gr.Dropdown(choices=[(f"#{r['run']} {r['title']} ({r['status']})", r["run"]) for r in rows])
    if not selected:
        return picker, "No run selected.", None, [], "", table
    try:
        info = run_status(studio, selected, user, admin)
    except MasukaError as error:  # a run deleted or not yours: say so instead of raising every tick
        return picker, str(error), None, [], "", table
    losses = pd.DataFrame(info["losses"], columns=["step", "loss"]) if info["losses"] else None
    return (picker, progress_text(info), losses,  # no points yet: no plot (an empty one warns every tick)
            [(path, path.rsplit("/", 1)[-1]) for path in info["samples"]], info["log"], table)


def remote_price(backend: str, base: str, steps: float | None) -> str:
    """The estimated price of a remote run, shown before Train (empty for local runs)."""
    if (backend or LOCAL) == LOCAL:
        return ""
    try:
        return f"**{price_line(backend, base or '', whole_number('steps', steps or 0, 0, MAX_STEPS))}**"
    except (MasukaError, ValueError) as error:
        return f"⚠️ {error}"


def progress_text(info: dict) -> str:
    """Progress bar and one line of figures for a run."""
    total = info["total"] or 1
    filled = round(20 * min(info["step"], total) / total)
    bar = f"`{'█' * filled}{'░' * (20 - filled)}` {100 * info['step'] / total:.0f} %"
    figures = [f"**{info['status']}** — step {info['step']}/{total}"]
    if info["status"] in ("queued", "running"):  # a remote run's phase and note; what a queued run waits for
        doing = [part for part in (info["phase"], info["note"]) if part and part != info["status"]]
        if doing:
            figures.append(": ".join(doing))
    if info["loss"] is not None:
        figures.append(f"loss {info['loss']:.4f}")
    if info["sec_per_step"]:
        figures.append(f"{info['sec_per_step']:.2f} s/step")
    if info["eta_s"] is not None:
        minutes, seconds = divmod(int(info["eta_s"]), 60)
        figures.append(f"ETA {minutes}m{seconds:02d}s")
    if info["vram_gb"]:
        figures.append(f"peak VRAM {info['vram_gb']:.1f} GB")
    text = bar + "\n\n" + " · ".join(figures)
    if info["error"]:
        text += f"\n\n{info['error']}"
    if info["lora"]:
        text += f"\n\nLoRA: `{info['lora']}` (in the Image tab's LoRA list)"
    return text
