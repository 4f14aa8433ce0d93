"""``python -m masuka generate``: text-to-image, image-to-image and inpainting, recorded in history like the UI."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka import memory_plans
from masuka.cli import download_progress, emit, local_or_named, open_studio, progress_line
from masuka.errors import interrupted_with

if TYPE_CHECKING:
    from masuka.image.generate import ImageRequest
    from masuka.studio import Studio


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("generate", parents=[common], help="generate images from a prompt")
    add_request_arguments(parser)
    parser.set_defaults(handler=run)


def add_request_arguments(parser: argparse.ArgumentParser, prompt_required: bool = True) -> None:
    """The request flags ``generate``, ``queue add`` and ``grid`` share."""
    parser.add_argument("--model", required=True, type=local_or_named,
                        help="catalog id, diffusers repo id or local pipeline folder")
    parser.add_argument("--prompt", required=prompt_required, help="what the image shows")
    add_sampling_arguments(parser)
    add_speed_and_start_arguments(parser)
    add_aid_and_guide_arguments(parser)


def default_of(cls: type, field: str) -> Any:
    """The default of dataclass ``cls``'s ``field``: what a dependent flag left out (argparse default None) means,
    and what its help shows."""
    return next(each.default for each in fields(cls) if each.name == field)


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among ``names`` (by dest) given on the command line: the rest are left to the request's
    defaults (:func:`default_of`)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def refuse_without(args: argparse.Namespace, flags: tuple[str, ...], *needed: str) -> None:
    """:class:`InvalidInput` for the first of ``flags`` given while none of the flags ``needed`` is: it would
    silently do nothing."""
    from masuka.errors import InvalidInput

    alone = [f"--{name.replace('_', '-')}" for name in given(args, *flags)]
    if alone and not any(getattr(args, name) for name in needed):
        wanted = " or ".join(f"--{name.replace('_', '-')}" for name in needed)
        raise InvalidInput(f"{alone[0]} needs {wanted}: without it {alone[0]} does nothing.")


def one_prompt_source(args: argparse.Namespace) -> None:
    """:class:`InvalidInput` unless exactly one of ``--prompt`` and ``--prompts-file`` is given: with both, the file's
    prompts would silently replace ``--prompt``."""
    from masuka.errors import InvalidInput

    if (args.prompt is None) == (args.prompts_file is None):
        raise InvalidInput("Give --prompt or --prompts-file (one of them, not both).")


def add_aid_and_guide_arguments(parser: argparse.ArgumentParser) -> None:
    """The generation aids (prompt optimizer, safety check, face detail) and the control and reference images."""
    from masuka.image.generate import ImageRequest

    parser.add_argument("--optimize-prompt", action="store_true",
                        help="rewrite the prompt in detail first, with the prompt optimizer set in Settings")
    parser.add_argument("--safety-check", action="store_true",
                        help="score each image with the NSFW classifier; flagged ones are blurred or withheld")
    parser.add_argument("--face-detail", action="store_true",
                        help="repaint each face found in the result at higher resolution (ADetailer-style)")
    parser.add_argument("--face-strength", type=float, help="with --face-detail: how far a face may change, 0-1 "
                                                             f"(default {default_of(ImageRequest, 'face_strength')})")
    parser.add_argument("--control", action="append", default=[], metavar="KIND:PATH[:WEIGHT]",
                        help="follow a control image with a ControlNet (SDXL, FLUX.1): KIND is canny (its edges), "
                             "depth (its depth) or image (as it is); weight 0-2, default 1; repeatable")
    parser.add_argument("--controlnet", metavar="REPO_OR_FOLDER",
                        help="with --control: the ControlNet every --control uses instead of the model's own for "
                             "its kind, e.g. a union model such as xinsir/controlnet-union-sdxl-1.0")
    parser.add_argument("--reference", action="append", default=[], metavar="PATH[:WEIGHT]",
                        help="make the image like this one: IP-Adapter (SDXL) or Redux (FLUX.1); weight 0-2, "
                             "default 1; repeatable")


def add_sampling_arguments(parser: argparse.ArgumentParser, size_default: str = "the model's") -> None:
    """The flags every image command takes after the model and prompt: sampling, size, seed, batch, LoRAs, memory."""
    parser.add_argument("--negative-prompt", default="", help="what to keep out of the image (models that take one)")
    parser.add_argument("--steps", type=int, help="denoising steps, 1-200 (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (CFG), 0-30 (default: the model's)")
    parser.add_argument("--width", type=int, help=f"pixels, 64-2048, a multiple of 8 or 16 (default: {size_default})")
    parser.add_argument("--height", type=int, help=f"pixels, 64-2048, a multiple of 8 or 16 (default: {size_default})")
    parser.add_argument("--seed", type=int, help="fixed seed (default: random)")
    parser.add_argument("--batch", type=int, default=1, help="images, 1-4 (seeds seed, seed+1, …)")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]",
                        help="a LoRA file or library name, with an optional weight; repeatable")
    parser.add_argument("--memory-plan", default="auto", choices=["auto", *memory_plans.plan_names()],
                        help="where the weights live: auto (from free GPU memory), " + ", ".join(
                            f"{plan.name} ({plan.help})" for plan in memory_plans.PLANS))


def add_speed_and_start_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fast``, ``--step-cache`` and the flags of a starting image (img2img, inpaint with A1111's inpaint options,
    outpaint)."""
    from masuka.image.tasks import MAX_SIDE_PADDING, ONLY_MASKED_PADDING, InitImage

    parser.add_argument("--fast", action="store_true",
                        help="the fast path: compiled blocks, fused QKV, fp8 where the GPU has it, LoRA hotswap")
    parser.add_argument("--step-cache", type=float, default=0.0, metavar="THRESHOLD",
                        help="with --fast: first-block cache threshold, 0 = off; higher is faster and rougher")
    parser.add_argument("--sampler", default="", metavar="NAME",
                        help="an A1111 sampler name, e.g. 'Euler a', 'DPM++ 2M Karras' (SDXL) or 'Euler Karras' "
                             "(flow-matching models); default: the model's own scheduler")
    parser.add_argument("--init-image", metavar="PATH",
                        help="start from this image (image-to-image); the size defaults to its size")
    parser.add_argument("--strength", type=float, help="with --init-image: how far the result may move from it, "
                                                        f"0-1 (default {default_of(InitImage, 'strength')})")
    parser.add_argument("--mask", metavar="PATH", help="with --init-image: repaint only the white part (inpaint)")
    parser.add_argument("--mask-blur", type=int, metavar="PX", help="with --mask or --outpaint: soften the mask "
                        f"edge by this many pixels (default {default_of(InitImage, 'mask_blur')})")
    parser.add_argument("--invert-mask", action="store_true", default=None,
                        help="with --mask: repaint what the mask leaves black (A1111's Mask mode: Inpaint not masked)")
    parser.add_argument("--fill-masked", action="store_true", default=None,
                        help="with --mask: start the masked part from the surrounding colours (A1111's Masked "
                             "content: fill; default: the original)")
    parser.add_argument("--only-masked", type=int, nargs="?", const=ONLY_MASKED_PADDING, metavar="PX",
                        help="with --mask: repaint a crop around the mask with PX pixels of margin, 0-"
                             f"{MAX_SIDE_PADDING} (default {ONLY_MASKED_PADDING}), at full size (A1111's Inpaint "
                             "area: Only masked; default: the whole picture)")
    parser.add_argument("--outpaint", metavar="L,R,T,B",
                        help="with --init-image: grow the canvas by these pixels per side (left,right,top,bottom) "
                             "and fill the new area; the size is the picture plus the padding, rounded up to the "
                             "model's multiple on the right and bottom")


