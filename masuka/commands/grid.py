"""``python -m masuka grid``: an X/Y/Z grid of images, each cell a history row, plus one labelled grid image."""

from __future__ import annotations

import argparse
from dataclasses import replace

from masuka.cli import emit, local_or_named, open_studio, progress_line
from masuka.commands.generate import add_request_arguments, checked_size, flags_request, local_lora
from masuka.errors import InvalidInput
from masuka.image.grid import AXES, MAX_CELLS, Axis


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("grid", parents=[common], help="an X/Y/Z grid: one parameter per axis")
    add_request_arguments(parser)
    for name in ("x", "y", "z"):
        parser.add_argument(f"--{name}", metavar="NAME=V1,V2", required=name == "x", action="append",
                            help=f"the {name.upper()} axis, once; names: {', '.join(AXES)} (prompt = search/replace)")
    parser.add_argument("--yes", action="store_true", help=f"allow more than {MAX_CELLS} cells")
    parser.add_argument("--queue", action="store_true",
                        help="add the grid to the persistent queue as one job instead of making it now")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.image.grid import given_axes, plan_grid, run_grid

    axes = [local_values(axis) for axis in given_axes(list(map(one_axis, "xyz", (args.x, args.y, args.z))))]
    request = flags_request(args)
    studio = open_studio(args)
    request = checked_size(studio, request)
    if args.queue:
        from masuka.queue.jobs import queue_grid

        job = queue_grid(studio, request, axes, allow_any_path=True, confirm_large=args.yes)
        emit(args, {"jobs": [job]}, f"queued job {job}")
        return 0
    cells = plan_grid(studio, request, axes, allow_any_path=True, confirm_large=args.yes)
    progress_line(args, f"{len(cells)} cells")
    result = run_grid(studio, axes, cells, allow_any_path=True,
                      on_image=lambda r: progress_line(args, f"saved {r.path} (seed {r.seed})"))
    emit(args, {"grid": str(result.grid), "images": [str(r.path) for r in result.images],
                "ids": [r.id for r in result.images]}, str(result.grid))
    return 0


def local_values(axis: Axis) -> Axis:
    """A model or lora axis with its files and folders named relative to this directory made absolute, as ``--model``
    and ``--lora`` are (a queued grid runs in the app's directory); any other axis as given."""
    if axis.name == "model":
        return replace(axis, values=tuple(map(local_or_named, axis.values)))
    if axis.name == "lora":
        return replace(axis, values=tuple(map(local_lora, axis.values)))
    return axis


def one_axis(name: str, given: list[str] | None) -> str | None:
    """The ``--x`` (``--y``, ``--z``) given, or None: one at most, as a repeated one would keep only the last."""
    if given and len(given) > 1:
        raise InvalidInput(f"--{name} is given {len(given)} times ({'; '.join(given)}): a grid has one "
                           f"{name.upper()} axis, its values in one --{name} NAME=V1,V2 (sweep another parameter "
                           "on another axis).")
    return given[0] if given else None
