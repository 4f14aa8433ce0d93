"""Remote training runs: the same ``jobs`` rows (kind ``train``) as local runs, trained on a service's GPUs.

The row is written before anything is sent, and the state is saved right before and right after the create
request, so a restart never submits a run twice: a run the service accepted resumes polling (Resume, or
``train --resume``), and one whose create request may have arrived unanswered is marked ``interrupted`` with
"Needs attention" instead of being sent again. Stop before the create request ends the run with nothing sent;
after it, Stop cancels the job at the service, and a cancel the service does not take leaves the run
``interrupted`` with its job, as a signal to the CLI does: the app follows such a job again at its next start,
and Stop on the run cancels it there. A Resume of a run whose job ended at the service (failed, cancelled)
sends it again as a new job; the app does not take such a run up by itself. Once the service accepted the job
(and bills it), no key (an app started without it), a key the service refuses (401/403, a key rotated) or a
service that cannot be reached never fails the run: it stays ``running`` in phase ``waiting``, its error saying
why and "Still trying; the job is kept.", and tries again with whatever key is set by then, as a video job does
(:mod:`masuka.video.jobs`). The end of the job at the service and the end of the run are one write, so a process
killed in between never leaves a run that looks like one to follow. Options the service's trainer would not
honour are refused before the row is written. The dataset zip lives in ``tmp/`` only while it uploads; one a
killed process left is removed when the run is taken up again or the app starts (:func:`remove_stale_uploads`).
The finished LoRA is downloaded into the run folder, stamped with its metadata and added to the LoRA library (and
pushed to the Hub when asked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from dataclasses import fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from masuka import jobs
from masuka.errors import Cancelled, InvalidInput, MasukaError, ProviderError
from masuka.jobs import JobContext
from masuka.loras.files import inspect_lora
from masuka.loras.library import free_lora_name, register_lora
from masuka.models import architectures
from masuka.remote.http import KEY_REFUSED, MaybeSubmitted, ProviderUnavailable, open_client, service_key
from masuka.remote.timing import KEPT, RemoteSettings
from masuka.services import HUGGINGFACE
from masuka.store import LOCAL_USER, Store
from masuka.studio import Studio
from masuka.training.backends import estimate_usd, remote_backends, trainer_catalog, trainer_entry
from masuka.training.backends.base import RemoteTrainer, TrainRequest, TrainStatus, dataset_zip
from masuka.training.data import TrainingSet, dataset_for_training
from masuka.training.export import check_hub_repo, push_lora
from masuka.training.options import KIND, TrainOptions, check_options, fill_defaults, lora_name, option_name

#: a trainer's step in its log: "step 120/1000" (fal), or the training's tqdm bar "…| 120/1000 [01:23<…" (Replicate's
#: ai-toolkit trainers), whose total is the run's steps (other bars, loading or caching, count other things)
STEP = re.compile(r"\bstep\D{0,3}(\d+)\s*/\s*(\d+)", re.I)
BAR = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
#: the options every remote run honours, whatever its trainer (``RemoteTrainer.takes`` names the others it takes)
HONOURED = ("dataset", "base", "steps", "name", "push_to_hub")
#: a job's states at the service after which it runs no more; a Resume of a run whose job ``ENDED`` sends a new one
FINAL = ("completed", "failed", "cancelled")
ENDED = ("failed", "cancelled")
#: the folder under ``tmp/`` a run's dataset zip is written to while it uploads (``{tmp}/train-upload-run-00001/``)
UPLOAD_FOLDER = "train-upload-run-"
#: what stands in for the options left out when checking a run on an architecture without local training (no
#: profile ``training`` defaults): only their presence matters, as a remote run sends none it was not given
STAND_INS: dict[str, Any] = dict(lr=1e-4, resolution=512, batch_size=1, sample_steps=20, gradient_checkpointing=False,
                                  base_precision="bf16")


class _Interrupted(Exception):
    """This process stops following the run (a signal to the CLI, a cancel the service did not take) while its job
    may go on at the service; the message says so."""


def estimate_remote(backend: str, base: str, steps: int) -> tuple[dict, float]:
    """The trainer entry and the estimated price of a run; :class:`InvalidInput` when the backend cannot train
    ``base`` or ``steps`` is out of range."""
    entry = trainer_entry(backend, base)
    if not 1 <= int(steps or 0) <= entry["max_steps"]:
        raise InvalidInput(f"{entry['name']} trains 1 to {entry['max_steps']} steps (got {steps}).")
    return entry, estimate_usd(entry, int(steps))


def price_line(backend: str, base: str, steps: int) -> str:
    """One line for people: what runs where and what it should cost."""
    entry, price = estimate_remote(backend, base, steps)
    return (f"{trainer_catalog()[backend]['name']}: {entry['name']}, {steps} steps, estimated ${price:.2f} "
            f"({entry.get('note', 'catalog estimate')})")


def destination_services() -> list[str]:
    """The labels of the services whose runs need a destination model (``RemoteTrainer.needs_destination``)."""
    return [cls.service.label for cls in remote_backends().values() if cls.needs_destination]


def check_remote_options(options: TrainOptions, backend: str, entry: dict) -> None:
    """Refuse what the service's trainer would not honour (any option it does not take, set to a value of its own),
    then check the values it takes the way a local run checks them. The GPU memory preset is about this machine's
    GPU: a remote run does not use it (its log says so)."""
    label = trainer_catalog()[backend]["name"]
    if options.gpus != 1:
        raise InvalidInput(f"{label} trains on its own GPUs: --gpus is for local training (leave it out).")
    profile = architectures.require(entry["architecture"])
    filled = _filled(replace(options, preset=None), profile)
    taken = {name: getattr(options, name) for name in (*HONOURED, *remote_backends()[backend].takes)}
    # what leaving the others out gives; a remote trainer's alpha is its rank
    neutral = replace(_filled(TrainOptions(**taken), profile), alpha=float(filled.rank))
    ignored = [f.name for f in fields(TrainOptions) if getattr(filled, f.name) != getattr(neutral, f.name)]
    if ignored:
        accepted = ", ".join(_shown(getattr(neutral, name)) for name in ignored)
        raise InvalidInput(f"{label}'s trainer does not take {', '.join(map(option_name, ignored))}: set "
                           f"{'it' if len(ignored) == 1 else 'them'} back to {accepted} (or leave "
                           f"{'it' if len(ignored) == 1 else 'them'} out on the command line), or train locally.")
    check_options(filled, profile.id, profile.size_multiple)


def _shown(value: Any) -> str:
    """A setting's value as the Train tab shows it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "none" if not value else ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _filled(options: TrainOptions, profile: architectures.Profile) -> TrainOptions:
    """``options`` with what was left out filled in, to check them: the profile's training defaults, or for an
    architecture MASUKA does not train locally :data:`STAND_INS` (the service's trainer uses its own)."""
    if profile.training:
        return fill_defaults(options, profile.id)
    filled = replace(options, **{name: value for name, value in STAND_INS.items() if getattr(options, name) is None})
    return filled if filled.alpha is not None else replace(filled, alpha=float(filled.rank))