def cli_lora(text: str) -> tuple[str, float]:
    """``--lora`` as :func:`~masuka.image.generate.parse_lora` reads it, a file relative to this directory made
    absolute (:func:`local_lora`)."""
    from masuka.image.generate import parse_lora

    return parse_lora(local_lora(text))


def local_lora(text: str) -> str:
    """A LoRA as written (``REF`` or ``REF:WEIGHT``), a file named relative to this directory made absolute: a
    queued job resolves it later, in the app's own directory."""
    from masuka.validation import weighted

    ref, weight = weighted(text.strip(), "LoRA", lambda name: name.endswith(".safetensors"))
    path = Path(ref).expanduser()
    if path.is_absolute() or not path.is_file():
        return text
    return str(path.resolve()) + ("" if weight is None else text.strip()[len(ref):])


def flags_request(args: argparse.Namespace) -> ImageRequest:
    """The :class:`~masuka.image.generate.ImageRequest` the flags of :func:`add_request_arguments` describe, short of
    the checks that need the model (:func:`checked_size`): a combination of flags it refuses is refused before any
    studio is opened (and its data folder made)."""
    from masuka.errors import InvalidInput
    from masuka.image.control import parse_control
    from masuka.image.generate import ImageRequest
    from masuka.image.outpaint import parse_outpaint
    from masuka.image.reference import parse_reference
    from masuka.image.tasks import InitImage

    if args.mask and not args.init_image:
        raise InvalidInput("--mask needs --init-image: the picture the mask belongs to.")
    if args.outpaint and not args.init_image:
        raise InvalidInput("--outpaint needs --init-image: the picture to extend.")
    refuse_without(args, ("strength",), "init_image")
    refuse_without(args, ("mask_blur",), "mask", "outpaint")
    refuse_without(args, ("invert_mask", "fill_masked", "only_masked"), "mask")
    refuse_without(args, ("face_strength",), "face_detail")
    refuse_without(args, ("controlnet",), "control")
    init = None if not args.init_image else InitImage(args.init_image, mask=args.mask,
                                                      outpaint=parse_outpaint(args.outpaint),
                                                      only_masked_padding=args.only_masked,
                                                      **given(args, "strength", "mask_blur", "invert_mask",
                                                              "fill_masked"))
    return ImageRequest(
        prompt=args.prompt or "", model=args.model, negative_prompt=args.negative_prompt,
        steps=args.steps, guidance=args.guidance, width=args.width, height=args.height,
        seed=args.seed, batch=args.batch, loras=[cli_lora(x) for x in args.lora],
        memory_plan=args.memory_plan, fast=args.fast, step_cache=args.step_cache, init=init,
        optimize_prompt=args.optimize_prompt, safety_check=args.safety_check,
        face_detail=args.face_detail, **given(args, "face_strength"), sampler=args.sampler,
        controls=[parse_control(x, args.controlnet or "") for x in args.control],
        style_references=[parse_reference(x) for x in args.reference])


