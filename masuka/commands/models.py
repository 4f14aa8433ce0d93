"""``python -m masuka models``: catalog status, downloads, cache deletion, the LoRA library's listing, imports and
deletion."""

from __future__ import annotations

import argparse

from masuka.cli import emit, open_studio, progress_line
from masuka.store import LOCAL_USER

STOP_WAIT_S = 10.0  # how long Ctrl-C waits for a download to stop (it stops within one chunk of a file)


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("models", parents=[common], help="models and LoRAs")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="catalog models and cached repos with their status")
    download = actions.add_parser("download", parents=[common], help="download a model into the Hugging Face cache")
    download.add_argument("model", help="catalog id or owner/name")
    delete = actions.add_parser("delete", parents=[common], help="delete a model from the Hugging Face cache")
    delete.add_argument("repo", help="catalog id or owner/name")
    delete.add_argument("--yes", action="store_true", required=True, help="confirm the deletion")
    loras = actions.add_parser("loras", parents=[common], help="the LoRA library: name, architecture, base model, "
                                                               "trigger, rank, size, owner")
    loras.add_argument("--user", help="the LoRAs this user may use (default: every user's)")
    lora = actions.add_parser("import-lora", parents=[common], help="check and import a LoRA")
    source = lora.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="a .safetensors file")
    source.add_argument("--hf", nargs=2, metavar=("REPO", "FILE"), help="a file of a Hugging Face repo")
    source.add_argument("--civitai", metavar="VERSION_ID", help="a CivitAI model version (CIVITAI_API_KEY)")
    lora.add_argument("--name", help="name in the LoRA library")
    lora.add_argument("--user", default=LOCAL_USER, help="owner of the imported LoRA")
    gone = actions.add_parser("delete-lora", parents=[common], help="delete a LoRA of the library and its file")
    gone.add_argument("lora", help="its name or id")
    gone.add_argument("--user", help="act as this user (default: any user's LoRA, the local user's first)")
    gone.add_argument("--yes", action="store_true", required=True, help="confirm the deletion")
    for action in actions.choices.values():
        action.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.errors import InvalidInput
    from masuka.jobs import request_stop
    from masuka.loras.imports import import_from_civitai, import_from_hub, import_lora_file
    from masuka.loras.library import delete_lora, list_loras
    from masuka.models.manage import delete_model, model_status, start_download

    studio = open_studio(args)
    if args.action == "list":
        rows = model_status()
        lines = [f"{r['section']:<8} {r['id']:<20} {r['repo']:<50} "
                 f"{'downloaded' if r['downloaded'] else 'partial' if r['partial'] else '-':<10} "
                 f"{r['size_bytes'] / 2**30:7.2f} GB{'  gated' if r['gated'] else ''}" for r in rows]
        emit(args, {"models": rows}, "\n".join(lines))
    elif args.action == "download":
        job_id = start_download(studio, LOCAL_USER, args.model)
        done = {"model": args.model, "downloaded": True}
        if job_id is None:
            emit(args, done | _cached(args.model), f"{args.model} is already downloaded.")
            return 0
        try:
            while (row := studio.runner().wait(job_id, timeout=2))["status"] in ("queued", "running"):
                progress_line(args, f"{row['model']}: {100 * (row['progress'] or 0):.1f}%")
        except KeyboardInterrupt:  # Ctrl-C stops the download too, not only this wait for it
            request_stop(studio.store, job_id)
            studio.runner().wait(job_id, timeout=STOP_WAIT_S)
            raise
        if row["status"] != "completed":
            raise InvalidInput(row["error"] or f"download {row['status']}")
        emit(args, done | row["result"], row["result"]["path"])
    elif args.action == "loras":
        rows = list_loras(studio, args.user or LOCAL_USER, every_owner=args.user is None)
        for row in rows:
            row["path"] = str(studio.config.absolute(row["path"]))
        lines = [f"{r['id']:>4} {r['name']:<24} {r['architecture'] or '-':<10} {r['base_model'] or '-':<28} "
                 f"{r['trigger'] or '-':<16} rank {r['rank'] or '-':<4} {(r['size_bytes'] or 0) / 2**20:7.1f} MB "
                 f"{r['owner']}" for r in rows]
        emit(args, {"loras": rows}, "\n".join(lines) or "No LoRAs yet: import one with models import-lora.")
    elif args.action == "delete":
        freed = delete_model(studio, args.repo)
        emit(args, {"freed_bytes": freed}, f"freed {freed / 2**30:.2f} GB")
    elif args.action == "delete-lora":
        row = delete_lora(studio, args.lora, args.user or LOCAL_USER, args.user is None)
        row["path"] = str(studio.config.absolute(row["path"]))
        emit(args, row, f"deleted {row['name']} ({row['owner']}) and {row['path']}")
    else:
        if args.file:
            row = import_lora_file(studio, args.user, args.file, args.name)
        elif args.hf:
            row = import_from_hub(studio, args.user, args.hf[0], args.hf[1], args.name)
        else:
            row = import_from_civitai(studio, args.user, args.civitai, args.name)
        row["path"] = str(studio.config.absolute(row["path"]))
        renamed = f" (named {row['name']!r}, a file name, not {args.name!r}: call it so)" \
            if args.name and row["name"] != args.name else ""
        emit(args, row, f"imported {row['name']} ({row['architecture']}) -> {row['path']}{renamed}")
    return 0


def _cached(model: str) -> dict:
    """What a finished download of ``model`` reports (its snapshot folder and size) when the cache holds it whole."""
    from huggingface_hub import snapshot_download

    from masuka.models.hub import hub_cache_dir
    from masuka.models.manage import cache_entries, resolve_repo

    repo = resolve_repo(model)
    path = snapshot_download(repo, cache_dir=hub_cache_dir(), local_files_only=True)  # main's, read from the cache
    return {"path": path, "size_bytes": cache_entries()[repo][0]}
