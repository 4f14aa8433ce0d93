"""``python -m masuka storage``: disk use per area of the data dir, and the Settings tab's clean-ups (leftovers of
failed or unfinished work, old ``tmp/`` files)."""

from __future__ import annotations

import argparse

from masuka.cli import emit, open_studio


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("storage", parents=[common], help="disk use per area and its clean-up")
    parser.add_argument("action", nargs="?", choices=["usage", "clean-leftovers", "clean-tmp"], default="usage",
                        help="usage (default): bytes and files per area; clean-leftovers: files of failed "
                             "generations, and half-written files, unrecorded images and exports untouched for an "
                             "hour; clean-tmp: what has been in tmp/ for more than an hour")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.disk import clean_leftovers, clean_tmp, usage

    studio = open_studio(args)
    if args.action != "usage":
        removed, freed = (clean_tmp if args.action == "clean-tmp" else clean_leftovers)(studio)
        emit(args, {"removed": removed, "bytes": freed}, f"removed {removed} item(s), {freed / 2**20:.1f} MB")
        return 0
    rows = usage(studio)
    emit(args, {"areas": rows}, "\n".join(f"{r['area']:<13} {r['bytes'] / 2**30:>8.3f} GB {r['files']:>7} file(s)  "
                                          f"{r['path']}" for r in rows))
    return 0
