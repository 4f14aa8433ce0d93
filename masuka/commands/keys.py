"""``python -m masuka keys``: list (masked), set (from a prompt or stdin, never the command line) and test keys."""

from __future__ import annotations

import argparse
import sys

from masuka.cli import emit, open_studio


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.keys import KEY_ENV

    parser = sub.add_parser("keys", parents=[common], help="API keys: list masked, set, test")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="every key, masked, and where it comes from")
    for name, text in (("set", "save a key read from a hidden prompt or stdin (empty: forget it)"),
                       ("test", "make one cheap authenticated request with the key")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("name", choices=list(KEY_ENV))
    for action in actions.choices.values():
        action.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.settings import check_key, key_table, save_key

    config = open_studio(args).config
    if args.action == "list":
        rows = key_table(config)
        emit(args, rows, "\n".join(f"{r['label']:<13} {r['source']:<8} {r['masked']}" for r in rows))
        return 0
    if args.action == "set":
        if sys.stdin.isatty():
            import getpass

            value = getpass.getpass(f"{args.name} key (hidden): ")
        else:
            value = sys.stdin.readline()
        message = save_key(config, args.name, value)
        emit(args, {"message": message}, message)
        return 0
    ok, message = check_key(config, args.name)
    emit(args, {"ok": ok, "message": message}, message)
    return 0 if ok else 1
