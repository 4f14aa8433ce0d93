"""``python -m masuka character ...``: a character from one photo: create (views + dataset), train, list, show,
reject or regenerate a view, add real photos, delete."""

from __future__ import annotations

import argparse
from pathlib import Path

from masuka.cli import download_progress, emit, local_or_named, open_studio, progress_line, user_option
from masuka.errors import InvalidInput
from masuka.store import UNFINISHED

FOLLOW_S = 2.0
FACE_HELP = ("which face when a photo shows several (1 = biggest): once for every photo, or once per photo in "
             "order (0 = the only face)")


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.characters.identity import OWN_THRESHOLDS
    from masuka.characters.making import captioner_hint
    from masuka.characters.prompts import DEFAULT_VIEWS
    from masuka.characters.training import CHARACTER_PRESET, DEFAULT_WEIGHT
    from masuka.characters.views import DEFAULT_STRENGTH
    from masuka.training.options import PRESETS

    parser = sub.add_parser("character", parents=[common], help="a character LoRA from one photo")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="find the face, make views, keep the likely ones "
                                                                 "as a dataset")
    create.add_argument("name")
    create.add_argument("--photo", dest="photos", action="append", required=True, metavar="PATH",
                        help="a photo of the character (repeatable, 1-5)")
    create.add_argument("--trigger", required=True, help="the word prompts will use to call the character")
    create.add_argument("--views", type=int, help=f"synthetic views to make (default {DEFAULT_VIEWS}, or as many "
                        "as --prompts has: naming both, they must agree)")
    create.add_argument("--edit-model", dest="model", help="model that makes the views: an edit model takes the "
                        "photo as a reference, any other starts from it (image-to-image)")
    create.add_argument("--strength", type=float, default=DEFAULT_STRENGTH,
                        help="image-to-image: how far a view may move from the photo")
    create.add_argument("--steps", type=int, help="inference steps per view (default: the model's)")
    create.add_argument("--size", type=int, help="the views' longer side in pixels: they keep the photo's shape "
                        "(default: the view model's size)")
    create.add_argument("--seed", type=int, default=0, help="picks the prompt set and seeds the views; -1 draws one")
    create.add_argument("--prompts", metavar="FILE", help="your own prompt set: one view prompt a line")
    create.add_argument("--threshold", type=float, help="identity score a view needs to be kept (cosine "
                        f"similarity; default: the identity model's own, {OWN_THRESHOLDS})")
    create.add_argument("--identity-model", default="", help="face-embedding model: an ONNX face-recognition model "
                        "or a transformers image model (repo id or folder), or 'clip'; default SFace")
    create.add_argument("--face", type=int, action="append", help=FACE_HELP)
    create.add_argument("--not-a-person", action="store_true", help="skip face checks (a creature, an object, "
                        "a style)")
    create.add_argument("--captioner", default="auto",
                        help=f"caption the views with this captioner: {captioner_hint('none')}")
    create.add_argument("--outfit", metavar="PATH", help="a picture of the clothes every view wears: the second "
                        "reference of an edit model that takes several images (Qwen-Image-Edit-Plus, FLUX.2)")
    create.set_defaults(handler=run_create)

    train = actions.add_parser("train", parents=[common], help="train the character's LoRA, then render a test "
                                                               "grid")
    train.add_argument("name")
    train.add_argument("--base", required=True, type=local_or_named,
                       help="base model: catalog id, repo id or pipeline folder")
    train.add_argument("--steps", type=int, default=CHARACTER_PRESET["steps"])
    train.add_argument("--rank", type=int, default=CHARACTER_PRESET["rank"])
    train.add_argument("--lr", type=float, default=CHARACTER_PRESET["lr"], help="learning rate")
    train.add_argument("--preset", choices=list(PRESETS), help="GPU memory preset")
    train.add_argument("--resolution", type=int, help="training side in pixels")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--sample-steps", type=int, help="inference steps of the test grid's images")
    train.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, help="the LoRA's default weight")
    train.set_defaults(handler=run_train)

    actions.add_parser("list", parents=[common], help="list characters").set_defaults(handler=run_list)

    def named(action: str, text: str, handler) -> argparse.ArgumentParser:
        """An action on one character, named by its name or id."""
        parser = actions.add_parser(action, parents=[common], help=text)
        parser.add_argument("name")
        parser.set_defaults(handler=handler)
        return parser

    named("show", "a character's photos, views and scores, runs, LoRA", run_show)
    for action, text in (("reject", "take a view out of the dataset"),
                         ("regenerate", "make a view again with a new seed")):
        named(action, text, run_view_edit).add_argument("view", type=int, help="view number (from `character show`)")
    add_photos = named("add-photos", "add real photos to the character's dataset", run_add_photos)
    add_photos.add_argument("paths", nargs="+", metavar="PATH")
    add_photos.add_argument("--face", type=int, action="append", help=FACE_HELP)
    named("delete", "delete a character and its photos (its dataset, runs and LoRA stay)", run_delete).add_argument(
        "--yes", action="store_true", required=True, help="confirm the deletion")
    user_option(actions, "characters")


