"""``python -m masuka queue``: add image jobs to the persistent queue, list and control them, or work it headless."""

from __future__ import annotations

import argparse
from pathlib import Path

from masuka.cli import emit, open_studio, progress_line
from masuka.commands.generate import add_request_arguments, checked_size, flags_request, one_prompt_source
from masuka.commands.upscale import add_upscale_arguments, upscale_request
from masuka.errors import InvalidInput
from masuka.queue.jobs import ACTIONS
from masuka.store import LOCAL_USER

HELP = {"pause": "pause a job (a running one after its current image)", "resume": "queue a paused job again",
        "cancel": "cancel a job (a running one at its next step)", "retry": "queue a failed, cancelled or "
        "interrupted job again (it keeps its finished images)", "up": "move a job one place up",
        "down": "move a job one place down", "top": "move a job to the top of the queue"}
COLUMNS = "{id:>5} {owner:<10} {status:<11} {done:>3}/{total:<3} {model:<24} {title}"


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("queue", parents=[common],
                            help="the generation queue")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="queue image jobs (the flags of generate; --image for "
                                                           "an edit)")
    add_request_arguments(add, prompt_required=False)
    add.add_argument("--image", action="append", default=[], metavar="PATH",
                     help="with an edit model: an image to edit or take from, as `edit --image`; repeatable")
    add.add_argument("--prompts-file", type=Path, metavar="FILE",
                     help="one prompt a line, one job each; {a|b} and __wildcard__ expand")
    add.add_argument("--random", type=int, default=0, metavar="N",
                     help="N random picks of each prompt's {a|b} choices (default: every combination)")
    add.set_defaults(handler=run_add)
    upscale = actions.add_parser("upscale", parents=[common], help="queue an upscale (the flags of upscale)")
    add_upscale_arguments(upscale)
    upscale.set_defaults(handler=run_upscale)
    listing = actions.add_parser("list", parents=[common], help="jobs in queue order, then recent finished ones")
    listing.set_defaults(handler=run_list)
    for action in ACTIONS:
        control = actions.add_parser(action, parents=[common], help=HELP[action])
        control.add_argument("id", type=int, nargs="?" if action in ("pause", "resume") else None,
                             help="job id" + (" (default: all your jobs)" if action in ("pause", "resume") else ""))
        control.set_defaults(handler=run_control)
    work = actions.add_parser("run", parents=[common], help="work the queue here until no job waits")
    work.set_defaults(handler=run_work)


def run_add(args: argparse.Namespace) -> int:
    from masuka.queue.jobs import queue_images

    one_prompt_source(args)
    prompts = None
    if args.prompts_file:
        try:
            prompts = args.prompts_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"Cannot read the prompts file {args.prompts_file}: {error}.") from None
    request = flags_request(args)
    studio = open_studio(args)
    request = checked_size(studio, request)
    request.references = list(args.image)
    ids = queue_images(studio, request, prompts, args.random, allow_any_path=True)
    emit(args, {"jobs": ids}, f"queued job{'s' * (len(ids) != 1)} {', '.join(map(str, ids))}")
    return 0


def run_upscale(args: argparse.Namespace) -> int:
    from masuka.queue.jobs import queue_upscale

    request = upscale_request(args)
    job = queue_upscale(open_studio(args), request, allow_any_path=True)
    emit(args, {"jobs": [job]}, f"queued job {job}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from masuka.queue.jobs import list_jobs

    jobs = list_jobs(open_studio(args), LOCAL_USER, admin=True)
    lines = [COLUMNS.format(**{**job, "model": job["model"] or "", "title": (job["title"] or "")[:50]})
             + (f"  [{job['error'][:80]}]" if job["error"] else "") for job in jobs]
    emit(args, {"jobs": jobs}, "\n".join(lines) or "the queue is empty")
    return 0


def run_control(args: argparse.Namespace) -> int:
    from masuka.queue.jobs import control_job

    message = control_job(open_studio(args), LOCAL_USER, args.action, args.id, admin=True)
    emit(args, {"message": message}, message)
    return 0


def run_work(args: argparse.Namespace) -> int:
    """Work the queue until no job waits; exit 2 when a job it worked did not complete (failed, cancelled, ...).
    A job run again after an interruption (a busy database) counts once, with its last status. A job whose turn
    here ended and that another worker (the app's) took up is reported as continued by another worker, with its
    status now: not a failure when it completed there or is still waiting or running there."""
    from collections import Counter

    from masuka.queue.worker import work_until_empty

    studio = open_studio(args)
    finished: dict[int, str] = {}  # each job's last status, by id

    def on_job(job: dict, status: str) -> None:
        finished[job["id"]] = status
        progress_line(args, f"job {job['id']} " + ("gave its turn to another user's job" if status == "queued"
                                                   else status))

    work_until_empty(studio, on_job)
    elsewhere: set[int] = set()  # jobs given to another user's turn, which another worker took up meanwhile
    for job_id, status in finished.items():
        if status == "queued":
            row = studio.store.get("queue", job_id)
            finished[job_id] = row["status"] if row else "deleted"
            elsewhere.add(job_id)
            progress_line(args, f"job {job_id} continued by another worker: {finished[job_id]} there")
    count = len(finished)
    labels = Counter(f"continued by another worker ({status} there)" if job_id in elsewhere else status
                     for job_id, status in finished.items())
    counts = ", ".join(f"{number} {label}" for label, number in labels.items())
    emit(args, {"jobs": [{"id": job_id, "status": status} | ({"continued_by_another_worker": True}
                                                                if job_id in elsewhere else {})
                         for job_id, status in finished.items()]},
         f"worked {count} job{'s' * (count != 1)}{': ' + counts if counts else ''}; nothing waits now")
    going_on = ("queued", "running", "interrupted")  # waiting or running under the other worker: not a failure
    return 2 if any(status != "completed" and not (job_id in elsewhere and status in going_on)
                    for job_id, status in finished.items()) else 0
