"""``python -m masuka runs``: training runs, newest first."""

from __future__ import annotations

import argparse

from masuka.cli import emit, open_studio


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("runs", parents=[common], help="list training runs")
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from masuka.training.runs import list_runs

    runs = list_runs(open_studio(args), limit=args.limit)
    lines = [f"{r['run']:>5}  {r['status']:<11} {r['step']:>6}/{r['total']:<6} {r['title']}"
             + (f"  loss {r['final_loss']:.4f}" if r["final_loss"] is not None else "")
             + (f"  {r['lora']}" if r["lora"] else "") + (f"  ({r['error']})" if r["error"] else "") for r in runs]
    emit(args, {"runs": runs}, "\n".join(lines) or "no training runs yet")
    return 0
