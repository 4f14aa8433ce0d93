"""``python -m masuka generate``: text-to-image, recorded in history like the UI."""

from __future__ import annotations

import argparse

from masuka.cli import emit, open_studio, progress_line
from masuka.gpu import MEMORY_PLAN_HELP


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("generate", parents=[common], help="generate images from a prompt")
    parser.add_argument("--model", required=True, help="catalog id, diffusers repo id or local pipeline folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--seed", type=int, help="fixed seed (default: random)")
    parser.add_argument("--batch", type=int, default=1, help="images, 1-4 (seeds seed, seed+1, …)")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]",
                        help="a LoRA file or library name, with an optional weight; repeatable")
    parser.add_argument("--memory-plan", default="auto", choices=["auto", *MEMORY_PLAN_HELP],
                        help="where the weights live: auto (from free GPU memory), " + ", ".join(
                            f"{name} ({text})" for name, text in MEMORY_PLAN_HELP.items()))
    parser.add_argument("--fast", action="store_true",
                        help="the fast path: compiled blocks, fused QKV, fp8 where the GPU has it, LoRA hotswap")
    parser.add_argument("--step-cache", type=float, default=0.0, metavar="THRESHOLD",
                        help="with --fast: first-block cache threshold, 0 = off; higher is faster and rougher")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.image.generate import ImageRequest, generate_images, parse_lora

    studio = open_studio(args)
    request = ImageRequest(prompt=args.prompt, model=args.model, negative_prompt=args.negative_prompt,
                           steps=args.steps, guidance=args.guidance, width=args.width, height=args.height,
                           seed=args.seed, batch=args.batch, loras=[parse_lora(x) for x in args.lora],
                           memory_plan=args.memory_plan, fast=args.fast, step_cache=args.step_cache)
    last = [-1]

    def on_step(index: int, step: int, total: int) -> None:
        if step in (1, total) or step - last[0] >= max(1, total // 10):
            last[0] = step
            progress_line(args, f"image {index + 1}/{request.batch} step {step}/{total}")

    results = generate_images(studio, request, on_step=on_step, allow_any_path=True,
                              on_image=lambda r: progress_line(args, f"saved {r.path} (seed {r.seed})"))
    emit(args, {"images": [str(r.path) for r in results], "seeds": [r.seed for r in results],
                "ids": [r.id for r in results]},
         "\n".join(str(r.path) for r in results))
    return 0
