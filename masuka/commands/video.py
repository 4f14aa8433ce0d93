"""``python -m masuka video``: one video from a remote provider or the local model, waited for and downloaded."""

from __future__ import annotations

import argparse
import time

from masuka.cli import emit, open_studio, progress_line
from masuka.errors import interrupted_with
from masuka.video.availability import offered_providers

#: how long Ctrl-C waits for a local job's thread to leave the pipeline (it stops between steps) before exiting
STOP_WAIT_S = 120.0


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("video", parents=[common], help="generate a video (remote provider or local model)")
    offered = offered_providers()  # as the Video tab offers them: no local model on a ZeroGPU Space
    parser.add_argument("--provider", required=True, choices=list(offered),
                        help="; ".join(f"{key}: {entry['name']}" for key, entry in offered.items()))
    parser.add_argument("--model", required=True, help="a model of the provider (assets/video_models.json lists "
                        "them); for local also a diffusers repo id or folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seconds", type=int,
                        help="length; beyond one clip, clips are chained or extended (up to 60 s)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--size", help="WxH such as 1280x720")
    shape.add_argument("--aspect", help="aspect ratio such as 16:9 (the model's first size with it)")
    parser.add_argument("--image", help="first frame (image-to-video)")
    parser.add_argument("--last-frame", help="last frame (Veo 3.1; needs --image)")
    parser.add_argument("--reference", action="append", default=[], metavar="IMAGE",
                        help="reference image keeping a subject or style (Veo 3.1, up to 3; repeatable)")
    parser.add_argument("--source-video", help="video-to-video: the MP4 to restyle or edit (Runway aleph2)")
    parser.add_argument("--audio", action=argparse.BooleanOptionalAction, default=None,
                        help="sound on or off where the model offers the choice (fal Veo 3 and 3.1, local LTX-2)")
    parser.add_argument("--fallback", action="append", default=[], metavar="PROVIDER[:MODEL]",
                        help="provider to use when the first is unhealthy or unreachable; repeatable, in order")
    parser.add_argument("--steps", type=int, help="local model: denoising steps")
    parser.add_argument("--fps", type=int, help="local model: frames per second")
    parser.add_argument("--seed", type=int, help="local model: seed, 0-4294967295 (default or -1: random)")
    parser.add_argument("--estimate", action="store_true", help="only check the request and show its price")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.video.jobs import estimate, quote, start_video
    from masuka.video.request import VideoRequest

    request = VideoRequest(provider=args.provider, model=args.model, prompt=args.prompt, seconds=args.seconds,
                           size=args.size, aspect=args.aspect, image=args.image, negative_prompt=args.negative_prompt,
                           fallback=args.fallback, steps=args.steps, fps=args.fps, seed=args.seed,
                           last_frame=args.last_frame, references=args.reference, source_video=args.source_video,
                           audio=args.audio)
    plan = estimate(request)
    studio = open_studio(args)  # provider health is kept in the data dir
    priced = quote(studio, plan)  # as the Video tab's cost line gives it
    target = plan.primary
    clips = " + ".join(f"{s} s" for s in target.segments)
    summary = "\n".join([f"{target.provider} {target.model}, {plan.size}, {clips}: estimated ${target.cost_usd:.2f}",
                         *priced.fallbacks, *(f"warning: {warning}" for warning in priced.warnings)])
    if args.estimate:
        emit(args, priced.to_json(), summary)
        return 0
    progress_line(args, summary)
    job_id = start_video(studio, request)
    return report_job(args, studio, job_id)


def report_job(args: argparse.Namespace, studio, job_id: int) -> int:
    """Wait for a video job with progress lines on stderr; print its result; exit 2 unless it completed. Ctrl-C
    prints the job as it was left (a remote one ``running``, with a note saying whether it runs at its provider or
    its create request was on its way; a local one ``cancelled``) and ends the command as an interrupt (exit code
    130)."""
    try:
        result = wait_job(args, studio, job_id)
    except JobLeft as left:
        emit(args, {**left.result, "note": left.note}, job_line(left.result))
        raise left.interrupt from None
    emit(args, result, job_line(result))
    return 0 if result["status"] == "completed" else 2


class JobLeft(KeyboardInterrupt):
    """Ctrl-C or a signal (``interrupt``) ended the wait for a video job (:func:`wait_job`): ``result`` is the job
    as it was left, as ``--json`` prints it, and ``note`` says what became of it. A :class:`KeyboardInterrupt`
    still; the command ends as ``interrupt`` does."""

    def __init__(self, result: dict, note: str, interrupt: KeyboardInterrupt):
        super().__init__(note)
        self.result, self.note, self.interrupt = result, note, interrupt


def job_line(result: dict) -> str:
    """A finished video job for people: its file, or why there is none."""
    return result["video"] or f"job {result['job']}: {result['status']}"


def wait_job(args: argparse.Namespace, studio, job_id: int) -> dict:
    """Wait for a video job with progress lines on stderr (and an ``error:`` line unless it completed); its result
    as ``--json`` prints it. Ctrl-C leaves the job (:func:`~masuka.video.jobs.leave_video`) and raises
    :class:`JobLeft`."""
    from masuka import jobs
    from masuka.jobs import JobRow
    from masuka.video.jobs import leave_video, phase, wait_video

    def on_progress(row: JobRow) -> None:
        if row.provider == "local":  # denoising steps of the whole chain
            step = f" step {row.step or 0}/{row.total}" if row.total else ""
        else:  # the clip being made
            step = f" clip {min((row.step or 0) + 1, row.total)}/{row.total}" if (row.total or 0) > 1 else ""
        why = "" if row.finished else row.state.get("note") or row.error  # why a paid job waits, say, until it ends
        note = f" ({why})" if why else ""
        progress_line(args, f"job {job_id}: {phase(row)}{step} {100 * (row.progress or 0):.0f}%{note}")

    try:
        row = wait_video(studio, job_id, on_progress)
    except KeyboardInterrupt as interrupt:
        left = leave_video(studio, job_id, interrupted_with(interrupt))
        progress_line(args, left)
        _let_local_job_stop(studio, job_id)
        raise JobLeft(job_result(studio, jobs.get(studio.store, job_id)), left, interrupt) from None
    if row.status != "completed":
        progress_line(args, f"error: job {job_id} {row.status}: {row.error}")
    return job_result(studio, row)


def job_result(studio, row) -> dict:
    """A video job as ``--json`` prints it: its row's status (still ``running`` for a remote job Ctrl-C left at its
    provider, or whose create request was on its way: :func:`~masuka.video.jobs.leave_video`'s note says which), its
    video's absolute path (None until there is one), where it runs, its cost and error."""
    from masuka.video.jobs import billed_cost

    video = row.result.get("video")
    return {"job": row.id, "status": row.status, "video": str(studio.config.absolute(video)) if video else None,
            "provider_job_id": row.external_id, "provider": row.provider, "model": row.model,
            "cost_usd": billed_cost(row), "error": row.error}


def _let_local_job_stop(studio, job_id: int) -> None:
    """Wait (up to :data:`STOP_WAIT_S`) until this process's runner no longer runs a local job, cancelled by
    :func:`~masuka.video.jobs.leave_video`: its thread stops at its next step, and leaving it inside the pipeline as
    the process exits aborts the process. A remote job is left running (its polling thread just ends with us)."""
    from masuka import jobs

    if jobs.get(studio.store, job_id).provider != "local":
        return
    deadline = time.monotonic() + STOP_WAIT_S
    while studio.runner().runs(job_id) and time.monotonic() < deadline:
        time.sleep(0.1)
