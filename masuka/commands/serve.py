"""``python -m masuka serve``: start the web app (the same as ``python app.py``)."""

from __future__ import annotations

import argparse

from masuka.config import DEFAULT_PORT


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 1 to 65535."""
    from masuka.cli import at_least

    port = at_least(1)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535 (got {port})")
    return port


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    from masuka.server import default_host

    parser.add_argument("--host", default=default_host(), help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port, 1 to 65535 (default 7860)")
    parser.add_argument("--share", action="store_true", help="open a public Gradio share link")
    parser.add_argument("--ngrok", action="store_true", help="open an ngrok tunnel (needs NGROK_AUTHTOKEN)")
    parser.add_argument("--auth", help="user:pass[,user2:pass2] or @file; also MASUKA_AUTH")
    parser.add_argument("--api-open", action="store_true",
                        help="without --auth, let other machines use the REST APIs (/sdapi/v1, /v1/images); "
                             "also MASUKA_API_OPEN=1")


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.cli import data_dir_parser

    # not ``common``: the app prints no results, so --json would mean nothing here
    parser = sub.add_parser("serve", parents=[data_dir_parser()], help="start the web app")
    add_server_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from masuka.config import Config, auth_flag
    from masuka.environment import check_environment
    from masuka.server import command_line_auth_warning, launch

    auth = auth_flag(args.auth)
    warning = command_line_auth_warning(auth)
    if warning:
        print(warning, file=sys.stderr)
    config = Config.from_env(data_dir=args.data_dir, auth=auth, **({"api_open": True} if args.api_open else {}))
    check_environment()
    launch(config, host=args.host, port=args.port, share=args.share, ngrok=args.ngrok)
    return 0