def checked_size(studio: Studio, request: ImageRequest) -> ImageRequest:
    """``request``; an inpaint's width and height, when given, must be the picture's own size or its default one
    (its own, rounded to the model's multiple) and are left to that default; any other size is refused: only
    there does the rest of the picture come back as it was (the UI leaves them out alike; the A1111 route
    resizes)."""
    from masuka.errors import InvalidInput
    from masuka.image.generate import image_spec
    from masuka.image.limits import MAX_SIDE, MIN_SIDE
    from masuka.image.tasks import init_size, seen_size

    init, given = request.init, (request.width, request.height)
    if init is None or init.mask is None or init.outpaint is not None or given == (None, None):
        return request
    spec = image_spec(studio, request.owner, request.model)
    default = init_size(init, spec.size_multiple, MIN_SIDE, MAX_SIDE, spec.pixels)
    own = seen_size(init.path, "init image")
    if all(value in (None, mine, rounded) for value, mine, rounded in zip(given, own, default)):
        return replace(request, width=None, height=None)
    size = f"{own[0]}x{own[1]}" + ("" if own == default else
                                   f", run at {default[0]}x{default[1]}: a multiple of {spec.size_multiple}")
    got = " ".join(f"--{name} {value}" for name, value in zip(("width", "height"), given) if value is not None)
    raise InvalidInput(f"Inpainting makes an image of the picture's size ({size}) so the rest comes back as it was; "
                       f"leave out --width and --height or give that size (got {got}).")