def check_remote_run(studio: Studio, options: TrainOptions, backend: str, owner: str = LOCAL_USER,
                     destination: str = "") -> tuple[dict, float, TrainingSet]:
    """Everything that can refuse a remote run without sending a request or writing a row (the Train tab asks it
    before showing its confirmation), the owner's share of queued jobs included: the trainer entry, the estimated
    price and the dataset; :class:`InvalidInput` (:class:`NotFound` for an unknown dataset, :class:`GPUBusy` for a
    full share) otherwise."""
    entry, price = estimate_remote(backend, options.base, options.steps)
    cls = remote_backends()[backend]
    check_remote_options(options, backend, entry)
    if options.push_to_hub:
        check_hub_repo(options.push_to_hub, studio.keys.get(HUGGINGFACE))
    service_key(studio, cls, owner)
    studio.runner().check_share(owner)
    if cls.needs_destination and "/" not in (destination or ""):
        label = cls.service.label
        raise InvalidInput(f"Training on {label} needs a destination model of yours (owner/name): create it on "
                           f"{label} and give it as the destination.")
    return entry, price, dataset_for_training(studio, options.dataset, owner)


def create_remote_run(studio: Studio, options: TrainOptions, backend: str, owner: str = LOCAL_USER,
                      destination: str = "") -> int:
    """Check everything (:func:`check_remote_run`), then record a queued remote run (nothing sent yet); returns
    its id."""
    entry, price, data = check_remote_run(studio, options, backend, owner, destination)
    run_id = studio.runner().create(
        KIND, owner, title=f"{data.name} on {backend} {options.base}", provider=backend,
        model=options.base, step=0, total=options.steps, progress=0.0, params={**options.to_dict(), "backend": backend},
        cost_usd=price, state={"backend": backend, "trainer": entry["name"], "dataset": data.name,
                               "dataset_id": data.id, "dataset_hash": data.hash, "images": len(data.items),
                               "trigger": data.trigger, "destination": destination, "phase": "queued"})
    run_dir = studio.config.runs_dir / f"run-{run_id:05d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    state = jobs.get(studio.store, run_id).state
    jobs.update(studio.store, run_id, state={**state, "run_dir": studio.config.relative(run_dir)})
    return run_id


