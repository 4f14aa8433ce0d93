"""``python -m masuka upscale``: a picture 2x or 4x larger, by a model upscaler or by a detail upscale, recorded in
history like the UI."""

from __future__ import annotations

import argparse

from masuka.cli import emit, local_or_named, open_studio, progress_line
from masuka.commands.generate import default_of, given, refuse_without

#: the flags (by dest) that only a detail upscale reads, ``--model`` aside (the request's own checks refuse it alone)
DETAIL_FLAGS = ("strength", "prompt", "negative_prompt", "steps", "guidance", "seed")


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("upscale", parents=[common], help="upscale a picture 2x or 4x (model or detail upscale)")
    add_upscale_arguments(parser)
    parser.set_defaults(handler=run)


def add_upscale_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``upscale`` and ``queue upscale`` share."""
    from masuka.image.upscale.request import UpscaleRequest

    parser.add_argument("--image", required=True, help="the picture to upscale")
    parser.add_argument("--scale", type=int, default=2, help="2 or 4 (default 2)")
    parser.add_argument("--upscaler", default="Lanczos", metavar="NAME",
                        help="Lanczos, Nearest or a model file's name in <data dir>/upscalers (default Lanczos); "
                             "with --detail it makes the first enlargement")
    parser.add_argument("--detail", action="store_true",
                        help="then repaint tile by tile with --model at a low --strength (A1111's SD upscale)")
    parser.add_argument("--model", type=local_or_named,
                        help="with --detail: catalog id, diffusers repo id or local pipeline folder")
    parser.add_argument("--strength", type=float,
                        help=f"with --detail: 0-1 (default {default_of(UpscaleRequest, 'strength')})")
    parser.add_argument("--prompt", help="with --detail: what the picture shows (default: its own prompt)")
    parser.add_argument("--negative-prompt", help="with --detail: what to keep out")
    parser.add_argument("--steps", type=int, help="with --detail: denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="with --detail: guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, help="with --detail: seed of the first tile, +1 per tile (default: random)")
    parser.add_argument("--tile", type=int, metavar="PX",
                        help="tile size: input pixels for a model (default 512, 0 = whole picture at once), output "
                             "pixels for --detail (default: the model's native size)")
    parser.add_argument("--overlap", type=int, metavar="PX", help="pixels tiles share and blend over "
                                                                    "(default 32; 64 for --detail)")


def upscale_request(args: argparse.Namespace):
    """The :class:`~masuka.image.upscale.request.UpscaleRequest` the flags of :func:`add_upscale_arguments` describe;
    a flag of a detail upscale without ``--detail``, and what the request's own studio-free checks refuse, are
    refused before any studio is opened."""
    from masuka.image.upscale.request import UpscaleRequest, check_choices

    refuse_without(args, DETAIL_FLAGS, "detail")
    request = UpscaleRequest(image=args.image, scale=args.scale, upscaler=args.upscaler, detail=args.detail,
                             model=args.model, tile=args.tile, overlap=args.overlap, **given(args, *DETAIL_FLAGS))
    check_choices(request)
    return request


def run(args: argparse.Namespace) -> int:
    from masuka.image.upscale.job import upscale_image

    request = upscale_request(args)
    results = upscale_image(open_studio(args), request, allow_any_path=True,
                            on_tile=lambda done, total: progress_line(args, f"tile {done}/{total}"))
    emit(args, {"images": [str(r.path) for r in results], "seeds": [r.seed for r in results],
                "ids": [r.id for r in results]}, "\n".join(str(r.path) for r in results))
    return 0