def run(args: argparse.Namespace) -> int:
    request = flags_request(args)
    studio = open_studio(args)
    return run_request(args, studio, checked_size(studio, request))


def run_request(args: argparse.Namespace, studio: Studio, request: ImageRequest) -> int:
    """Make the images of ``request`` with progress on stderr; print generate's result (``images, seeds, ids``).
    Ctrl-C (or SIGTERM, SIGHUP) prints the same result for the images finished before it, with ``status:
    interrupted`` and the image it stopped (``cancelled``), then ends the command as an interrupt (exit code 130; 128
    plus the signal's number for another signal)."""
    from masuka.image.generate import generate_images, used_prompt

    last = [-1]

    def on_step(index: int, step: int, total: int) -> None:
        if step in (1, total) or step - last[0] >= max(1, total // 10):
            last[0] = step
            progress_line(args, f"image {index + 1}/{request.batch} step {step}/{total}")

    try:
        results = generate_images(studio, request, on_step=on_step, allow_any_path=True,
                                  on_download=download_progress(args),
                                  on_image=lambda r: progress_line(args, f"saved {r.path} (seed {r.seed})"))
    except KeyboardInterrupt as interrupt:
        emit_interrupted(args, studio, request, interrupt)
        raise
    optimized = used_prompt(results[0]) if request.optimize_prompt and results else None
    emit_images(args, studio, [(r.id, r.path, r.seed) for r in results], optimized)
    return 0


def emit_images(args: argparse.Namespace, studio: Studio, made: list[tuple[int, Path, int]], optimized: str | None,
                **extra: Any) -> None:
    """Print the images ``made`` (id, file, seed), with what the safety check found (None where it did not run) and
    the optimized prompt, when there is one; ``extra`` keys go into the JSON only."""
    from masuka.image.safety import flag_note

    safety = [(studio.store.get("generations", row_id)["params"] or {}).get("safety") for row_id, _path, _seed in made]
    prompt = {"optimized_prompt": optimized} if optimized is not None else {}
    checked = {"safety": safety} if any(safety) else {}
    lines = [*([f"prompt: {optimized}"] if prompt else []),
             *(" ".join(filter(None, (str(path), flag_note(s)))) for (_id, path, _seed), s in zip(made, safety))]
    emit(args, {"images": [str(path) for _id, path, _seed in made], "seeds": [seed for _id, _path, seed in made],
                "ids": [row_id for row_id, _path, _seed in made], **prompt, **checked, **extra},
         "\n".join(lines) if lines else None)


def emit_interrupted(args: argparse.Namespace, studio: Studio, request: ImageRequest,
                     interrupt: KeyboardInterrupt) -> None:
    """What a batch stopped by Ctrl-C or a signal (``interrupt``) made, as its rows record it (this process's rows:
    an image saved as the interrupt came counts, though its result never came back): the images finished,
    ``status: interrupted`` and the image being made, recorded ``cancelled`` (``cancelled``: its id and seed)."""
    rows = studio.store.find("generations", "holder = ?", [studio.runner().token], order_by="id")
    done = [row for row in rows if row["status"] == "completed" and row["output_path"]]
    stopped = [{"id": row["id"], "seed": row["seed"]} for row in rows if row["status"] == "cancelled"]
    progress_line(args, f"stopped with {interrupted_with(interrupt)}: {len(done)} of {request.batch} image(s) made"
                  + "".join(f"; image with seed {each['seed']} cancelled" for each in stopped))
    optimized = done[0]["prompt"] if request.optimize_prompt and done else None
    emit_images(args, studio, [(row["id"], studio.config.absolute(row["output_path"]), row["seed"]) for row in done],
                optimized, status="interrupted", cancelled=stopped)
