"""``python -m masuka sequence``: images (files, History entries or a queue job's results) as one MP4."""

from __future__ import annotations

import argparse
from pathlib import Path

from masuka.cli import emit, open_studio
from masuka.errors import InvalidInput, NotFound
from masuka.store import LOCAL_USER


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("sequence", parents=[common], help="an image sequence as an MP4 video")
    parser.add_argument("images", nargs="*", type=Path, help="image files, in order")
    parser.add_argument("--ids", help="History images in order: their keys or ids, separated by commas "
                                      "(g12,g13,g14 or 12,13,14)")
    parser.add_argument("--queue-job", type=int, metavar="ID", help="the images of a queued job")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    parser.add_argument("--out", type=Path, help="a new .mp4 file to write (an existing file is never replaced; "
                                                    "default: outputs/<user>/videos/)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.queue.jobs import job_images
    from masuka.video.sequence import history_images, images_to_mp4

    if sum(bool(x) for x in (args.images, args.ids, args.queue_job)) != 1:
        raise InvalidInput("Give image files, --ids or --queue-job (one of them).")
    ids = _image_ids(args.ids) if args.ids else []  # refused before the data dir is opened
    studio = open_studio(args)
    if args.ids:
        paths = history_images(studio, LOCAL_USER, True, ids)
    elif args.queue_job:
        paths = [studio.config.absolute(row["output_path"]) for row in job_images(studio, [args.queue_job])]
        if not paths:
            job = studio.store.get("queue", args.queue_job)
            raise (NotFound(f"There is no queued job {args.queue_job} (see `queue list`).") if job is None else
                   InvalidInput(f"Queued job {args.queue_job} has no finished images ({job['status']})."))
    else:
        paths = args.images
    video = images_to_mp4(studio, LOCAL_USER, paths, args.fps, args.out)
    emit(args, {"video": str(video), "frames": len(paths), "fps": args.fps}, str(video))
    return 0


def _image_ids(text: str) -> list[int]:
    """``--ids``: History images' keys (``g12``) or ids (``12``), separated by commas."""
    try:
        return [int(x.strip().lstrip("g")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidInput(f"--ids takes History images' keys (g12) or ids (12) separated by commas, such as "
                           f"g12,g13,g14 (got {text!r}).") from None
