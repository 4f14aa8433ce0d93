"""Training runs as jobs: a run is a ``jobs`` row of kind ``train`` with its loss curve in ``job_metrics``.

Runs go through the ``gpu-train`` lane (queued runs train one after another) and hold the GPU for their whole
length, so image generation waits or is refused with a clear message. Stop saves a checkpoint first (unless
discarded) and marks the run ``cancelled``; a signal to the CLI saves one and marks it ``interrupted``; either,
like a run whose process died, can be resumed from its latest checkpoint with the same optimizer state. A stop
while the run still waits for the GPU ends it at once, with nothing trained and nothing to save.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from masuka import jobs
from masuka.errors import Cancelled, InvalidInput, NotFound
from masuka.image.aid_settings import AidSettings, load_aid_settings
from masuka.image.generate import image_spec
from masuka.jobs import JobContext
from masuka.loras.library import check_lora_name, free_lora_name, register_lora
from masuka.models import architectures
from masuka.models.catalog import ModelSpec, architecture_of, explain_load_error
from masuka.models.manage import using_models
from masuka.services import HUGGINGFACE
from masuka.store import LOCAL_USER, Store, now, row_id
from masuka.studio import Studio
from masuka.training import checkpoints
from masuka.training.data import TrainingSet, dataset_for_training
from masuka.training.export import check_hub_repo, push_lora
from masuka.training.options import KIND, TrainOptions, check_options, fill_defaults, lora_name, with_warmup
from masuka.zerogpu import refuse_local_training

log = logging.getLogger(__name__)
LANE = "gpu-train"
RESUMABLE = ("cancelled", "interrupted", "failed")
#: what a run may be made for -> ``"module:function"`` finishing that once the run completes, however it ran
#: (queued by its maker, resumed in the Train tab or the CLI, or taken up at the next start):
#: ``function(studio, ref, run_id)``; a character links its LoRA and renders its test grid
MADE_FOR = {"character": "masuka.characters.training:finish_character"}
FLUSH_S = 1.0


def check_training(studio: Studio, options: TrainOptions, owner: str = LOCAL_USER, run: jobs.JobRow | None = None
                   ) -> tuple[TrainOptions, ModelSpec, str, TrainingSet]:
    """Everything that can be checked before the GPU is touched: a GPU that can train here (not ZeroGPU's), model,
    options, dataset (for an existing ``run``, the one it recorded: see :func:`dataset_for_training`)."""
    refuse_local_training()
    spec = image_spec(studio, owner, options.base)
    pipeline = spec.pipeline if spec.architecture else _hub_pipeline(studio, spec)
    architecture = spec.architecture or architecture_of(pipeline)
    profile = architectures.get(architecture)
    if profile is None or profile.training is None:
        trainable = [p.label for p in architectures.PROFILES.values() if p.training]
        raise InvalidInput(f"{spec.id!r} is not a {', '.join(trainable)} pipeline: MASUKA trains LoRAs for those.")
    architecture = profile.id
    if pipeline in profile.training.untrainable:
        raise InvalidInput(f"{spec.id!r} cannot be trained here: {profile.training.untrainable[pipeline]}.")
    options = fill_defaults(options, architecture)
    check_options(options, architecture, profile.size_multiple)
    if options.push_to_hub:
        check_hub_repo(options.push_to_hub, studio.keys.get(HUGGINGFACE))
    return options, spec, architecture, dataset_for_training(studio, options.dataset, owner, run)


def _hub_pipeline(studio: Studio, spec: ModelSpec) -> str:
    """A repo id's pipeline class from its ``model_index.json`` (cached or downloaded; no weights)."""
    from huggingface_hub import hf_hub_download

    try:
        index = hf_hub_download(spec.source, "model_index.json", token=studio.keys.optional(HUGGINGFACE))
    except Exception as error:  # gated, missing, offline: all told in words
        raise explain_load_error(spec, error) from error
    return json.loads(Path(index).read_text(encoding="utf-8")).get("_class_name", "")


def create_run(studio: Studio, options: TrainOptions, owner: str = LOCAL_USER, backend: str = "local",
               destination: str = "", made_for: tuple[str, int] | None = None) -> int:
    """Check the options and the owner's share of queued jobs, then record a queued run (not started); returns its
    id. A refusal leaves no row and no run folder. A remote ``backend`` (fal, Replicate) trains on the service's
    GPUs (:mod:`masuka.training.backends.remote`). A LoRA name given must be free now; one taken by the time the
    run ends gets a suffix (:func:`free_lora_name`). A local run ``made_for`` something (a kind of
    :data:`MADE_FOR`, its id) finishes that once it completes."""
    from masuka.training.backends import LOCAL, check_backend

    if options.name:
        check_lora_name(studio, owner, options.name)
    if check_backend(backend) != LOCAL:
        # imported here: the remote module needs httpx, which ``bench suite`` runs without
        from masuka.training.backends.remote import create_remote_run

        return create_remote_run(studio, options, backend, owner, destination)
    options, spec, architecture, data = check_training(studio, options, owner)
    studio.runner().check_share(owner)
    options = with_warmup(options)
    run_id = studio.runner().create(
        KIND, owner, title=f"{data.name} on {spec.id}", model=spec.id, step=0, total=options.steps,
        progress=0.0, params=options.to_dict(),
        state={"dataset": data.name, "dataset_id": data.id, "dataset_hash": data.hash,
               "architecture": architecture, "images": len(data.items), "made_for": made_for})
    run_dir = studio.config.runs_dir / f"run-{run_id:05d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    state = jobs.get(studio.store, run_id).state
    jobs.update(studio.store, run_id, state={**state, "run_dir": studio.config.relative(run_dir)})
    return run_id


def start_training(studio: Studio, options: TrainOptions, owner: str = LOCAL_USER, backend: str = "local",
                   destination: str = "") -> int:
    """Check, record and queue a run; it trains when the runs before it are done. Returns the run id."""
    run_id = create_run(studio, options, owner, backend, destination)
    submit_run(studio, run_id)
    return run_id


def submit_run(studio: Studio, run_id: int, interrupt: threading.Event | None = None,
               on_step: Callable[[int], None] | None = None) -> None:
    """Queue the run in the training lane; ``interrupt`` (set by a signal) saves and marks it ``interrupted``.
    A remote run needs no GPU here: it starts at once."""
    hooks = RunContext(studio.store, run_id, interrupt, observer=on_step)
    row = jobs.get(studio.store, run_id)
    if _remote(row):
        from masuka.training.backends.remote import execute_remote_run

        studio.runner().submit(run_id, lambda ctx: execute_remote_run(studio, ctx), ctx=hooks)
        return
    studio.runner().submit(run_id, lambda ctx: execute_run(studio, ctx), lane=LANE, ctx=hooks)
    if waiting := _earlier_runs(studio.store, run_id):
        hooks.log(waiting)


def run_job(studio: Studio, ctx: JobContext) -> None:
    """A run known only by its row (queued before a restart): local runs train, remote ones follow the service."""
    hooks = RunContext(studio.store, ctx.job_id)
    if _remote(jobs.get(studio.store, ctx.job_id)):
        from masuka.training.backends.remote import execute_remote_run

        execute_remote_run(studio, hooks)
    else:
        execute_run(studio, hooks)


def _remote(row: jobs.JobRow) -> bool:
    """Whether the run trains at a remote service (it keeps no checkpoints here)."""
    return row.params.get("backend", "local") != "local"


def _waiting_note(store: Store, row: jobs.JobRow) -> str:
    """For a run queued in the training lane, how many runs (anyone's) train before it; else ""."""
    return _earlier_runs(store, row.id) if row.status == "queued" and row.lane == LANE else ""


def _earlier_runs(store: Store, run_id: int) -> str:
    """How many runs (anyone's) train before run ``run_id``, queued in the training lane, said for people; or ""."""
    earlier = store.count(jobs.TABLE, f"lane = ? and id != ? and (status = 'running' or (status = 'queued' and "
                          f"(queued_at, id) < (select queued_at, id from {jobs.TABLE} where id = ?)))",
                          [LANE, run_id, run_id])
    return f"waiting for {earlier} earlier training run(s)" if earlier else ""


def still_runs_at(row: jobs.JobRow) -> str | None:
    """The service where the job of an ``interrupted`` remote run may still run (and be charged), which its Stop
    cancels; None for any other run, one whose job ended at the service (failed, cancelled) or whose create request
    may have arrived unanswered ("Needs attention": no job to cancel that MASUKA knows of) included."""
    if row.kind != KIND or row.status != "interrupted" or not _remote(row):
        return None
    from masuka.training.backends import trainer_catalog
    from masuka.training.backends.remote import follows_its_job

    if not follows_its_job(row):
        return None

    return trainer_catalog()[row.state["backend"]]["name"]


def execute_run(studio: Studio, hooks: RunContext, main: bool = True) -> None:
    """Train the run's row to completion (or its stop); every process of a multi-GPU run calls this."""
    from masuka.training.loop import TrainPlan, train

    run_id = hooks.job_id
    row = jobs.get(studio.store, run_id)
    options, spec, architecture, data = check_training(studio, TrainOptions.from_dict(row.params), row.owner, row)
    run_dir = studio.config.absolute(row.state["run_dir"])
    aids = _mandatory_safety(studio, options) if main else None
    plan = TrainPlan(options, spec, architecture, data, run_dir, studio.keys.optional(HUGGINGFACE),
                     screen=_sample_screen(studio, aids) if aids else None,
                     recorded_hash=row.state.get("dataset_hash"))
    hooks.total = options.steps
    if not main:
        train(plan, hooks)
        return
    latest = checkpoints.latest(run_dir)
    for metric in studio.store.find("job_metrics", "job_id = ? and step > ?", [run_id, latest.step if latest else 0]):
        studio.store.delete("job_metrics", metric["id"])
    try:  # the base model and the safety classifier are fetched outside the GPU slot and held until training ends
        with using_models(studio, row.owner, spec.source, aids.safety_model if aids else None,
                          watch=lambda progress: hooks.log(progress.message)), \
                studio.hold_gpu(f"training run {run_id}", row.owner, on_wait=hooks.log,
                                cancelled=hooks.stop_requested):
            studio.models.release()
            try:
                outcome = train(plan, hooks)
            finally:
                hooks.flush()
    except Cancelled:  # only the wait for the GPU raises it: the loop returns its stops as the outcome
        _stopped_waiting(studio, run_id, hooks)
        return
    if outcome.stopped == "interrupt":
        jobs.finish(studio.store, run_id, "interrupted",
                    f"Interrupted at step {outcome.step}; checkpoint saved. Resume continues from it.")
        return
    if outcome.stopped:
        kept = "checkpoint saved, Resume continues from it" if outcome.stopped == "save" else "progress discarded"
        raise Cancelled(kept, at=f"at step {outcome.step}")
    _finish(studio, run_id, row, plan, outcome, hooks)
    _finish_made_for(studio, row)


def _finish_made_for(studio: Studio, row: jobs.JobRow) -> None:
    """Finish what the completed run was made for (:data:`MADE_FOR`), if anything; that thing deleted meanwhile
    leaves the LoRA in the library."""
    if made_for := row.state.get("made_for"):
        kind, ref = made_for
        with suppress(NotFound):
            jobs.named_function(MADE_FOR[kind])(studio, ref, row.id)


def _mandatory_safety(studio: Studio, options: TrainOptions) -> AidSettings | None:
    """The aid settings when they make the safety check mandatory and the run makes sample images, else None."""
    aids = load_aid_settings(studio.config)
    return aids if aids.safety_mandatory and options.sample_prompts else None


def _sample_screen(studio: Studio, aids: AidSettings) -> Callable[[Any], Any]:
    """A sample image as it may be saved: screened by the mandatory safety check."""
    from masuka.image.safety import check_image

    return lambda image: check_image(studio, image, aids)[0]


def _stopped_waiting(studio: Studio, run_id: int, hooks: RunContext) -> None:
    """End a run stopped before it got the GPU: nothing was trained since its last start, so nothing is saved."""
    nothing = "nothing was trained, so there was nothing to save"
    if hooks.stop_mode() == "interrupt":
        jobs.finish(studio.store, run_id, "interrupted", f"Interrupted while it waited for the GPU; {nothing}. "
                    "Resume queues it again.")
        return
    raise Cancelled(nothing, at="while it waited for the GPU")


def _finish(studio: Studio, run_id: int, row: jobs.JobRow, plan: Any, outcome: Any, hooks: RunContext) -> None:
    """Export the LoRA, re-open it, put it in the library; only then is the run complete."""
    from masuka.training.export import lora_metadata, verify_lora, write_lora, write_model_card

    options, data = plan.options, plan.data
    folder = plan.run_dir / "lora"
    name = free_lora_name(studio, row.owner, lora_name(options, data.name, plan.architecture, run_id), folder)
    metadata = {**lora_metadata(plan, outcome.step), "masuka.run": str(run_id)}
    path = write_lora(outcome.pipe_class, folder, f"{name}.safetensors", outcome.layers, outcome.configs, metadata)
    info = verify_lora(path, plan.architecture)
    samples = sorted((plan.run_dir / "samples").glob("*.png"))[-4:]
    for sample in samples:
        (folder / sample.name).write_bytes(sample.read_bytes())
    write_model_card(folder, title=name, base_model=plan.spec.source if not plan.spec.is_local else plan.spec.id,
                     architecture=plan.architecture, dataset=data.name, images=len(data.items),
                     dataset_hash=data.hash, steps=outcome.step, rank=options.rank, alpha=f"{options.alpha:g}",
                     lr=f"{options.lr:g}", resolution=options.resolution, trigger=data.trigger,
                     file_name=path.name, samples=[s.name for s in samples])
    lora_id = register_lora(studio, info, row.owner, "training", job_id=run_id)
    result = {"lora": studio.config.relative(path), "lora_name": info.name, "lora_id": lora_id,
              "final_loss": _final_loss(studio.store, run_id, outcome), "steps": outcome.step}
    hooks.log(f"LoRA written and checked: {path.name} (in the LoRA library as {info.name!r})")
    if options.push_to_hub:
        push_lora(folder, options.push_to_hub, studio.keys.get(HUGGINGFACE), result, hooks.log)
    jobs.progress(studio.store, run_id, outcome.step, fraction=1.0, result=result)


def _final_loss(store: Store, run_id: int, outcome: Any) -> float | None:
    """The loss of the last step: the loop's, else (a run resumed after its last step from a checkpoint that did
    not record its loss) the one the loss curve holds for that step."""
    if outcome.final_loss is not None:
        return outcome.final_loss
    found = store.find("job_metrics", "job_id = ? and step = ?", [run_id, outcome.step], limit=1)
    return found[0]["loss"] if found else None


class RunContext(JobContext):
    """A run's :class:`JobContext` as the training loop's hooks: metrics per step (written at most once a
    second, with the row's progress), the stop mode, the log; ``observer(step)`` sees each step."""

    def __init__(self, store: Store, run_id: int, interrupt: threading.Event | None = None,
                 observer: Callable[[int], None] | None = None):
        super().__init__(store, run_id, interrupt)
        self.observer = observer
        row = jobs.lookup(store, run_id)
        self.total = (row.total if row else None) or 1
        self.pending: list[dict[str, Any]] = []
        self.flushed_at = 0.0

    def on_step(self, step: int, loss: float, lr: float, sec_per_step: float, vram_gb: float | None) -> None:
        self.pending.append(dict(step=step, loss=loss, lr=lr, sec_per_step=sec_per_step, vram_gb=vram_gb, at=now()))
        if time.monotonic() - self.flushed_at >= FLUSH_S or step == self.total:
            self.flush()
        if self.observer:
            self.observer(step)

    def flush(self) -> None:
        """Write the steps not yet stored, and the row's progress, in one transaction."""
        if not self.pending:
            return
        with self.store.transaction():
            for metric in self.pending:
                self.store.add_metric(self.job_id, **metric)
            self.progress(self.pending[-1]["step"], self.total)
        self.pending = []
        self.flushed_at = time.monotonic()

    def log(self, text: str) -> None:
        self.flush()
        super().log(text)


def _run_row(studio: Studio, run_id: Any, owner: str, admin: bool) -> jobs.JobRow:
    if run_id in (None, ""):
        raise InvalidInput("Choose a run first.")
    number = row_id(run_id)
    row = jobs.lookup(studio.store, number) if number else None
    if row is None or row.kind != KIND or not (admin or row.owner == owner):
        raise NotFound(f"Training run {run_id!r} does not exist.")
    return row


def request_stop(studio: Studio, run_id: Any, owner: str = LOCAL_USER, admin: bool = True,
                 discard: bool = False) -> dict:
    """Ask a run to stop: a queued run is cancelled at once, a running one after saving a checkpoint (a remote one
    not yet sent, before it is sent); an interrupted remote run, whose job may go on at its service, is cancelled
    there. A run still marked running whose process died is stopped at once (and its job at a service too)."""
    row = _run_row(studio, run_id, owner, admin)
    if row.status == "running" and not studio.runner().alive(row):  # its process died: no one would read a stop
        jobs.finish(studio.store, row.id, "interrupted", jobs.GONE)
        row = jobs.get(studio.store, row.id)
        if not still_runs_at(row):  # nothing goes on at a service either: stopped here and now
            jobs.finish(studio.store, row.id, "cancelled", str(Cancelled()))
            return run_status(studio, row.id, owner, admin)
    if still_runs_at(row):
        from masuka.training.backends.remote import cancel_interrupted_run

        cancel_interrupted_run(studio, row)
        return run_status(studio, row.id, owner, admin)
    if row.finished:
        raise InvalidInput(f"Run {row.id} is already {row.status}: there is nothing to stop.")
    jobs.request_stop(studio.store, row.id, discard)
    if row.status == "queued":
        jobs.finish(studio.store, row.id, "cancelled", str(Cancelled(at="before it started")))
    elif _remote(row) and not row.state.get("ref") and row.state.get("phase") != "submitting":
        # an upload may take a while: the stop is in hand
        jobs.log_line(studio.store, row.id, "stop noted: the run ends before its job is sent (after the upload "
                      "under way, if any)")
    return run_status(studio, row.id, owner, admin)


def resume_run(studio: Studio, run_id: Any, owner: str = LOCAL_USER, admin: bool = True, submit: bool = True,
               interrupt: threading.Event | None = None, restoring: bool = False) -> int:
    """Queue a stopped, interrupted or failed run again; it continues from its latest checkpoint. Within its
    owner's share of queued jobs, unless ``restoring`` work the app had in hand when it stopped."""
    row = _resumable(studio, run_id, owner, admin, restoring)
    if not _remote(row):
        check_training(studio, TrainOptions.from_dict(row.params), row.owner, row)
    studio.runner().requeue(row.id)
    if submit:
        submit_run(studio, row.id, interrupt)
    return row.id


def resume_price(studio: Studio, run_id: Any, owner: str = LOCAL_USER,
                 admin: bool = True) -> tuple[str, float] | None:
    """What a Resume of a run bills before it starts: the service and estimated price of the new job a remote run
    sends (none sent yet, or its job ended there); None when it bills nothing new (a local run, a remote one that
    follows the job it has). Refuses a run that does not resume, as :func:`resume_run` does."""
    row = _resumable(studio, run_id, owner, admin)
    if not _remote(row):
        return None
    from masuka.training.backends.remote import new_job_price

    price = new_job_price(row)
    return None if price is None else (row.state["backend"], price)


def _resumable(studio: Studio, run_id: Any, owner: str, admin: bool, restoring: bool = False) -> jobs.JobRow:
    """The row of a run that may resume now (its status, and its owner's share unless ``restoring``)."""
    row = _run_row(studio, run_id, owner, admin)
    if row.status not in RESUMABLE:
        raise InvalidInput(f"Run {row.id} is {row.status}: only a stopped, interrupted or failed run resumes.")
    if _remote(row):
        from masuka.training.backends.remote import check_resumable, sends_new_job

        check_resumable(row)
        if sends_new_job(row):  # refused here, before the run's record of its last job is replaced
            dataset_for_training(studio, TrainOptions.from_dict(row.params).dataset, row.owner, row)
    if not restoring:
        studio.runner().check_share(row.owner, row.id)
    return row


def run_status(studio: Studio, run_id: Any, owner: str = LOCAL_USER, admin: bool = True) -> dict:
    """A run as the UI and API show it: progress, what it is doing (a remote run's ``phase`` and ``note``, such
    as a queue position; how many runs a queued one waits for), losses, speed, ETA, VRAM, samples, log tail,
    result."""
    row = _run_row(studio, run_id, owner, admin)
    metrics = studio.store.find("job_metrics", "job_id = ?", [row.id], order_by="step")
    recent = [m["sec_per_step"] for m in metrics[-20:] if m["sec_per_step"]]
    speed = statistics.median(recent) if recent else None
    remaining = (row.total or 0) - (row.step or 0)
    run_dir = studio.config.absolute(row.state["run_dir"]) if row.state.get("run_dir") else None
    samples = sorted((run_dir / "samples").glob("*.png")) if run_dir else []
    result = row.result
    vram = [m["vram_gb"] for m in metrics if m["vram_gb"]]
    return {
        "run": row.id, "status": row.status, "title": row.title, "model": row.model,
        "dataset": row.state.get("dataset"), "step": row.step or 0, "total": row.total,
        "progress": row.progress or 0.0, "phase": row.state.get("phase"),
        "note": _waiting_note(studio.store, row) or row.state.get("note") or "",
        "loss": metrics[-1]["loss"] if metrics else None,
        "losses": [[m["step"], m["loss"]] for m in metrics], "sec_per_step": speed,
        "eta_s": round(speed * remaining) if speed and row.status == "running" else None,
        "vram_gb": max(vram) if vram else None, "samples": [str(p) for p in samples],
        "log": "\n".join((row.log or "").splitlines()[-30:]), "error": row.error,
        "lora": str(studio.config.absolute(result["lora"])) if result.get("lora") else None,
        "final_loss": result.get("final_loss"), "hub_url": result.get("hub_url"), "hub_error": result.get("hub_error"),
        "stop_requested": bool(row.stop_requested),
        "created_at": row.created_at, "finished_at": row.finished_at,
        "checkpoint_step": latest.step if run_dir and (latest := checkpoints.latest(run_dir)) else None,
    }


def list_runs(studio: Studio, owner: str = LOCAL_USER, admin: bool = True, limit: int = 50) -> list[dict]:
    """Runs newest first: id, status, title, step/total, final loss, LoRA."""
    where = "kind = ?" + ("" if admin else " and owner = ?")
    rows = jobs.find(studio.store, where, [KIND] if admin else [KIND, owner], limit=limit)
    return [{"run": r.id, "status": r.status, "title": r.title, "step": r.step or 0, "total": r.total,
             "final_loss": r.result.get("final_loss"), "lora": r.result.get("lora"),
             "error": r.error, "created_at": r.created_at} for r in rows]


def resume_remote_runs(studio: Studio) -> list[int]:
    """At app start: remote runs whose job the service had accepted, and that may still run there, when the app
    stopped go back to polling (a local run needs its user's Resume, a remote one costs nothing to follow). One
    whose job had ended at the service (failed, cancelled) is not: its Resume sends a new, billed job, which only
    its user's confirmed Resume does. Dataset zips killed uploads left are removed. Returns the run ids resumed."""
    from masuka.training.backends.remote import follows_its_job, remove_stale_uploads

    remove_stale_uploads(studio)
    resumed = []
    for row in jobs.find(studio.store, "kind = ? and status = 'interrupted'", [KIND], order_by="id"):
        if _remote(row) and follows_its_job(row):
            resumed.append(resume_run(studio, row.id, row.owner, restoring=True))
    return resumed
