"""``python -m masuka edit``: change one or more images as a prompt says, with an edit model."""

from __future__ import annotations

import argparse

from masuka.cli import local_or_named, open_studio
from masuka.commands.generate import add_sampling_arguments, cli_lora, run_request


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("edit", parents=[common], help="edit images with words (FLUX.1 Kontext, Qwen-Image-Edit, "
                                                           "FLUX.2)")
    parser.add_argument("--model", required=True, type=local_or_named,
                        help="an edit model: catalog id (flux-kontext-dev, qwen-image-edit-2509, flux2-klein-4b, ...), "
                             "diffusers repo id or local pipeline folder")
    parser.add_argument("--image", action="append", required=True, metavar="PATH",
                        help="an image to edit or take from; repeat for models that take several")
    parser.add_argument("--prompt", required=True, help="the instruction: what to change")
    add_sampling_arguments(parser, size_default="the first image's, rounded to the model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.image.generate import ImageRequest

    request = ImageRequest(prompt=args.prompt, model=args.model, negative_prompt=args.negative_prompt,
                           steps=args.steps, guidance=args.guidance, width=args.width, height=args.height,
                           seed=args.seed, batch=args.batch, loras=[cli_lora(x) for x in args.lora],
                           memory_plan=args.memory_plan, references=list(args.image))
    return run_request(args, open_studio(args), request)
