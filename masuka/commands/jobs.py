"""``python -m masuka jobs``: list background jobs; ``jobs resume [ID]`` finishes unfinished video jobs (or one)
headless; ``jobs cancel ID`` stops a video job as the Video tab's Cancel does."""

from __future__ import annotations

import argparse

from masuka.cli import at_least, emit, open_studio, progress_line
from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER

KINDS = ("video", "train", "caption", "download")
ALIASES = {"training": "train"}
COLUMNS = ("id", "kind", "status", "progress", "provider", "model", "cost_usd", "title", "error")


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("jobs", parents=[common], help="list jobs, resume unfinished video jobs, cancel one")
    parser.add_argument("action", nargs="?", choices=["list", "resume", "cancel"], default="list",
                        help="list (default), resume [ID] (every unfinished video job, or one) or cancel ID")
    parser.add_argument("job", nargs="?", type=at_least(1), metavar="ID", help="the video job to resume or cancel")
    parser.add_argument("--kind", choices=[*KINDS, *ALIASES], metavar="KIND",
                        help="only jobs of this kind: " + ", ".join(KINDS) + " (training = train)")
    parser.add_argument("--limit", type=at_least(1), default=50, help="at most this many (default 50)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "cancel" and args.job is None:
        raise InvalidInput("`jobs cancel` takes the job's number (see `jobs --kind video`)")
    if args.action == "list" and args.job is not None:
        raise InvalidInput("`jobs list` takes no job number: `jobs resume ID` or `jobs cancel ID` act on one.")
    studio = open_studio(args)
    if args.action == "resume":
        return resume(args, studio)
    if args.action == "cancel":
        return cancel(args, studio)
    kind = ALIASES.get(args.kind, args.kind)
    where, values = ("kind = ?", [kind]) if kind else (None, [])
    rows = studio.store.find("jobs", where, values, order_by="id desc", limit=args.limit)
    listed = [{column: row[column] for column in COLUMNS} | {"external_id": row["external_id"],
              "created_at": row["created_at"], "result": row["result"]} for row in rows]
    lines = [f"{r['id']:>5} {r['kind']:<9} {r['status']:<12} {100 * (r['progress'] or 0):>4.0f}% "
             f"{r['provider'] or '':<7} {r['model'] or '':<28} {(r['title'] or '')[:40]}"
             + (f"  [{r['error'][:80]}]" if r["error"] else "") for r in listed]
    emit(args, {"jobs": listed}, "\n".join(lines) or "no jobs")
    return 0


def resume(args: argparse.Namespace, studio) -> int:
    from masuka.commands.video import report_job
    from masuka.video.jobs import resume_video_jobs

    if args.job is not None and not studio.store.count("jobs", "id = ? and kind = 'video'", [args.job]):
        raise NotFound(f"There is no video job {args.job}.")
    resumed = resume_video_jobs(studio, args.job)
    progress_line(args, f"resuming {len(resumed)} video job(s)" + (f": {resumed}" if resumed else ""))
    codes = [report_job(args, studio, job_id) for job_id in resumed]
    return max(codes, default=0)


def cancel(args: argparse.Namespace, studio) -> int:
    from masuka.video.jobs import cancel_video

    row = cancel_video(studio, args.job, LOCAL_USER, admin=True)
    emit(args, {"job": row.id, "status": row.status}, f"job {row.id}: cancel requested ({row.status})")
    return 0
