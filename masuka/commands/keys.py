"""``python -m masuka keys``: list (masked), set (from a prompt or stdin, never the command line) and test keys;
``keys token create|list|revoke|users``: the per-user tokens of MASUKA's own REST APIs."""

from __future__ import annotations

import argparse
import sys

from masuka.cli import emit, open_studio
from masuka.store import LOCAL_USER


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("keys", parents=[common], help="API keys (shown masked) and REST API tokens")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="every key, masked, and where it comes from")
    for name, text in (("set", "save a key read from a hidden prompt or stdin (an empty line: forget it)"),
                       ("test", "make one cheap authenticated request with the key")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("name", type=key_name, help="the key: huggingface, openai, gemini, ... (see keys list)")
    for action in actions.choices.values():
        action.set_defaults(handler=run)
    token = actions.add_parser("token", parents=[common], help="API tokens for /sdapi/v1 and /v1/images")
    token.add_argument("token_action", choices=["create", "list", "revoke", "users"],
                       help="users: who may own a token (the sign-in list, read from MASUKA_AUTH)")
    token.add_argument("ref", nargs="?", help="revoke: the token's id (digits), name or prefix")
    token.add_argument("--user", default=LOCAL_USER, help="whose token: a user on the sign-in list (default: the "
                                                          "local user, the one user without sign-in)")
    token.add_argument("--name", default="", help="create: a name to tell it apart (e.g. laptop)")
    token.set_defaults(handler=run_token)


def key_name(name: str) -> str:
    """A key's name, checked when the command runs (the names come from the provider declarations, which
    load the provider clients: building the parser for other commands need not)."""
    from masuka.keys import services

    if name not in services():
        raise argparse.ArgumentTypeError(f"unknown key {name!r}: choose from {', '.join(services())}")
    return name


def run(args: argparse.Namespace) -> int:
    from masuka.keys import check_key, key_renewed, key_table, save_key

    if args.action == "set":
        value = _typed_key(args.name)  # before the data dir is opened: a refusal writes nothing
        message = save_key(open_studio(args).keys, args.name, value)
        emit(args, {"message": message}, message)
        return 0
    studio = open_studio(args)
    keys = studio.keys
    if args.action == "list":
        rows = key_table(keys)
        emit(args, {"keys": rows}, "\n".join(f"{r['label']:<13} {r['source']:<8} {r['masked']}" for r in rows))
        return 0
    ok, message = check_key(keys, args.name, f"save it with `python -m masuka keys set {args.name}`")
    key_renewed(studio.store, keys, args.name)  # models refused to this key are asked for again
    emit(args, {"ok": ok, "message": message}, message)
    return 0 if ok else 1


def _typed_key(name: str) -> str:
    """The key from a hidden prompt, or the first line of stdin: an empty line forgets the saved key, while a
    stdin with no line at all (closed, ``< /dev/null``) is refused rather than taken for one."""
    from masuka.errors import InvalidInput

    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{name} key (hidden): ")
    line = sys.stdin.readline() if sys.stdin is not None else ""  # None: the command was started with stdin closed
    if not line:
        raise InvalidInput(f"No key on stdin: pipe it in (echo \"$KEY\" | python -m masuka keys set {name}); an "
                           "empty line forgets the saved key.")
    return line


def run_token(args: argparse.Namespace) -> int:
    from masuka.api.auth import check_user, create_token, list_tokens, revoke_token, token_owners
    from masuka.config import Config
    from masuka.errors import InvalidInput

    if args.token_action == "create":  # owning something in the data dir, as other commands' --user may, is no use
        try:
            check_user(Config.read_env(data_dir=args.data_dir), args.user)
        except InvalidInput as refused:
            raise InvalidInput(f"{refused} An API token is made only for a user on the sign-in list.") from None
    studio = open_studio(args)
    if args.token_action == "users":
        users = token_owners(studio)
        emit(args, {"users": users}, "\n".join(users))
    elif args.token_action == "create":
        token = create_token(studio, args.user, args.name)
        emit(args, {"user": args.user, "token": token},
             f"{token}\nShown this once: keep it now. Use it as 'Authorization: Bearer <token>'.")
    elif args.token_action == "list":
        rows = list_tokens(studio, args.user)
        emit(args, {"tokens": rows}, "\n".join(f"{r['id']:>4}  {r['prefix']}…  {r['name']:<16} made "
                                                f"{r['created_at'][:16]}  last used "
                                                f"{(r['last_used_at'] or 'never')[:16]}" for r in rows)
             or f"no API tokens for {args.user}")
    else:
        if not args.ref:
            raise InvalidInput("Say which token to revoke: its id, name or prefix (see `keys token list`).")
        row = revoke_token(studio, args.user, args.ref)
        emit(args, {"revoked": row}, f"revoked {row['prefix']}… ({row['name']})")
    return 0