def execute_remote_run(studio: Studio, ctx: JobContext) -> None:
    """The body of a remote run: upload and submit once (unless already accepted), poll, download, record. Once the
    service accepted the job, its key missing or refused never fails the run: it waits (:func:`_wait_for_service`)
    and opens the service again with whatever key is set by then."""
    row = ctx.row()
    state = dict(row.state)
    options = TrainOptions.from_dict(row.params)
    _remove_upload(studio, ctx.job_id, state)  # one a process killed while it uploaded left
    if state.get("submitting"):  # its create request may have arrived unanswered: never sent again
        _needs_attention(studio, ctx.job_id, _label(state))
        return
    first, said = True, set[str]()
    try:
        while True:
            try:
                trainer = _trainer(studio, state["backend"], row.owner)
            except InvalidInput as error:  # no key (any more)
                _wait_for_service(studio, ctx, state, error, said)
                continue
            try:
                try:
                    output = _follow(studio, ctx, row, options, state, trainer, first)
                except ProviderError as error:  # from a request that carries the key (create, poll, result)
                    if error.status not in KEY_REFUSED:
                        raise
                    _wait_for_service(studio, ctx, state, error, said)  # a key changed since it accepted the job
                    first = False
                    continue
                if output is not None:  # the download carries no key: a 401/403 there (an expired signed URL)
                    # fails the run, and its Resume fetches the result again
                    _finish(studio, ctx.job_id, row, options, state, trainer, output, ctx.log)
                return
            finally:
                trainer.close()
    except _Interrupted as interrupted:
        jobs.finish(studio.store, ctx.job_id, "interrupted", str(interrupted))


def _follow(studio: Studio, ctx: JobContext, row: jobs.JobRow, options: TrainOptions, state: dict,
            trainer: RemoteTrainer, first: bool) -> str | None:
    """Send the run once (unless its job was accepted) and follow its job to the end; returns the URL of its LoRA,
    or None when the create request may have arrived unanswered ("Needs attention")."""
    run_id, log = ctx.job_id, ctx.log
    if _job_ended(state):  # a Resume: the old job runs no more
        log(f"{trainer.service.label} job {state['ref']['id']} ended ({state['phase']}): sending the run again "
            f"as a new job (estimated ${row.cost_usd:.2f})")
        for name in ("ref", "upload", "log_count"):
            state.pop(name, None)
        _save(studio.store, run_id, state, "queued", step=0, progress=0.0)
    if state.get("ref"):
        if first:
            log(f"resuming: polling {trainer.service.label} job {state['ref']['id']}")
    elif not _submit(studio, ctx, row, options, state, trainer):
        _needs_attention(studio, run_id, trainer.service.label)
        return None
    return _poll(studio, ctx, options, state, trainer)


def _accepted(state: dict) -> bool:
    """Whether the service accepted (and bills) the run's job, and the job may still run there."""
    return bool(state.get("ref")) and not _job_ended(state)


def follows_its_job(row: jobs.JobRow) -> bool:
    """Whether a Resume of this remote run follows the job the service accepted (which costs nothing new, so the app
    does it by itself at start): not one whose create request may have arrived unanswered ("Needs attention"), nor
    one whose job ended there (its Resume sends a new, billed job)."""
    return _accepted(row.state) and not row.state.get("submitting")


