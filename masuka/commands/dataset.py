"""``python -m masuka dataset ...``: create datasets, add and remove images, caption, export, list and show them."""

from __future__ import annotations

import argparse

from masuka.cli import at_least, download_progress, emit, open_studio, progress_line, user_option


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.datasets.captioners import DEFAULT_FAMILY, MODES, family_ids, family_names
    from masuka.datasets.formats import DEFAULT_REPEATS, FORMATS
    from masuka.datasets.preprocess import CROPS, PrepOptions

    defaults = PrepOptions()
    parser = sub.add_parser("dataset", parents=[common], help="training datasets")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create a dataset, optionally with images")
    create.add_argument("name")
    create.add_argument("--trigger", required=True, help="the word prompts will use to call the concept")
    create.add_argument("--template", help="caption template (default: 'photo of {trigger}, {caption}')")
    create.add_argument("--from", dest="sources", action="append", default=[], metavar="PATH",
                        help="image file, folder or zip to add (repeatable)")
    create.add_argument("--size", type=int, default=defaults.size, help="target size in pixels (longest side)")
    create.add_argument("--crop", choices=CROPS, default=defaults.crop,
                        help="none keeps the aspect ratio; center/face cut a square")
    create.add_argument("--flip", action="store_true", help="add a horizontally flipped copy of each image")
    create.add_argument("--min-side", type=int, default=defaults.min_side,
                        help="refuse images whose short side, as stored, would be smaller (px)")
    create.add_argument("--blur-threshold", type=float, default=defaults.blur_threshold,
                        help="refuse images less sharp than this (variance of Laplacian; 0 = off)")
    create.add_argument("--no-dedupe", action="store_true", help="keep duplicates, near-duplicates and mirror images")
    create.add_argument("--near-distance", type=int, default=defaults.near_distance,
                        help="perceptual hash distance counted as a near-duplicate (or a mirror)")
    create.set_defaults(handler=run_create)

    add = actions.add_parser("add", parents=[common], help="add image files, folders or zips to a dataset")
    add.add_argument("name")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.set_defaults(handler=run_add)

    caption = actions.add_parser("caption", parents=[common], help=f"auto-caption with {family_names()}")
    caption.add_argument("name")
    caption.add_argument("--captioner", default=DEFAULT_FAMILY,
                         help=f"{family_ids()}, a catalog id, a repo id or a local model folder")
    caption.add_argument("--mode", choices=list(MODES), default="detailed",
                         help=f"caption length ({family_names(length_modes=True)})")
    caption.add_argument("--template", help="caption template, e.g. 'photo of {trigger}, {caption}'")
    caption.add_argument("--overwrite", action="store_true", help="replace existing captions too")
    caption.add_argument("--batch-size", type=int, default=8)
    caption.set_defaults(handler=run_caption)

    set_caption = actions.add_parser("set-caption", parents=[common],
                                     help="write one image's caption by hand (its flipped copy's too)")
    set_caption.add_argument("name")
    set_caption.add_argument("image", type=at_least(1), metavar="IMAGE_ID", help="the image's #id (`dataset show`)")
    set_caption.add_argument("caption", help="the new caption ('' clears it)")
    set_caption.set_defaults(handler=run_set_caption)

    remove = actions.add_parser("remove", parents=[common], help="remove one image (and its flipped copy) and files")
    remove.add_argument("name")
    remove.add_argument("image", type=at_least(1), metavar="IMAGE_ID", help="the image's #id (`dataset show`)")
    remove.set_defaults(handler=run_remove)

    export = actions.add_parser("export", parents=[common], help="write images and captions in a trainer layout")
    export.add_argument("name")
    export.add_argument("--format", choices=FORMATS, required=True)
    export.add_argument("--out", required=True, help="new or empty folder")
    export.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"kohya: times each image is seen per epoch, the N of the N_trigger folder "
                             f"(default {DEFAULT_REPEATS})")
    export.set_defaults(handler=run_export)

    listing = actions.add_parser("list", parents=[common], help="list datasets")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", parents=[common], help="statistics, warnings and captions of a dataset")
    show.add_argument("name")
    show.set_defaults(handler=run_show)

    delete = actions.add_parser("delete", parents=[common], help="delete a dataset and its files")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", required=True, help="confirm the deletion")
    delete.set_defaults(handler=run_delete)
    user_option(actions, "datasets")