def run_create(args: argparse.Namespace) -> int:
    from masuka.characters.making import CharacterRequest, create_character

    prompts = None
    if args.prompts:
        try:
            prompts = Path(args.prompts).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"The prompt set {args.prompts} cannot be read: {error}") from None
    values = dict(name=args.name, photos=args.photos, trigger=args.trigger, owner=args.user, views=args.views,
                  prompts=prompts, seed=args.seed, strength=args.strength, steps=args.steps, size=args.size,
                  threshold=args.threshold, identity_model=args.identity_model, face=args.face,
                  skip_faces=args.not_a_person, captioner="" if args.captioner == "none" else args.captioner,
                  outfit=args.outfit)
    if args.model:
        values["model"] = args.model
    report = create_character(open_studio(args), CharacterRequest(**values), allow_any_path=True,
                              on_download=download_progress(args),
                              on_progress=lambda done, total, text: progress_line(args, f"view {done}/{total}: "
                                                                                        f"{text}"))
    for note in report.notes:
        progress_line(args, f"note: {note}")
    lines = [f"character {report.character}: dataset {report.dataset!r} with {report.images} image(s), "
             f"{len(report.rejected)} rejected"] + [f"  rejected {r['file']}: {r['reason']}" for r in report.rejected]
    emit(args, report.to_dict(), "\n".join(lines))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from masuka.characters.training import train_character, trained_character
    from masuka.commands.train import interrupt_on_signals

    studio = open_studio(args)
    run_id = train_character(studio, args.name, args.user, base=args.base, weight=args.weight,
                             interrupt=interrupt_on_signals(), steps=args.steps,
                             rank=args.rank, lr=args.lr, preset=args.preset, resolution=args.resolution,
                             batch_size=args.batch_size, seed=args.seed, sample_steps=args.sample_steps)
    progress_line(args, f"run {run_id} queued")
    shown = ""
    while (row := studio.runner().wait(run_id, timeout=FOLLOW_S))["status"] in UNFINISHED:
        line = f"run {run_id}: step {row['step'] or 0}/{row['total']}"  # the same while the test grid renders
        if line != shown:
            progress_line(args, line)
            shown = line
    character = trained_character(studio, row)
    state = character["state"] if character else {}
    lora = row["result"].get("lora_name")
    result = {"character": row["state"]["made_for"][1], "run": run_id, "status": row["status"], "lora": lora,
              "grid": str(studio.config.absolute(state["grid"])) if state.get("grid") else None,
              "error": row["error"]}
    if character is None:
        progress_line(args, f"note: the character {args.name!r} was deleted meanwhile, so no test grid was "
                            "rendered for it; the run and the LoRA it made stay.")
    elif state.get("grid_error"):
        progress_line(args, f"the test grid failed: {state['grid_error']}")
    emit(args, result, f"run {run_id} {row['status']}" + (f": LoRA {lora}, test grid {result['grid']}"
                                                          if row["status"] == "completed" else
                                                          f": {row['error'] or ''}"))
    return 0 if row["status"] == "completed" else 1


def run_list(args: argparse.Namespace) -> int:
    from masuka.characters.library import dataset_words, list_characters, summary

    studio = open_studio(args)
    rows = [summary(studio, row) for row in list_characters(studio, args.user)]
    result = [{k: r[k] for k in ("character", "name", "trigger", "being_made", "dataset", "images", "kept",
                                 "real_photos", "lora")} for r in rows]
    emit(args, {"characters": result},
         "\n".join(f"{r['character']:>4}  {r['name']}  trigger={r['trigger']!r}  {dataset_words(r)}  "
                   f"lora={r['lora'] or '-'}" for r in rows)
         or f"no characters of user {args.user!r} (another user's: --user NAME)")
    return 0


def _show(args: argparse.Namespace, character: dict, studio, refused: list[dict] | None = None) -> int:
    """Print the character; ``refused``: the photos just added that its dataset refused (not kept)."""
    from masuka.characters.library import dataset_words, summary

    result = summary(studio, character)
    rejected = "" if result["being_made"] else f", {result['rejected']} rejected"
    lines = [f"{result['name']} (id {result['character']}, trigger {result['trigger']!r}): {dataset_words(result)}"
             f"{rejected}, runs {result['runs']}, LoRA {result['lora'] or '-'}"]
    lines += [f"  {i}. {'kept' if v['kept'] else 'rejected'} score {v['score']} {v['prompt']}"
              + (f" ({v['reason']})" if v["reason"] else "") for i, v in enumerate(result["views"], 1)]
    lines += [f"note: {note}" for note in result["notes"]]
    lines += [f"the test grid failed: {result['grid_error']}"] if result["grid_error"] else []
    if refused is not None:
        result["refused"] = refused
        lines += [f"  not kept {r['file']}: {r['reason']}" for r in refused]
    emit(args, result, "\n".join(lines))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from masuka.characters.library import find_character

    studio = open_studio(args)
    return _show(args, find_character(studio, args.name, args.user), studio)


def run_view_edit(args: argparse.Namespace) -> int:
    from masuka.characters.making import regenerate_view, reject_view

    studio = open_studio(args)
    if args.action == "reject":
        character = reject_view(studio, args.name, args.user, args.view)
    else:
        character = regenerate_view(studio, args.name, args.user, args.view, on_download=download_progress(args))
    return _show(args, character, studio)


def run_add_photos(args: argparse.Namespace) -> int:
    from masuka.characters.making import add_photos

    studio = open_studio(args)
    character, refused = add_photos(studio, args.name, args.user, args.paths, face=args.face)
    return _show(args, character, studio, refused)


def run_delete(args: argparse.Namespace) -> int:
    from masuka.characters.library import delete_character, deleted_note

    studio = open_studio(args)
    character = delete_character(studio, args.name, args.user)
    emit(args, {"deleted": character["id"]}, deleted_note(studio, character))
    return 0
