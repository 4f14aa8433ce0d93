"""Video jobs that survive restarts: one ``jobs`` row (kind ``video``) per video, written before and right
after every create request, polled in the background, downloaded into the data dir at once and recorded.

The row's ``state`` keeps, per clip of the chain, the provider's job reference and the downloaded file, so
any process can pick the job up where another stopped (:func:`resume_video_jobs`). A clip whose create
request was sent but whose answer never arrived is never re-sent: the job is marked ``interrupted`` with a
message asking the user to look at the provider's dashboard. Once the provider has accepted a clip (and will
charge for it) the job never fails for want of a key, a refused key, an unreachable provider, a database another
process keeps busy or a full disk: it waits, saying so, and tries again (with whatever key is set by then).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from masuka import jobs
from masuka.access import INPUTS_FOLDER, input_copy_name, usable_model
from masuka.errors import Cancelled, InvalidInput, MasukaError, NotFound, ProviderError, as_disk_full
from masuka.jobs import JobContext
from masuka.remote.health import HealthTracker
from masuka.remote.http import (
    KEY_REFUSED,
    MaybeSubmitted,
    ModelUnavailable,
    ProviderUnavailable,
    RateLimited,
    key_fix,
)
from masuka.remote.timing import KEPT, RemoteSettings
from masuka.store import UNFINISHED, busy, now, owner_clause, row_id
from masuka.studio import Studio
from masuka.video.availability import MARK_TTL, mark_unavailable, unavailable
from masuka.video.catalog import LOCAL, model_entry, parse_size, provider_entry, route, video_catalog
from masuka.video.media import concat, last_frame
from masuka.video.providers import open_provider, provider_class
from masuka.video.providers.base import Clip, Provider
from masuka.video.request import (
    INPUT_FILES,
    VIDEO_INPUTS,
    Target,
    VideoPlan,
    VideoRequest,
    lifecycle_warnings,
    made_as,
    plan_video,
)

log = logging.getLogger(__name__)
KIND = "video"
#: how the phase of a local job waiting for the GPU begins (:meth:`GPURunner.hold`'s wait message)
GPU_WAIT = "waiting for the GPU"



def estimate(request: VideoRequest) -> VideoPlan:
    """Validate and price a request without sending anything (the form's cost line, ``--dry-run``)."""
    return plan_video(request)


@dataclass
class Quote:
    """What a plan costs as the Video tab's cost line and ``video --estimate`` both say it: a line per fallback
    (``Fallback gemini veo-3.1-generate-001: $6.40 for 8 s``) and the warnings (a model retiring or retired, a
    provider marked unhealthy, which a new job skips for the next choice)."""

    plan: VideoPlan
    fallbacks: list[str]
    warnings: list[str]
    unhealthy: dict[str, str]  # provider -> why it is skipped now

    def to_json(self) -> dict:
        """The quote as ``video --estimate --json`` prints it."""
        target = self.plan.primary
        return {"provider": target.provider, "model": target.model, "size": self.plan.size,
                "segments": target.segments, "cost_usd": target.cost_usd, "warnings": self.warnings,
                "fallbacks": [{"provider": t.provider, "model": t.model, "segments": t.segments,
                               "cost_usd": t.cost_usd} for t in self.plan.targets[1:]],
                "unhealthy": self.unhealthy}


def quote(studio: Studio, plan: VideoPlan) -> Quote:
    """The price of every target of ``plan`` and its warnings: among them the target a new job would go to when
    it is not the primary, or that none can take it and why (as :func:`start_video` chooses)."""
    health = HealthTracker(studio.store, RemoteSettings.from_env())
    unhealthy = {t.provider: why for t in plan.targets
                 if t.provider != LOCAL and (why := health.unhealthy(t.provider))}
    warnings = lifecycle_warnings(plan)
    skipped: list[str] = []
    if plan.primary.provider != LOCAL:
        taker, skipped = _target_choice(studio, plan, 0)
        if taker is None:
            warnings.append("No provider can take a new job now, so it would be refused: " + "; ".join(skipped))
        elif taker:
            target = plan.targets[taker]
            warnings.append("; ".join(skipped).rstrip(".") + f". A new job goes to fallback {target.provider} "
                                                              f"{target.model} (${target.cost_usd:.2f}).")
    warnings += [why for why in unhealthy.values() if why not in skipped]
    fallbacks = [f"Fallback {t.provider} {t.model}: ${t.cost_usd:.2f} {made_as(t)}" for t in plan.targets[1:]]
    return Quote(plan, fallbacks, warnings, unhealthy)


def start_video(studio: Studio, request: VideoRequest) -> int:
    """Validate, write the job row, copy the input files (first and last frame, references, source video) into
    the data dir and start the job; returns its id.

    A remote request that no provider can take (no key, every choice marked unhealthy or its model marked
    unavailable for that key) is refused here, before any job exists. A local model folder must be one the owner
    may read (the same refusal whether another user's folder or none is there)."""
    if request.provider == "local":
        usable_model(studio, request.owner, request.model)
    plan = plan_video(request)
    # the row names the target a remote job goes to (a fallback when the primary is unhealthy) from the start
    target = plan.targets[_choose_target(studio, plan, 0) if request.provider != LOCAL else 0]
    studio.runner().check_share(request.owner)  # refused before a row or a copied input is left behind
    job_id = studio.runner().create(KIND, request.owner, title=request.prompt[:80], provider=target.provider,
                                    model=target.model, params=plan.to_params(), progress=0.0, step=0,
                                    total=len(target.segments), cost_usd=target.cost_usd,
                                    state={"phase": "queued", "segments": []})
    inputs = {name: getattr(request, name) for name in INPUT_FILES if getattr(request, name)}
    inputs.update({f"reference-{n}": path for n, path in enumerate(request.references)})
    if inputs:
        copies = {name: _keep_input(studio, job_id, name, source) for name, source in inputs.items()}
        for name in INPUT_FILES:
            setattr(plan.request, name, copies.get(name))
        plan.request.references = [copies[f"reference-{n}"] for n in range(len(request.references))]
        jobs.update(studio.store, job_id, params=plan.to_params())
    _submit(studio, job_id, request.provider)
    return job_id


def _keep_input(studio: Studio, job_id: int, name: str, source: str) -> str:
    """Copy an input file under ``outputs/videos/inputs/`` (named by :func:`input_copy_name`, which tells whose
    it is), a picture as providers are sent it (its :func:`~masuka.image.copies.plain_copy`); returns the stored
    (relative) path."""
    from masuka.image.copies import plain_copy

    suffix, data = (Path(source).suffix, None) if name in VIDEO_INPUTS else plain_copy(Path(source))
    copy = studio.config.outputs_dir.joinpath(*INPUTS_FOLDER, input_copy_name(job_id, name, suffix))
    copy.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        shutil.copyfile(source, copy)
    else:
        copy.write_bytes(data)
    return studio.config.relative(copy)


def _submit(studio: Studio, job_id: int, provider: str) -> None:
    lane = "gpu" if provider == "local" else None
    studio.runner().submit(job_id, lambda ctx: run_video_job(studio, ctx), lane=lane)


@dataclass
class Adopted:
    """What :func:`resume_video_jobs` did, by job id."""

    resumed: list[int] = field(default_factory=list)  # remote jobs polled and downloaded again
    interrupted: list[int] = field(default_factory=list)  # local ones that had the GPU; half-sent remote ones
    queued: list[int] = field(default_factory=list)  # local ones waiting for the GPU: the app's lane runs them


def resume_video_jobs(studio: Studio, job_id: int | None = None) -> Adopted:
    """Adopt every unfinished video job (or only ``job_id``) no live process is running: remote ones resume polling and
    downloading; local ones that had the GPU (nothing to poll) and half-sent ones are marked ``interrupted``;
    local ones still waiting in the GPU lane, or for the GPU itself before their first step, stay (or are put
    back) queued for the job runner (:meth:`JobRunner.adopt`). The app calls it at start-up and every
    :data:`~masuka.jobs.ADOPT_POLL_S` (:data:`~masuka.jobs.RECOVER`); rows whose holder lives cost one read."""
    adopted = Adopted()
    one, args = ("and id = ?", [job_id]) if job_id is not None else ("", [])
    for row in jobs.find(studio.store, f"kind = ? and status in (?, ?) {one}", [KIND, *UNFINISHED, *args],
                         order_by="id"):
        if _running_somewhere(studio, row):
            continue
        try:
            _adopt(studio, row.id, adopted)
        except MasukaError as error:  # polling cannot start again (the owner's share is full, say): the others go on
            log.warning("video job %s could not be taken up: %s", row.id, error)
            jobs.finish(studio.store, row.id, "interrupted", f"The app could not take this job up again: {error}")
            adopted.interrupted.append(row.id)
    return adopted


def _adopt(studio: Studio, job_id: int, adopted: Adopted) -> None:
    """Take up one unfinished video job no live process runs (see :func:`resume_video_jobs`); what became of it is
    written in the same transaction as the check, so no pass leaves it half taken."""
    with studio.store.transaction():
        row = jobs.get(studio.store, job_id)
        state = row.state
        if row.finished or _running_somewhere(studio, row):
            return
        if row.status == "queued" and row.lane:
            adopted.queued.append(row.id)
            return
        if row.provider == "local" and not row.step and phase(row).startswith(GPU_WAIT):
            # it never had the GPU: queued again in its place in line (a Stop asked for meanwhile still holds), for
            # whichever process's lane claims it first (no pid, no holder: none holds it)
            jobs.update(studio.store, row.id, status="queued", lane="gpu", started_at=None, pid=None, holder=None,
                        state={**state, "phase": "queued", "note": ""})
            adopted.queued.append(row.id)
            return
        if row.provider == "local":
            jobs.finish(studio.store, row.id, "interrupted", "The app stopped while this local video was being "
                        "made; generate it again.")
            adopted.interrupted.append(row.id)
            return
        provider = row.provider or ""  # every video job names its provider
        if _submitting(state):
            _needs_attention(studio, row.id, provider)
            adopted.interrupted.append(row.id)
            return
        jobs.update(studio.store, row.id, **studio.runner().holding())
    log.info("resuming video job %s (%s)", row.id, provider)
    _submit(studio, row.id, provider)
    adopted.resumed.append(row.id)


def cancel_video(studio: Studio, job_id: int, user: str, admin: bool = False) -> jobs.JobRow:
    """Stop a video job: one still waiting for its turn, or that no process runs any more, is cancelled here at
    once (at the provider too, where the API can); the runner of a started one cancels it at the provider and
    stops."""
    with studio.store.transaction():  # a lane claims only queued rows: it cannot take this one meanwhile
        row = video_job(studio, job_id, user, admin)
        if row.finished:
            raise InvalidInput(f"Job {job_id} is already {row.status}.")
        jobs.request_stop(studio.store, job_id)
        if row.status == "queued" and not row.started_at:
            jobs.finish(studio.store, job_id, "cancelled", str(Cancelled(at="before it started")))
            return jobs.get(studio.store, job_id)
    if not _running_somewhere(studio, row):
        _cancel_at_provider(studio, row)
        jobs.finish(studio.store, job_id, "cancelled", str(Cancelled()))
    return jobs.get(studio.store, job_id)


def _running_somewhere(studio: Studio, row: jobs.JobRow) -> bool:
    """Whether this studio's runner (its lane claimed the job) or the row's holder (a studio open in this process,
    another live process: :func:`~masuka.store.holder_alive`) runs the job."""
    return studio.runner().alive(row)


def leave_video(studio: Studio, job_id: int, by: str = "Ctrl-C") -> str:
    """What Ctrl-C (or the signal ``by`` names) in the CLI does to the job it waits for, said in a line for people:
    a remote one keeps running at the provider (``jobs resume`` picks it up), unless its create request is still on
    its way (it may have been accepted and charged, and ``jobs resume`` marks it ``interrupted`` as
    :func:`resume_video_jobs` does) or was not sent yet (``jobs resume`` sends it); a local one is made by this
    process, so it is cancelled. The row is left as it is but for that cancel."""
    row = jobs.get(studio.store, job_id)
    resume = "`python -m masuka jobs resume`"
    if row.finished:  # it ended as the interrupt came
        return f"job {job_id} already {row.status}"
    if row.provider != LOCAL:
        name = provider_entry(row.provider or "")["name"]
        if _submitting(row.state):
            return (f"job {job_id} was being sent to {name} when stopped, so it may have been accepted (and charged) "
                    f"without MASUKA learning of it: look at your {name} dashboard; {resume} marks it interrupted "
                    "(MASUKA does not send it again by itself)")
        if not row.external_id:
            return f"job {job_id} was not sent to {name} yet; {resume} sends it"
        return f"job {job_id} keeps running at the provider; {resume} picks it up"
    jobs.request_stop(studio.store, job_id)
    jobs.finish(studio.store, job_id, "cancelled", str(Cancelled(by=by)))
    return f"job {job_id} cancelled: a local video is made by this process and stops with it"


def _submitting(state: dict) -> bool:
    """Whether a create request of the job was sent (or is on its way) and its answer is not in the row: a job
    :func:`resume_video_jobs` marks ``interrupted`` rather than send the clip twice."""
    return any(segment.get("submitting") for segment in state.get("segments", []))


def video_job(studio: Studio, job_id: int, user: str, admin: bool = False) -> jobs.JobRow:
    where, args = owner_clause(user, admin)
    rows = jobs.find(studio.store, f"id = ? and kind = ? and {where}", [row_id(job_id) or -1, KIND, *args], limit=1)
    if not rows:
        raise NotFound(f"There is no video job {job_id}.")
    return rows[0]


def video_jobs(studio: Studio, user: str, admin: bool = False, limit: int = 50) -> list[dict]:
    """Every unfinished job, then the newest finished ones up to ``limit`` jobs in all, newest first; finished
    ones carry ``video`` (absolute path of the MP4, when it is there), each its :func:`billed_cost`."""
    where, args = owner_clause(user, admin)
    unfinished = jobs.find(studio.store, f"kind = ? and status in (?, ?) and {where}", [KIND, *UNFINISHED, *args],
                           order_by="id desc")
    finished = jobs.find(studio.store, f"kind = ? and status not in (?, ?) and {where}",
                         [KIND, *UNFINISHED, *args], order_by="id desc", limit=max(limit - len(unfinished), 0))
    listed = []
    for row in sorted([*unfinished, *finished], key=lambda row: row.id, reverse=True):
        stored = row.result.get("video")
        path = studio.config.absolute(stored) if stored else None
        listed.append({**row.as_dict(), "video": path if path is not None and path.is_file() else None,
                       "phase": phase(row), "route": job_route(row), "cost_usd": billed_cost(row)})
    return listed


def billed_cost(row: jobs.JobRow) -> float | None:
    """What a video job costs as the Video tab, ``jobs`` and ``video --json`` show it: the price estimated at the
    start, ``None`` for a remote job that ended with no provider having taken a clip of it (no provider job id, no
    create request that may have reached one: nothing to pay)."""
    unpaid = row.finished and row.provider != LOCAL and not row.external_id and not _maybe_accepted(row.state)
    return None if unpaid else row.cost_usd


def job_route(row: jobs.JobRow) -> str:
    """The model a job's lines name: where its first clip is sent (fal's image-to-video route for a video from a
    first frame, not the text-to-video model the catalog lists)."""
    entry = video_catalog().get(row.provider or "", {}).get("models", {}).get(row.model, {})
    return route(entry, row.model or "", bool(row.params.get("request", {}).get("image")))


def phase(row: jobs.JobRow) -> str:
    """Where a job stands: its phase while unfinished (``submitting``, ``downloading``, ...), else its status."""
    return row.state.get("phase", row.status) if not row.finished else row.status


def wait_video(studio: Studio, job_id: int, on_progress=None, timeout: float | None = None) -> jobs.JobRow:
    """Block until the job finishes (CLI); ``on_progress(row)`` is called when its progress or phase moves. A job
    this process started and no longer runs, unfinished (:meth:`~masuka.jobs.JobRunner.dropped`), is a
    :class:`MasukaError` saying how to take it up again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        row = jobs.get(studio.store, job_id)
        if studio.runner().dropped(row):  # read again: its thread may have recorded the end meanwhile
            row = jobs.get(studio.store, job_id)
        if studio.runner().dropped(row):
            raise MasukaError(f"Job {job_id} stopped in this process before it finished (its log may say why); "
                              "`python -m masuka jobs resume` takes it up again.")
        mark = (row.status, phase(row), round(row.progress or 0, 2), row.step)
        if on_progress and mark != seen:
            on_progress(row)
        seen = mark
        if row.finished or (deadline is not None and time.monotonic() > deadline):
            return row
        time.sleep(jobs.STOP_CHECK_S)


# -- the job itself ---------------------------------------------------------------------------------------
def run_video_job(studio: Studio, ctx: JobContext) -> None:
    """The body of a video job: every clip of the chain submitted once, polled, downloaded; then joined."""
    try:
        _make_video(studio, ctx)
    except BaseException:
        _drop_clip_dir(studio, ctx.job_id)  # before the row says the job ended
        raise


def _make_video(studio: Studio, ctx: JobContext) -> None:
    job_id = ctx.job_id
    row = ctx.row()
    plan = VideoPlan.from_params(row.params)
    state = dict(row.state)
    if plan.request.provider == "local":
        from masuka.video.local import run_local

        _save(studio, job_id, state, phase="running")
        folder = clip_dir(studio, job_id)
        clips: list[Path] = []
        for index in range(len(plan.primary.segments)):  # each next clip starts from the last frame
            first = last_frame(clips[-1], folder / f"frame-{index:02d}.png") if clips else _image(studio, plan)
            clips.append(run_local(studio, ctx, plan, first, folder / f"clip-{index:02d}.mp4", index,
                                   lambda name: _save(studio, job_id, state, phase=name)))
        _finish(studio, job_id, plan, plan.primary, clips, state)
        return
    if state.get("target") is None:
        state["target"] = _choose_target(studio, plan, 0)
    while True:
        target = plan.targets[state["target"]]
        try:
            jobs.update(studio.store, job_id, provider=target.provider, model=target.model,
                        cost_usd=target.cost_usd, total=len(target.segments))
            provider = open_provider(studio, target.provider, row.owner)
            provider.caller.models = _asked_models(target)
        except InvalidInput as error:  # no key (any more)
            _wait_for_provider(studio, ctx, state, error)
            continue
        except Exception as error:  # a busy database, a full disk: waited out once a provider took the job
            if not _wait_out(studio, ctx, state, error):
                raise
            continue
        try:
            clips = [_run_clip(studio, ctx, plan, target, provider, state, index)
                     for index in range(len(target.segments))]
            _finish(studio, job_id, plan, target, clips, state)
            return
        except _Attention:
            _needs_attention(studio, job_id, target.provider)
            return
        except ModelUnavailable as error:
            # the provider says the model is gone or not for this key: remember it, so no job asks again
            reason = _gone_message(target, str(error))
            mark_unavailable(studio.store, target.provider, target.model, provider.key, reason)
            _next_target(studio, plan, state, _gone_reason(studio, reason, row.owner, target.provider))
        except ProviderUnavailable as error:
            if _accepted(state):
                _wait_for_provider(studio, ctx, state, error)
            else:  # the create request never arrived or was refused with 429: the user's next provider may take it
                _next_target(studio, plan, state, error)
        except ProviderError as error:
            if error.status not in KEY_REFUSED:
                raise
            _wait_for_provider(studio, ctx, state, error)  # a key changed since the provider accepted the job
        except Exception as error:  # as above; any other error fails the job
            if not _wait_out(studio, ctx, state, error):
                raise
        finally:
            provider.close()


class _Attention(Exception):
    """A create request may have reached the provider without us learning its id."""


def _accepted(state: dict) -> bool:
    """Whether a provider accepted (and will charge for) a clip of the job."""
    return any("ref" in segment for segment in state.get("segments", []))


def _maybe_accepted(state: dict) -> bool:
    """A create request that may have reached the provider without us learning its id, or :func:`_accepted`."""
    return _accepted(state) or _submitting(state)


def _wait_for_provider(studio: Studio, ctx: JobContext, state: dict, error: MasukaError) -> None:
    """A job a provider accepted, whose provider cannot be asked now (no key, a key it refuses, unreachable): say
    so in the row and wait, then the caller tries again with whatever key is set by then. Any other job fails
    with ``error``."""
    if not _accepted(state):
        raise error
    _save(studio, ctx.job_id, state, phase="waiting", error=f"{error} {KEPT}")
    ctx.pause(RemoteSettings.from_env().retry_wait_s(),
              lambda: ctx.check_stop(before=lambda: _cancel_at_provider(studio, ctx.row())))


def _wait_out(studio: Studio, ctx: JobContext, state: dict, error: BaseException) -> bool:
    """A job a provider accepted that met a database kept busy by another process, or a full disk: say so in the
    row when it can be written, wait, and return True for the caller to try again (a clip already downloaded is
    kept). False for any other job or error, which fails it."""
    if not _accepted(state):
        return False
    if busy(error):
        why = f"The database is busy: another process holds it. {KEPT}"
    elif as_disk_full(error):
        why = f"The disk is full: free some disk space. {KEPT}"
    else:
        return False
    log.warning("video job %s waits: %s (%s)", ctx.job_id, why, error)
    try:
        _save(studio, ctx.job_id, state, phase="waiting", error=why)
    except sqlite3.OperationalError as unwritten:  # the same busy database or full disk: the log says it
        log.warning("video job %s: its row cannot be written now (%s)", ctx.job_id, unwritten)
    ctx.pause(RemoteSettings.from_env().retry_wait_s(),
              lambda: ctx.check_stop(before=lambda: _cancel_at_provider(studio, ctx.row())))
    return True


def _next_target(studio: Studio, plan: VideoPlan, state: dict, error: ProviderError | str) -> None:
    """Move on to the user's next fallback when nothing was accepted yet; else fail with ``error``."""
    if _accepted(state) or state["target"] + 1 >= len(plan.targets):
        if isinstance(error, RateLimited) and len(plan.targets) == 1:
            raise RateLimited(f"{error} Or add a fallback provider to the job (Fallback providers in the Video "
                              "form, --fallback in the CLI): it takes the job when this one refuses it.", error.status)
        raise error if isinstance(error, ProviderError) else ProviderError(error)
    log.warning("%s cannot take the job (%s); falling back", plan.targets[state["target"]].provider, error)
    state.update(target=_choose_target(studio, plan, state["target"] + 1), segments=[])


def _asked_models(target: Target) -> tuple[str, ...]:
    """The names a create request of ``target`` asks for (the model, and its image-to-video route where it has
    one): a 404 that names one of them is the provider's "no such model"."""
    entry = model_entry(target.provider, target.model)
    return tuple(dict.fromkeys(name for name in (target.model, entry.get("image_model")) if name))


def _gone_message(target: Target, answer: str) -> str:
    name = provider_class(target.provider).service.label
    hours = round(MARK_TTL.total_seconds() / 3600)
    return (f"{target.model} is not available to this {name} key (the provider answered {answer}). For the next "
            f"{hours} hours MASUKA does not send it again with this key: choose another model or provider.")


def _gone_reason(studio: Studio, stored: str, owner: str, provider: str) -> str:
    """A model refused to a key as gone, as ``owner`` is told it: the stored reason (:func:`_gone_message`, shown to
    every user of the key) and how to have it asked for again, which only an admin can do (as :func:`key_fix`)."""
    how = (f"Saving or testing the key in Settings (or `python -m masuka keys test {provider}`) asks again at once."
           if studio.config.is_admin(owner) else "An admin saving or testing the key in Settings asks again at once.")
    return f"{stored} {how}"


def _choose_target(studio: Studio, plan: VideoPlan, start: int) -> int:
    """The target a job goes to from ``start`` on (:func:`_target_choice`); a ProviderError when none can take it."""
    index, reasons = _target_choice(studio, plan, start)
    if index is None:
        raise ProviderError("No provider can take this job: " + "; ".join(reasons))
    return index


def _target_choice(studio: Studio, plan: VideoPlan, start: int) -> tuple[int | None, list[str]]:
    """The first target from ``start`` on (the primary, then the user's fallbacks) that has a key, is not
    marked unhealthy and whose model the provider has not refused for that key (None: none is), and why each
    target before it cannot take a job."""
    health = HealthTracker(studio.store, RemoteSettings.from_env())
    reasons = []
    for index, target in enumerate(plan.targets[start:], start):
        cls = provider_class(target.provider)
        key = studio.keys.get(cls.service)
        if not key:
            reasons.append(f"no API key for {target.provider} "
                           f"({key_fix(cls.key_env(), studio.config.is_admin(plan.request.owner))})")
        elif message := health.unhealthy(target.provider):
            reasons.append(message)
        elif gone := unavailable(studio.store, target.provider, target.model, key):
            reasons.append(_gone_reason(studio, gone, plan.request.owner, target.provider))
        else:
            return index, reasons
    return None, reasons


def _run_clip(studio: Studio, ctx: JobContext, plan: VideoPlan, target: Target, provider: Provider, state: dict,
              index: int) -> Path:
    job_id = ctx.job_id
    segments = state.setdefault("segments", [])
    if index == len(segments):
        segments.append({"seconds": target.segments[index]})
    segment = segments[index]
    path = clip_dir(studio, job_id) / f"clip-{index:02d}.mp4"
    if segment.get("file") and studio.config.absolute(segment["file"]).is_file():
        return studio.config.absolute(segment["file"])
    if "ref" not in segment:
        if segment.get("submitting"):
            raise _Attention
        ctx.check_stop()
        folder = clip_dir(studio, job_id)
        extend = segments[index - 1]["output"] if target.extends and index else None
        if index == 0 or extend:
            first = None if extend else _image(studio, plan)
        else:
            first = last_frame(folder / f"clip-{index - 1:02d}.mp4", folder / f"frame-{index:02d}.png")
        request = plan.request
        clip = Clip(model=target.model, prompt=request.prompt, seconds=segment["seconds"], size=plan.size,
                    image=first, extend=extend, negative_prompt=request.negative_prompt,
                    entry=model_entry(target.provider, target.model), last_frame=_stored(studio, request.last_frame),
                    references=[studio.config.absolute(p) for p in request.references],
                    source_video=_stored(studio, request.source_video), audio=request.audio)
        segment["submitting"] = True
        try:
            _save(studio, job_id, state, phase="submitting")  # written BEFORE the request leaves
        except BaseException:
            segment.pop("submitting")  # not written, so nothing was sent: a retry sends the clip
            raise
        try:
            segment["ref"] = provider.submit(clip)
        except MaybeSubmitted:
            raise _Attention from None
        except BaseException:
            segment.pop("submitting")  # refused: nothing was created, so nothing can be lost
            _save(studio, job_id, state, phase="failed")
            raise
        segment.pop("submitting")
        _save(studio, job_id, state, phase="queued", external_id=segment["ref"]["id"])  # and right after
    output = _poll(studio, ctx, provider, segment, index, len(target.segments), state)
    segment["output"] = output  # what an extension of this clip refers to
    _save(studio, job_id, state, phase="downloading")
    try:
        provider.download(output, path)
    except ProviderError:  # a URL that expired meanwhile: ask for a fresh one, once
        fresh = _poll(studio, ctx, provider, segment, index, len(target.segments), state)
        try:
            provider.download(fresh, path)
        except ProviderError as error:
            if isinstance(error, ProviderUnavailable) or error.status in KEY_REFUSED:
                raise  # unreachable or a refused key: the job waits (run_video_job)
            raise ProviderError(f"{error} {_fetch_it_yourself(provider, segment)}", error.status) from error
    segment["file"] = studio.config.relative(path)
    _save(studio, job_id, state, phase="downloaded", step=index + 1)
    return path


def _poll(studio: Studio, ctx: JobContext, provider: Provider, segment: dict, index: int, count: int,
          state: dict) -> str:
    """Poll until the provider's job completes; returns the output reference (an unreachable provider or a
    refused key is the caller's to wait for)."""
    while True:
        _check_stop(ctx, provider, segment["ref"])
        status = provider.poll(segment["ref"])
        fraction = (index + (status.progress or 0.0)) / count
        _save(studio, ctx.job_id, state, phase=status.state, note=status.note, progress=round(fraction, 4),
              error=None)
        if status.state == "completed":
            if status.output:
                return status.output
            raise ProviderError(f"{provider.display_name()} reported the video done but returned no video "
                                f"({status.error or 'no output in its answer'}).")
        if status.state == "failed":
            raise ProviderError(f"{provider.name} could not make the video: {status.error or 'no reason given'}")
        if status.state == "cancelled":
            raise Cancelled(by=provider.name)
        ctx.pause(status.poll_after or provider.default_poll_s(), lambda: _check_stop(ctx, provider, segment["ref"]))


def _fetch_it_yourself(provider: Provider, segment: dict) -> str:
    """What a user can still do when a made (and billed) video cannot be downloaded: the README's limitation."""
    name = provider.display_name()
    return (f"{name} made this video (and bills it): it may still be fetchable from {name} (its job "
            f"{segment['ref']['id']}, in your {name} dashboard or API) while its URL lives. "
            "MASUKA does not retry this job by itself.")


def _check_stop(ctx: JobContext, provider: Provider, ref: dict) -> None:
    """Stop (cancelling the provider's job first) when the user asked for it."""
    ctx.check_stop(before=lambda: _try_cancel(provider, ref))


def _cancel_at_provider(studio: Studio, row: jobs.JobRow) -> None:
    segments = [s for s in row.state.get("segments", []) if s.get("ref") and not s.get("file")]
    if not segments or row.provider == "local":
        return
    try:
        provider = open_provider(studio, row.provider or "", row.owner)
    except MasukaError:
        return
    try:
        _try_cancel(provider, segments[-1]["ref"])
    finally:
        provider.close()


def _try_cancel(provider: Provider, ref: dict) -> None:
    try:
        provider.cancel(ref)
    except ProviderError as error:
        log.warning("could not cancel %s job at the provider: %s", provider.name, error)


def _finish(studio: Studio, job_id: int, plan: VideoPlan, target: Target, clips: list[Path], state: dict) -> None:
    folder = studio.config.outputs_dir / "videos" / datetime.now(UTC).strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{job_id:06d}.mp4"
    if target.extends:  # each extension came back as the whole video so far
        os.replace(clips[-1], final)
    elif len(clips) > 1:
        _save(studio, job_id, state, phase="joining")
        concat(clips, final)
    else:
        os.replace(clips[0], final)
        if state.get("segments"):
            state["segments"][0]["file"] = studio.config.relative(final)
    _drop_clip_dir(studio, job_id)
    row = jobs.get(studio.store, job_id)
    width, height = parse_size(plan.size)
    refs = [s["ref"]["id"] for s in state.get("segments", []) if s.get("ref")]
    with studio.store.transaction():  # the History entry and the completed row, or neither (a busy database)
        generation = studio.store.insert("generations", {
            "owner": plan.request.owner, "kind": KIND, "status": "completed", "prompt": plan.request.prompt,
            "negative_prompt": plan.request.negative_prompt, "model": target.model, "provider": target.provider,
            "seed": plan.request.seed, "width": width, "height": height, "steps": plan.request.steps,
            "params": {"seconds": sum(target.segments), "size": plan.size, "segments": target.segments,
                       "provider_job_ids": refs, **{name: getattr(plan.request, name) for name in INPUT_FILES
                                                    if getattr(plan.request, name)},
                       **({"references": plan.request.references} if plan.request.references else {}),
                       **({"audio": plan.request.audio} if plan.request.audio is not None else {})},
            "output_path": studio.config.relative(final), "cost_usd": target.cost_usd, "job_id": job_id,
            "started_at": row.started_at, "finished_at": now(), **studio.runner().holding(),
        })
        _save(studio, job_id, state, phase="completed", progress=1.0, error=None,
              result={"video": studio.config.relative(final), "generation_id": generation, "provider_job_ids": refs})


def _save(studio: Studio, job_id: int, state: dict, phase: str, note: str = "", **fields) -> None:
    jobs.progress(studio.store, job_id, state={**state, "phase": phase, "note": note}, **fields)
    state["phase"] = phase


def _needs_attention(studio: Studio, job_id: int, provider: str) -> None:
    name = provider_entry(provider)["name"]
    jobs.finish(studio.store, job_id, "interrupted",
                f"Needs attention: MASUKA sent this job to {name} but never heard back, so it may have been "
                f"accepted (and charged). Look at your {name} dashboard; MASUKA does not send it again by itself.")


def _image(studio: Studio, plan: VideoPlan) -> Path | None:
    return _stored(studio, plan.request.image)


def _stored(studio: Studio, stored: str | None) -> Path | None:
    return studio.config.absolute(stored) if stored else None


def clip_dir(studio: Studio, job_id: int) -> Path:
    """Where a job's clips are made (and a chain's stay, with the frames it continued from, until the job's last
    History entry is deleted); made with its first clip, and gone again when the job ends with no clip in it (a
    one-clip video moved out, a download that failed)."""
    return studio.config.outputs_dir / "videos" / "clips" / f"{job_id:06d}"


def _drop_clip_dir(studio: Studio, job_id: int) -> None:
    """Remove a job's clip folder when no clip is kept in it (a one-clip video moved out, a download that failed)."""
    folder = clip_dir(studio, job_id)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