def _wait_for_service(studio: Studio, ctx: JobContext, state: dict, error: MasukaError, said: set[str]) -> None:
    """A run whose job the service accepted, whose service cannot be asked now (no key, a key it refuses): say so
    in the row (phase ``waiting``, the error with :data:`~masuka.remote.timing.KEPT`), wait as a video job does
    (:meth:`~masuka.remote.timing.RemoteSettings.retry_wait_s`), then the caller tries again with whatever key is set
    by then. A Stop meanwhile cancels the job at the service when a key lets it. Any other run fails with
    ``error``: nothing runs, or is billed, at the service. Each reason is logged once (``said``: those this process
    logged for the run), however often the service is asked again."""
    if not _accepted(state):
        raise error
    why = f"{error} {KEPT}"
    if why not in said:
        said.add(why)
        ctx.log(f"waiting: {why}")
    _save(studio.store, ctx.job_id, state, "waiting", error=why)
    ctx.pause(RemoteSettings.from_env().retry_wait_s(), lambda: _stop_while_waiting(studio, ctx, state))


def _stop_while_waiting(studio: Studio, ctx: JobContext, state: dict) -> None:
    """:func:`_check_stop` for a run waiting for its service: the service is opened with the key set now to cancel
    the job; without one, the run is left ``interrupted`` with its job, as a cancel the service does not take
    leaves it."""
    mode = ctx.stop_mode()
    if mode is None:
        return
    try:
        trainer = _trainer(studio, state["backend"], ctx.row().owner)
    except InvalidInput as error:
        if mode == "interrupt":
            raise _Interrupted(_left_running(_label(state))) from None
        raise _Interrupted(_not_cancelled(_label(state), error)) from None
    try:
        _check_stop(ctx, trainer, state)
    finally:
        trainer.close()


def _label(state: dict) -> str:
    """The name of the run's service for people."""
    return remote_backends()[state["backend"]].service.label


def upload_folder(studio: Studio, run_id: int) -> Path:
    """Where run ``run_id``'s dataset zip is written while it uploads: under ``tmp/``, which Settings' "Empty tmp/"
    clears of what a killed process left."""
    return studio.config.tmp_dir / f"{UPLOAD_FOLDER}{run_id:05d}"


def _remove_upload(studio: Studio, run_id: int, state: dict) -> None:
    """Remove the dataset zip a process killed while it uploaded left (a Resume that uploads zips again): in
    ``tmp/``, or in the run folder where earlier versions wrote it."""
    shutil.rmtree(upload_folder(studio, run_id), ignore_errors=True)
    if state.get("run_dir"):
        (studio.config.absolute(state["run_dir"]) / "dataset.zip").unlink(missing_ok=True)


def remove_stale_uploads(studio: Studio) -> list[int]:
    """At app start: remove the dataset zips of runs no process uploads for any more (ended, interrupted or
    deleted runs: a process killed while it uploaded left them), in ``tmp/`` and in run folders (where earlier
    versions wrote them); returns those runs' ids."""
    config = studio.config
    left = {folder: folder.name.removeprefix(UPLOAD_FOLDER) for folder in config.tmp_dir.glob(f"{UPLOAD_FOLDER}*")}
    left.update({archive: archive.parent.name.removeprefix("run-")
                 for archive in config.runs_dir.glob("run-*/dataset.zip")})
    removed = set()
    for path, number in left.items():
        if not number.isdigit():
            continue
        row = jobs.lookup(studio.store, int(number))
        if row is not None and not row.finished:  # a live process may be uploading it (a dead one's is interrupted)
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.add(int(number))
    return sorted(removed)


def new_job_price(row: jobs.JobRow) -> float | None:
    """The estimated price of the job a Resume of this remote run sends (the start's estimate); None when it follows
    the job it has (:func:`sends_new_job`)."""
    if not sends_new_job(row):
        return None
    options = TrainOptions.from_dict(row.params)
    return estimate_remote(row.state["backend"], options.base, options.steps)[1]


