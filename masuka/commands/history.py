"""``python -m masuka history``: list, search, show, export and delete what was made and run; read the
parameters an image file carries."""

from __future__ import annotations

import argparse
from pathlib import Path

from masuka.cli import emit, open_studio
from masuka.store import LOCAL_USER


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.history.queries import KINDS, STATUSES

    parser = sub.add_parser("history", parents=[common], help="history entries")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="one page of entries, newest first")
    listing.add_argument("--kind", action="append", default=[], choices=KINDS,
                         help="only entries of this kind (repeatable)")
    listing.add_argument("--model", default="")
    listing.add_argument("--lora", default="")
    listing.add_argument("--status", default="", choices=STATUSES)
    listing.add_argument("--since", default="", help="YYYY-MM-DD (inclusive)")
    listing.add_argument("--until", default="", help="YYYY-MM-DD (inclusive)")
    listing.add_argument("--search", default="", help="full-text search in prompts")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--per-page", type=int, default=20)
    show = actions.add_parser("show", parents=[common], help="every parameter of one entry")
    show.add_argument("key", help="g<id> (generation) or j<id> (job)")
    export = actions.add_parser("export", parents=[common], help="zip of entries' files with metadata.jsonl")
    export.add_argument("keys", nargs="+")
    delete = actions.add_parser("delete", parents=[common], help="delete entries and their files")
    delete.add_argument("keys", nargs="+")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    for action in (listing, show, export, delete):
        action.add_argument("--user", help="act as this user (default: every user's entries)")
        action.set_defaults(handler=run)
    params = actions.add_parser("params", parents=[common], help="the generation parameters an image file carries "
                                "(the Image tab's Read parameters; A1111, NovelAI, Fooocus, SwarmUI)")
    params.add_argument("file", type=Path, help="a PNG, JPEG or WebP image")
    params.set_defaults(handler=run_params)


def run(args: argparse.Namespace) -> int:
    from masuka.errors import InvalidInput
    from masuka.history.actions import delete_entries, export_zip
    from masuka.history.browse import PRIVATE_COLUMNS, Filters, browse, entry

    studio = open_studio(args)
    user, admin = args.user or LOCAL_USER, args.user is None
    if args.action == "list":
        page = browse(studio, user, admin, Filters(args.kind, args.model, args.lora, args.status, args.since,
                                                   args.until, args.search), args.page, args.per_page)
        lines = [f"{e['key']:>8}  {(e['created_at'] or '')[:16]}  {e['kind']:<8} {e['status']:<10} "
                 f"{(e['model'] or '')[:24]:<24} {(e['prompt'] or '')[:60]}" for e in page.entries]
        emit(args, {"total": page.total, "page": page.page, "pages": page.pages, "entries": page.entries},
             "\n".join(lines + [f"{page.total} entries, page {page.page} of {page.pages}"]))
    elif args.action == "show":
        row = {k: v for k, v in entry(studio, user, admin, args.key).items() if k not in PRIVATE_COLUMNS}
        emit(args, row, "\n".join(f"{k}: {v}" for k, v in row.items() if k not in ("log", "metrics")))
    elif args.action == "export":
        path = export_zip(studio, user, admin, args.keys)
        emit(args, {"zip": str(path)}, str(path))
    else:
        if not args.yes:
            raise InvalidInput("Deleting removes the entries and their files: add --yes to confirm.")
        message = delete_entries(studio, user, admin, args.keys)
        emit(args, {"deleted": args.keys}, message)
    return 0


def run_params(args: argparse.Namespace) -> int:
    """Print an image's A1111-style parameters text (with --json: its fields too, and its other text fields)."""
    from dataclasses import asdict

    from PIL import Image, UnidentifiedImageError

    from masuka.errors import InvalidInput, NotFound
    from masuka.image.metadata import parse_parameters, read_metadata

    if not args.file.is_file():
        raise NotFound(f"There is no image file {str(args.file)!r}.")
    try:
        metadata = read_metadata(args.file)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInput(f"{args.file.name} is not a readable PNG, JPEG or WebP file.") from None
    text = metadata.required(args.file.name)
    emit(args, {"file": str(args.file), "parameters": text, "fields": asdict(parse_parameters(text)),
                "items": metadata.items}, text)
    return 0