def _add(studio, args: argparse.Namespace, name: str | int, paths: list[str]) -> dict:
    from masuka.datasets.adding import add_images

    step = [0]

    def on_progress(done: int, total: int, file: str) -> None:
        if done == total or done - step[0] >= max(1, total // 10):
            step[0] = done
            progress_line(args, f"{done}/{total} {file}")

    return add_images(studio, name, args.user, paths, allow_folders=True, on_progress=on_progress).to_dict()


def _report_text(result: dict) -> str:
    lines = [f"dataset {result['dataset']}: added {result['added']}, refused {len(result['rejected'])}"]
    lines += [f"  refused {r['file']}: {r['reason']}" for r in result["rejected"]]
    lines += [f"  note {n['file']}: {n['note']}" for n in result["notes"]]
    return "\n".join(lines)


def run_create(args: argparse.Namespace) -> int:
    from masuka.datasets.library import create_dataset

    studio = open_studio(args)
    options = {"size": args.size, "crop": args.crop, "flip": args.flip, "min_side": args.min_side,
               "blur_threshold": args.blur_threshold, "dedupe": not args.no_dedupe,
               "near_distance": args.near_distance}
    dataset = create_dataset(studio, args.name, args.user, args.trigger, args.template, options)
    result = _add(studio, args, dataset["id"], args.sources) if args.sources else \
        {"dataset": dataset["id"], "added": 0, "rejected": [], "notes": []}
    return _report(args, result, args.sources, created=dataset["name"])


def run_add(args: argparse.Namespace) -> int:
    return _report(args, _add(open_studio(args), args, args.name, args.paths), args.paths)


def _report(args: argparse.Namespace, result: dict, sources: list[str], created: str = "") -> int:
    """Print what was added and refused; exit 2 with an ``error:`` line when ``sources`` were given and no image
    was added (every one refused, or none found: an empty folder, a typo in its name's glob)."""
    emit(args, result, _report_text(result))
    if result["added"] or not sources:
        return 0
    refused = len(result["rejected"])
    kept = f"; dataset {created!r} was created empty (add images with `dataset add`)" if created else ""
    found = f"{refused} refused" if refused else f"no image was found in {', '.join(sources)}"
    progress_line(args, f"error: no image was added, {found}{kept}")
    return 2


def run_caption(args: argparse.Namespace) -> int:
    from masuka.datasets.captioning import CaptionRequest, caption_dataset

    studio = open_studio(args)
    request = CaptionRequest(args.name, args.user, captioner=args.captioner, mode=args.mode, template=args.template,
                             overwrite=args.overwrite, batch_size=args.batch_size)
    downloading = download_progress(args)
    report = caption_dataset(studio, request, watch=lambda p: progress_line(
        args, f"{p.step}/{p.total} {p.message}: {p.detail}") if p.total else downloading(p))
    emit(args, report.to_dict(), f"captioned {report.captioned} image(s), kept {report.kept} existing caption(s)"
         + (" (stopped)" if report.stopped else ""))
    return 0


def _image_of(studio, args: argparse.Namespace) -> dict:
    """The dataset named by ``args.name``, refusing an ``args.image`` that is not one of its own images."""
    from masuka.datasets.library import dataset_image, find_dataset

    dataset = find_dataset(studio, args.name, args.user)
    dataset_image(studio, dataset, args.image, see="`dataset show`")
    return dataset


def run_set_caption(args: argparse.Namespace) -> int:
    from masuka.datasets.library import save_captions

    studio = open_studio(args)
    dataset = _image_of(studio, args)
    changed = save_captions(studio, dataset["id"], {args.image: args.caption}, args.user)
    emit(args, {"dataset": dataset["id"], "image": args.image, "changed": bool(changed)},
         f"image #{args.image}: caption {'saved' if changed else 'unchanged'}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from masuka.datasets.library import delete_image

    studio = open_studio(args)
    dataset = _image_of(studio, args)
    delete_image(studio, args.image, args.user)
    emit(args, {"dataset": dataset["id"], "removed": args.image}, f"removed image #{args.image}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from masuka.datasets.export import export_dataset

    folder = export_dataset(open_studio(args), args.name, args.user, args.format, args.out, repeats=args.repeats)
    emit(args, {"folder": str(folder), "format": args.format}, str(folder))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from masuka.datasets.library import list_datasets

    rows = list_datasets(open_studio(args), args.user)
    result = [{"id": r["id"], "name": r["name"], "trigger": r["trigger"], "images": r["images"]} for r in rows]
    emit(args, {"datasets": result},
         "\n".join(f"{r['id']:>4}  {r['name']}  trigger={r['trigger']!r}  {r['images']} image(s)" for r in result)
         or "no datasets yet")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from masuka.datasets.library import dataset_images, find_dataset
    from masuka.datasets.stats import dataset_statistics

    studio = open_studio(args)
    dataset = find_dataset(studio, args.name, args.user)
    stats = dataset_statistics(studio, dataset)
    images = [{"id": r["id"], "file": str(r["file"]), "source": r["source_name"], "caption": r["caption"] or ""}
              for r in dataset_images(studio, dataset["id"])]
    text = [f"{dataset['name']} (id {dataset['id']}, trigger {dataset['trigger']!r}, template "
            f"{dataset['template']!r}): {stats['images']} image(s), {stats['captioned']} captioned"]
    text += [f"  warning: {w}" for w in stats["warnings"]]
    text += [f"  #{i['id']} {i['source']}: {i['caption']}" for i in images]
    emit(args, {"dataset": dataset, "statistics": stats, "images": images}, "\n".join(text))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from masuka.datasets.library import delete_dataset

    dataset = delete_dataset(open_studio(args), args.name, args.user)
    emit(args, {"deleted": dataset["id"]}, f"deleted dataset {dataset['name']!r}")
    return 0