def sends_new_job(row: jobs.JobRow) -> bool:
    """Whether a Resume of this remote run sends a new job (none was sent, or its job ended at the service), which
    uploads the dataset as it is then; not when it follows the job it has, or one that may have arrived."""
    state = row.state
    return not (state.get("submitting") or (state.get("ref") and not _job_ended(state)))


def _job_ended(state: dict) -> bool:
    """Whether the run's job at the service ran and runs no more."""
    return bool(state.get("ref")) and state.get("phase") in ENDED


def cancel_interrupted_run(studio: Studio, row: jobs.JobRow) -> None:
    """Stop an ``interrupted`` run whose job may go on at the service (a signal to the CLI left it there, or a
    cancel the service did not take): cancel it there, then mark the run ``cancelled``. (One whose job ended there runs
    nowhere: :func:`~masuka.training.runs.still_runs_at` sends no Stop here.)"""
    trainer = _trainer(studio, row.state["backend"], row.owner)
    try:
        trainer.cancel(row.state["ref"])
    except ProviderError as error:  # the run stays interrupted with its job, as a Stop while it runs leaves it
        message = _not_cancelled(trainer.service.label, error)
        jobs.log_line(studio.store, row.id, message)
        raise ProviderError(message, error.status) from None
    finally:
        trainer.close()
    jobs.finish(studio.store, row.id, "cancelled", str(Cancelled(f"cancelled at {trainer.service.label} too")),
                state={**row.state, "phase": "cancelled", "note": ""})


def _trainer(studio: Studio, backend: str, owner: str) -> RemoteTrainer:
    return open_client(studio, remote_backends()[backend], owner)


def _submit(studio: Studio, ctx: JobContext, row: jobs.JobRow, options: TrainOptions, state: dict,
            trainer: RemoteTrainer) -> bool:
    """Upload the dataset and send the create request once; False when it may have arrived unanswered. A stop
    asked for before the request leaves ends the run with nothing sent (looked at before the upload and again
    right before the request)."""
    run_id, log, label = ctx.job_id, ctx.log, trainer.service.label
    data = dataset_for_training(studio, options.dataset, row.owner, row)
    if options.preset:
        log(f"note: the {options.preset} GPU memory preset is for this machine's GPU; {label} trains on its own")
    trainer.prepare(state.get("destination", ""))
    if not state.get("upload"):
        _stop_before_sending(ctx, label)
        log(f"uploading the dataset ({len(data.items)} images with captions) to {label}")
        _save(studio.store, run_id, state, "uploading")
        archive = dataset_zip(data, upload_folder(studio, run_id) / "dataset.zip")
        try:
            state["upload"] = trainer.upload(archive)
        finally:  # a copy of every image, needed only here (a Resume that uploads again zips again)
            shutil.rmtree(archive.parent, ignore_errors=True)
        _save(studio.store, run_id, state, "uploaded")
    request = TrainRequest(trainer_entry(state["backend"], options.base), state["upload"], data.trigger,
                           options.steps, options.rank, options.lr, options.resolution, state.get("destination", ""))
    _stop_before_sending(ctx, label)
    state["submitting"] = True
    _save(studio.store, run_id, state, "submitting")  # written BEFORE the request leaves
    try:
        state["ref"] = trainer.submit(request)
    except MaybeSubmitted:
        return False
    except BaseException:
        state.pop("submitting")  # refused: nothing was created; a Resume uploads the dataset as it is then
        state.pop("upload")
        _save(studio.store, run_id, state, "failed")
        raise
    state.pop("submitting")
    _save(studio.store, run_id, state, "queued", external_id=state["ref"]["id"])  # and right after
    log(f"accepted by {label} as {state['ref']['id']} (estimated ${row.cost_usd:.2f})")
    return True


def _stop_before_sending(ctx: JobContext, label: str) -> None:
    """A stop asked for before the create request: nothing runs at the service, so nothing is cancelled there."""
    mode = ctx.stop_mode()
    if mode == "interrupt":
        raise _Interrupted(f"Interrupted before the job was sent to {label}: nothing runs there. Resume sends it.")
    if mode is not None:
        raise Cancelled(f"nothing runs at {label}", at=f"before the job was sent to {label}")


