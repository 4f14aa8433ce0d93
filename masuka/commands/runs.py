"""``python -m masuka runs``: training runs, newest first; ``runs stop`` stops one (a remote one at its service
too), ``runs compare`` renders a run's checkpoints side by side, ``runs use`` keeps one of them in the LoRA
library."""

from __future__ import annotations

import argparse

from masuka.cli import at_least, emit, open_studio, progress_line
from masuka.store import LOCAL_USER


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("runs", parents=[common], help="training runs (no action: list them)")
    parser.add_argument("--limit", type=at_least(1), default=50, help="at most this many (default 50)")
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    stop = actions.add_parser("stop", parents=[common],
                              help="stop a run: checkpoint first (unless --discard); a remote job is cancelled at "
                                   "its service, also one a Ctrl-C left running there")
    stop.add_argument("run", type=int, help="the training run")
    stop.add_argument("--discard", action="store_true", help="save no checkpoint")
    stop.set_defaults(handler=run_stop)
    compare = actions.add_parser("compare", parents=[common],
                                 help="render every checkpoint of a run with the same prompts and seed (a grid)")
    compare.add_argument("run", type=int, help="the training run")
    compare.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                         help="a prompt (one grid row each); repeatable; default: the run's sample prompts")
    compare.add_argument("--seed", type=int, help="the seed of every cell (default: one random seed)")
    compare.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    compare.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    compare.add_argument("--width", type=int, help="pixels (default: the model's)")
    compare.add_argument("--height", type=int, help="pixels (default: the model's)")
    compare.add_argument("--sampler", default="", metavar="NAME", help="an A1111 sampler name (default: the model's)")
    compare.add_argument("--yes", action="store_true", help="allow more than 64 cells")
    compare.add_argument("--queue", action="store_true", help="add the comparison to the queue as one grid job")
    compare.set_defaults(handler=run_compare)
    use = actions.add_parser("use", parents=[common],
                             help="keep a run's checkpoint in the LoRA library, its step in the name")
    use.add_argument("run", type=int, help="the training run")
    use.add_argument("--step", type=int, required=True, help="the checkpoint's step (see runs compare)")
    use.set_defaults(handler=run_use)


def run(args: argparse.Namespace) -> int:
    from masuka.training.runs import list_runs

    studio = open_studio(args)
    runs = [{**r, "lora": r["lora"] and str(studio.config.absolute(r["lora"]))}
            for r in list_runs(studio, limit=args.limit)]
    lines = [f"{r['run']:>5}  {r['status']:<11} {r['step']:>6}/{r['total']:<6} {r['title']}"
             + (f"  loss {r['final_loss']:.4f}" if r["final_loss"] is not None else "")
             + (f"  {r['lora']}" if r["lora"] else "") + (f"  ({r['error']})" if r["error"] else "") for r in runs]
    emit(args, {"runs": runs}, "\n".join(lines) or "no training runs yet")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    from masuka.training.runs import request_stop

    status = request_stop(open_studio(args), args.run, discard=args.discard)
    stopping = status["status"] in ("queued", "running")
    emit(args, {"run": status["run"], "status": status["status"]},
         f"run {status['run']} " + ("stopping" if stopping else status["status"]))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from masuka.image.generate import ImageRequest
    from masuka.image.grid import run_grid
    from masuka.training.checkpoint_lora import plan_comparison

    studio = open_studio(args)
    base = ImageRequest(prompt="", model="", steps=args.steps, guidance=args.guidance, width=args.width,
                        height=args.height, seed=args.seed, sampler=args.sampler)
    plan = plan_comparison(studio, args.run, args.prompt, base, admin=True, confirm_large=args.yes)
    if args.queue:
        from masuka.queue.jobs import queue_cells

        job = queue_cells(studio, plan.cells[0].request, plan.axes, plan.cells)
        emit(args, {"jobs": [job], "checkpoints": plan.steps}, f"queued job {job}")
        return 0
    progress_line(args, f"checkpoints at steps {', '.join(map(str, plan.steps))}: {len(plan.cells)} cells")
    result = run_grid(studio, plan.axes, plan.cells, on_image=lambda r: progress_line(args, f"saved {r.path}"))
    emit(args, {"grid": str(result.grid), "images": [str(r.path) for r in result.images],
                "ids": [r.id for r in result.images], "checkpoints": plan.steps}, str(result.grid))
    return 0


def run_use(args: argparse.Namespace) -> int:
    from masuka.training.checkpoint_lora import use_checkpoint

    kept = use_checkpoint(open_studio(args), args.run, args.step, LOCAL_USER, admin=True)
    emit(args, kept, f"{kept['lora']} (in the LoRA library as {kept['name']!r})")
    return 0
