"""``python -m masuka storage``: disk use per area of the data dir, the Settings tab's clean-ups (leftovers of
failed or unfinished work, old ``tmp/`` files), and the users taken off the sign-in list who still own things:
listed, and forgotten (everything they own deleted)."""

from __future__ import annotations

import argparse

from masuka.cli import emit, open_studio
from masuka.errors import InvalidInput


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("storage", parents=[common], help="disk use per area and its clean-up")
    parser.add_argument("action", nargs="?", default="usage",
                        choices=["usage", "clean-leftovers", "clean-tmp", "former-users", "forget-user"],
                        help="usage (default): bytes and files per area and per user; clean-leftovers: files of failed "
                             "generations, and half-written files, unrecorded images and exports untouched for an "
                             "hour; clean-tmp: what has been in tmp/ for more than an hour; former-users: the users "
                             "not on the sign-in list (MASUKA_AUTH) who still own things; forget-user NAME --yes: "
                             "delete everything such a user owns")
    parser.add_argument("name", nargs="?", help="forget-user: the user to forget")
    parser.add_argument("--yes", action="store_true", help="forget-user: confirm the deletion")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.disk import clean_leftovers, clean_tmp, usage, usage_by_user

    if (args.name is None) == (args.action == "forget-user"):
        raise InvalidInput("Name the user to forget: storage forget-user NAME --yes." if args.name is None else
                           f"storage {args.action} takes no name.")
    if args.action == "forget-user" and not args.yes:
        raise InvalidInput(f"Forgetting {args.name!r} deletes everything they own: add --yes to confirm.")
    studio = open_studio(args)
    if args.action == "former-users":
        from masuka.off_list import former_users

        former = former_users(studio)
        emit(args, {"users": former}, "\n".join(f"{user}: {count} item(s)" for user, count in former.items())
             or "No user off the sign-in list owns anything.")
    elif args.action == "forget-user":
        from masuka.forget_user import described, forget_user

        gone = forget_user(studio, args.name)
        emit(args, {"user": args.name, "deleted": gone}, f"Forgot {args.name!r}: deleted {described(gone)}.")
    elif args.action != "usage":
        removed, freed = (clean_tmp if args.action == "clean-tmp" else clean_leftovers)(studio)
        emit(args, {"removed": removed, "bytes": freed}, f"removed {removed} item(s), {freed / 2**20:.1f} MB")
    else:
        rows, users = usage(studio), usage_by_user(studio)
        emit(args, {"areas": rows, "users": users}, "\n".join(
            [f"{r['area']:<13} {r['bytes'] / 2**30:>8.3f} GB {r['files']:>7} file(s)  {r['path']}" for r in rows]
            + ["", "per user:"] + [f"{r['user']:<13} {r['bytes'] / 2**30:>8.3f} GB {r['files']:>7} file(s)"
                                   for r in users]))
    return 0