def _poll(studio: Studio, ctx: JobContext, options: TrainOptions, state: dict, trainer: RemoteTrainer) -> str:
    """Poll until the job completes; returns the weights URL. An unreachable service is waited for."""
    interval = _poll_interval(trainer, state["backend"])
    while True:
        _check_stop(ctx, trainer, state)
        status = _status_or_wait(ctx, trainer, state)
        if status is None:
            continue
        for line in status.logs[state.get("log_count", 0):]:
            ctx.log(line)
            if (step := _step(line, options.steps)) is not None:
                ctx.progress(step, options.steps)
        state["log_count"] = len(status.logs)
        if status.state == "failed":
            raise _end(ctx.store, ctx.job_id, state, "failed",
                       ProviderError(f"{trainer.service.label} reports the training failed: {status.error}"))
        if status.state == "cancelled":
            raise _end(ctx.store, ctx.job_id, state, "cancelled", Cancelled(by=trainer.service.label))
        _save(studio.store, ctx.job_id, state, status.state, status.note, error=None)
        if status.state == "completed":
            return status.output or ""
        ctx.pause(interval, lambda: _check_stop(ctx, trainer, state))


def _step(line: str, steps: int) -> int | None:
    """The training step a log line reports, if it reports one (see :data:`STEP` and :data:`BAR`)."""
    if match := STEP.search(line):
        return min(int(match.group(1)), steps)
    match = BAR.search(line)
    if match and int(match.group(2)) == steps:
        return min(int(match.group(1)), steps)
    return None


def _status_or_wait(ctx: JobContext, trainer: RemoteTrainer, state: dict) -> TrainStatus | None:
    """The job's status; None after waiting a while when the service cannot be reached (a paid job is kept)."""
    try:
        return trainer.poll(state["ref"])
    except ProviderUnavailable as error:
        jobs.update(ctx.store, ctx.job_id, error=f"{error} {KEPT}")
    ctx.pause(trainer.settings.retry_wait_s(), lambda: _check_stop(ctx, trainer, state))
    return None


def _poll_interval(trainer: RemoteTrainer, backend: str) -> float:
    if trainer.settings.poll_s is not None:
        return trainer.settings.poll_s
    return float(trainer_catalog()[backend]["poll_s"])


