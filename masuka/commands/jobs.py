"""``python -m masuka jobs``: list background jobs; ``jobs resume [ID]`` finishes unfinished video jobs (or one)
headless; ``jobs cancel ID`` stops a video job as the Video tab's Cancel does."""

from __future__ import annotations

import argparse

from masuka import jobs
from masuka.cli import at_least, emit, open_studio, progress_line
from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER

KINDS = ("video", "train", "caption", "download")
ALIASES = {"training": "train"}
COLUMNS = ("id", "kind", "status", "progress", "provider", "model", "cost_usd", "title", "error")
RESULT_FILES = ("video", "lora")  # the files a job's result names, stored relative to the data dir


def register(sub, common: argparse.ArgumentParser) -> None:
    """``jobs [list]``, ``jobs resume [ID]`` and ``jobs cancel ID``, each an action of its own so that options may
    come anywhere (``jobs cancel --json 6``)."""
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--kind", choices=[*KINDS, *ALIASES], metavar="KIND", default=argparse.SUPPRESS,
                         help="only jobs of this kind: " + ", ".join(KINDS) + " (training = train)")
    listing.add_argument("--limit", type=at_least(1), default=argparse.SUPPRESS, help="at most this many (default 50)")
    parser = sub.add_parser("jobs", parents=[common, listing], help="background jobs (videos, training, "
                                                                    "captions, downloads)")
    parser.set_defaults(handler=run_list, kind=None, limit=50)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", parents=[common, listing], help="list jobs (the default)")
    resuming = actions.add_parser("resume", parents=[common], help="finish every unfinished video job, or one")
    resuming.add_argument("job", nargs="?", type=at_least(1), metavar="ID", help="the video job to resume")
    resuming.set_defaults(handler=resume)
    cancelling = actions.add_parser("cancel", parents=[common], help="stop a video job as the Video tab's Cancel "
                                                                     "does")
    cancelling.add_argument("job", nargs="?", type=at_least(1), metavar="ID", help="the video job to cancel")
    cancelling.set_defaults(handler=cancel)


def run_list(args: argparse.Namespace) -> int:
    from masuka.video.jobs import KIND, billed_cost

    studio = open_studio(args)
    kind = ALIASES.get(args.kind, args.kind)
    where, values = ("kind = ?", [kind]) if kind else (None, [])
    rows = studio.store.find("jobs", where, values, order_by="id desc", limit=args.limit)
    listed = [{column: row[column] for column in COLUMNS} | {"external_id": row["external_id"],
              "created_at": row["created_at"], "result": absolute_files(studio, row["result"])}
              | ({"cost_usd": billed_cost(jobs.JobRow.from_row(row))} if row["kind"] == KIND else {}) for row in rows]
    lines = [f"{r['id']:>5} {r['kind']:<9} {r['status']:<12} {100 * _done(r):>4.0f}% "
             f"{r['provider'] or '':<7} {r['model'] or '':<28} {(r['title'] or '')[:40]}"
             + (f"  [{r['error'][:80]}]" if r["error"] else "") for r in listed]
    emit(args, {"jobs": listed}, "\n".join(lines) or "no jobs")
    return 0


def _done(row: dict) -> float:
    """How far a job got, as the list shows it: all of it once completed (a caption pass with nothing to caption
    recorded no progress)."""
    return 1.0 if row["status"] == "completed" else row["progress"] or 0.0


def absolute_files(studio, result: dict | None) -> dict | None:
    """A job's result with the files it names as absolute paths, as ``video --json`` and ``train --json`` give them."""
    return result and {key: str(studio.config.absolute(value)) if key in RESULT_FILES and value else value
                       for key, value in result.items()}


def resume(args: argparse.Namespace) -> int:
    """Finish the unfinished video jobs (or one); ``--json`` prints ``{"jobs": [...]}``, each as ``video --json``
    prints one (an empty list when none was left to finish), with the ids it marked ``interrupted`` and left
    ``queued`` (local ones waiting for the GPU, which the app runs). Exit 2 unless every resumed one completed, none
    was marked interrupted and a job named was resumed. Ctrl-C prints the same list with every resumed job as it
    stands then (an unfinished one with a ``note`` saying what becomes of it) and exits 130."""
    from masuka.commands.video import JobLeft, job_line, wait_job
    from masuka.video.jobs import resume_video_jobs

    studio = open_studio(args)
    if args.job is not None and not studio.store.count("jobs", "id = ? and kind = 'video'", [args.job]):
        raise NotFound(f"There is no video job {args.job}.")
    adopted = resume_video_jobs(studio, args.job)
    progress_line(args, f"resuming {len(adopted.resumed)} video job(s)"
                  + (f": {adopted.resumed}" if adopted.resumed else ""))
    for job_id in adopted.interrupted:
        progress_line(args, f"job {job_id} interrupted: {jobs.get(studio.store, job_id).error}")
    for job_id in adopted.queued:
        progress_line(args, f"job {job_id} left queued: a local video waiting for the GPU runs in the app (at once "
                      "when it is up, else when it starts)")
    if args.job is not None and args.job not in adopted.resumed + adopted.interrupted + adopted.queued:
        row = jobs.get(studio.store, args.job)
        why = f"it is already {row.status}" if row.finished else "another process is running it"
        progress_line(args, f"job {args.job} not resumed: {why}")
    results: list[dict] = []

    def report() -> None:
        emit(args, {"jobs": results, "interrupted": adopted.interrupted, "queued": adopted.queued},
             "\n".join(map(job_line, results)) or None)

    try:
        for job_id in adopted.resumed:
            results.append(wait_job(args, studio, job_id))
    except JobLeft as left:  # Ctrl-C: the jobs waited for so far, the one left and every other, then exit 130
        results.append({**left.result, "note": left.note})
        results.extend(_left_behind(args, studio, adopted.resumed, {result["job"] for result in results}))
        report()
        raise left.interrupt from None
    report()
    named_resumed = args.job is None or args.job in adopted.resumed
    done = named_resumed and not adopted.interrupted and all(r["status"] == "completed" for r in results)
    return 0 if done else 2


def _left_behind(args: argparse.Namespace, studio, resumed: list[int], listed: set[int]) -> list[dict]:
    """The resumed jobs not waited for yet when Ctrl-C came, as they stand now (their polling went on meanwhile in
    this process: one may have completed and been downloaded), each as ``video --json`` prints one; an unfinished one
    with the note of what becomes of it (:func:`~masuka.video.jobs.leave_video`), also on stderr."""
    from masuka.commands.video import job_result
    from masuka.video.jobs import leave_video

    left = []
    for job_id in resumed:
        if job_id in listed:
            continue
        note = leave_video(studio, job_id)
        row = jobs.get(studio.store, job_id)  # read after the note: one that ended meanwhile is shown as it ended
        if row.finished:
            left.append(job_result(studio, row))
        else:
            progress_line(args, note)
            left.append({**job_result(studio, row), "note": note})
    return left


def cancel(args: argparse.Namespace) -> int:
    from masuka.video.jobs import cancel_video

    if args.job is None:
        raise InvalidInput("`jobs cancel` takes the job's number (see `jobs --kind video`)")
    studio = open_studio(args)
    row = cancel_video(studio, args.job, LOCAL_USER, admin=True)
    emit(args, {"job": row.id, "status": row.status}, f"job {row.id}: cancel requested ({row.status})")
    return 0