def _finish(studio: Studio, run_id: int, row: jobs.JobRow, options: TrainOptions, state: dict, trainer: RemoteTrainer,
            output: str, log) -> None:
    """Download the LoRA, stamp its metadata, check it opens, add it to the library."""
    _save(studio.store, run_id, state, "downloading")
    folder = studio.config.absolute(state["run_dir"]) / "lora"
    downloaded = trainer.download(output, folder / (Path(urlsplit(output).path).name or "weights"))
    lora = trainer.lora_file(downloaded, folder)
    name = free_lora_name(studio, row.owner, lora_name(options, state["dataset"], state["backend"], run_id), folder)
    final = folder / f"{name}.safetensors"
    os.replace(lora, final)
    if downloaded.exists() and downloaded != final:
        downloaded.unlink()
    entry = trainer_entry(state["backend"], options.base)
    add_metadata(final, {"masuka.architecture": entry["architecture"], "masuka.base_model": options.base,
                         "masuka.trigger": state.get("trigger", ""), "masuka.steps": str(options.steps),
                         "masuka.provider": state["backend"], "masuka.trainer": entry.get("route") or entry["model"],
                         "masuka.cost_usd": f"{row.cost_usd:.2f}", "masuka.run": str(run_id),
                         "masuka.dataset_hash": state.get("dataset_hash", "")})
    try:
        info = inspect_lora(final)
    except InvalidInput as error:
        raise ProviderError(f"{trainer.service.label} returned a file MASUKA cannot use: {error}") from None
    if info.architecture != entry["architecture"]:
        got, wanted = (architectures.require(a).label for a in (info.architecture, entry["architecture"]))
        raise ProviderError(f"{trainer.service.label} returned a LoRA for {got}, but this run trains {wanted}: the "
                            "file stays in the run folder, out of the LoRA library.")
    lora_id = register_lora(studio, info, row.owner, state["backend"], job_id=run_id)
    result = {"lora": studio.config.relative(final), "lora_name": info.name, "lora_id": lora_id,
              "final_loss": None, "steps": options.steps, "provider_job_id": state["ref"]["id"]}
    log(f"LoRA downloaded and checked: {final.name} (in the LoRA library as {info.name!r})")
    if options.push_to_hub:
        push_lora(folder, options.push_to_hub, studio.keys.get(HUGGINGFACE), result, log)
    state.update(phase="completed", note="")
    jobs.finish(studio.store, run_id, "completed", result=result, state=state, step=options.steps, progress=1.0)


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Merge ``metadata`` into a safetensors file's ``__metadata__`` (the header is rewritten, tensors kept)."""
    with open(path, "rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(length))
        tensors = handle.read()
    header["__metadata__"] = {**(header.get("__metadata__") or {}), **metadata}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(struct.pack("<Q", len(blob)) + blob + tensors)
    os.replace(partial, path)


def _check_stop(ctx: JobContext, trainer: RemoteTrainer, state: dict) -> None:
    """Stop cancels the job at the service; an interrupt (a signal) leaves it running there. A cancel the service
    does not take leaves the run ``interrupted`` with its job (Stop again retries the cancel; the app follows the
    job at its next start), unless the job has ended there meanwhile: then the stop came too late and the run
    follows the job to its end (a completed one's LoRA is downloaded)."""
    mode = ctx.stop_mode()
    if mode is None:
        return
    label = trainer.service.label
    if mode == "interrupt":
        raise _Interrupted(_left_running(label))
    try:
        trainer.cancel(state["ref"])
    except ProviderError as error:
        if _ended(trainer, state["ref"]):
            ctx.log(f"{label} did not cancel the job ({error}): it had ended already")
            jobs.update(ctx.store, ctx.job_id, stop_requested=0)
            return
        raise _Interrupted(_not_cancelled(label, error)) from None
    raise _end(ctx.store, ctx.job_id, state, "cancelled", Cancelled(f"cancelled at {label} too"))


def _left_running(label: str) -> str:
    """What an interrupt (a signal to the CLI) says: the job goes on at the service ``label``."""
    return f"Interrupted: the job goes on at {label}; the app follows it again when it starts (or Resume)."


def _end(store: Store, run_id: int, state: dict, status: str, error: MasukaError) -> MasukaError:
    """Record that the run's job ended at the service (``failed`` or ``cancelled``: the state's phase) and the run's
    end in one write, so a process killed in between never leaves a run whose job ended looking like one to
    follow (which a start would send again as a new job); returns ``error`` for the caller to raise."""
    state.update(phase=status, note="")
    jobs.finish(store, run_id, status, str(error), state=state)
    return error


def _not_cancelled(label: str, error: MasukaError) -> str:
    """What a Stop says when the service ``label`` did not take the cancel: the job may go on (and bill) there."""
    return (f"Stop could not cancel the job at {label} ({error}): it may still run, and be charged, there. Stop again "
            "to retry; the app follows the job again when it starts (or Resume).")


def _ended(trainer: RemoteTrainer, ref: dict) -> bool:
    """Whether the job has ended at the service; False when the service cannot tell now."""
    try:
        return trainer.poll(ref).state in FINAL
    except ProviderError:
        return False


def _save(store: Store, run_id: int, state: dict, phase: str, note: str = "", **fields) -> None:
    state.update(phase=phase, note=note)
    jobs.progress(store, run_id, state=state, **fields)


def _needs_attention(studio: Studio, run_id: int, label: str) -> None:
    jobs.finish(studio.store, run_id, "interrupted",
                f"Needs attention: {_unanswered(label)}; MASUKA does not send it again by itself.")


def check_resumable(row: jobs.JobRow) -> None:
    """Refuse a Resume of a run whose create request may have arrived unanswered ("Needs attention"): MASUKA never
    sends it again, so a Resume could only end where it started."""
    if row.state.get("submitting"):
        label = remote_backends()[row.state["backend"]].service.label
        raise InvalidInput(f"Run {row.id} needs attention: {_unanswered(label)}. Start a new run to train again.")


def _unanswered(label: str) -> str:
    """Why a run whose create request got no answer needs its user: it may run (and bill) at ``label``."""
    return (f"MASUKA sent this run to {label} but never heard back, so it may have been accepted (and charged): "
            f"check your {label} dashboard")
