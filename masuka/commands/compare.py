"""``python -m masuka compare``: blind A/B tests of two LoRA sets (or a LoRA and none) — create, judge, tally."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from masuka.cli import emit, open_studio, progress_line, user_option
from masuka.commands.generate import add_request_arguments, checked_size, cli_lora, flags_request, one_prompt_source
from masuka.errors import InvalidInput


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("compare", parents=[common],
                            help="blind A/B tests")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="render the pairs of a new A/B test")
    add_request_arguments(create, prompt_required=False)
    create.add_argument("--prompts-file", type=Path, metavar="FILE", help="one prompt a line")
    for side in ("a", "b"):
        create.add_argument(f"--{side}", action="append", default=[], metavar="LORA[:WEIGHT]",
                            help=f"a LoRA of side {side.upper()}, repeatable; none given = no LoRA")
    create.add_argument("--seeds", type=int, default=4, help="seeds per prompt (pairs = prompts x seeds)")
    create.set_defaults(handler=run_create)
    for name, text in (("next", "the next pair to judge"), ("tally", "wins, ties and A's win rate")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id", type=int)
        action.set_defaults(handler=run_show)
    judge = actions.add_parser("vote", parents=[common], help="judge a pair: left, right or tie")
    judge.add_argument("id", type=int)
    judge.add_argument("pair", type=int)
    judge.add_argument("pick", choices=["left", "right", "tie"])
    judge.set_defaults(handler=run_vote)
    listing = actions.add_parser("list", parents=[common], help="your A/B tests")
    listing.set_defaults(handler=run_list)
    remove = actions.add_parser("delete", parents=[common], help="forget an A/B test (its images stay in History)")
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=run_delete)
    user_option(actions, "A/B tests")


def run_create(args: argparse.Namespace) -> int:
    """Render the pairs; Ctrl-C or SIGTERM stops between steps, stores the pairs finished so far as the test and
    exits 130."""
    from masuka.commands.train import interrupt_on_signals
    from masuka.image.compare import StoppedTest, create_ab
    from masuka.image.prompts import prompt_lines

    one_prompt_source(args)
    if args.prompts_file:
        try:
            prompts = prompt_lines(args.prompts_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"Cannot read the prompts file {args.prompts_file}: {error}.") from None
    else:
        prompts = [args.prompt]
    request = replace(flags_request(args), owner=args.user)
    studio = open_studio(args)
    try:
        comparison = create_ab(studio, checked_size(studio, request), [cli_lora(x) for x in args.a],
                               [cli_lora(x) for x in args.b], prompts, args.seeds, allow_any_path=True,
                               on_image=lambda r: progress_line(args, f"saved {r.path}"), stop=interrupt_on_signals())
    except StoppedTest as stopped:
        progress_line(args, str(stopped))
        emit(args, {"comparison": stopped.comparison, "stopped": str(stopped)},
             None if stopped.comparison is None else _judge_line(stopped.comparison))
        return 130
    emit(args, {"comparison": comparison}, _judge_line(comparison))
    return 0


def _judge_line(comparison: int) -> str:
    return f"comparison {comparison}: judge it with `compare next {comparison}`"


def run_show(args: argparse.Namespace) -> int:
    from masuka.image.compare import describe_tally, next_pair, nothing_left, tally

    studio = open_studio(args)
    if args.action == "next":
        pair = next_pair(studio, args.user, args.id)
        emit(args, {"pair": pair}, nothing_left(studio, args.user, args.id) if pair is None else
             f"pair {pair['index']} ({pair['remaining']} left): {pair['prompt']}\n  left:  {pair['left']}\n"
             f"  right: {pair['right']}")
        return 0
    result = tally(studio, args.user, args.id)
    emit(args, result, describe_tally(result))
    return 0


def run_vote(args: argparse.Namespace) -> int:
    from masuka.image.compare import describe_tally, vote

    result = vote(open_studio(args), args.user, args.id, args.pair, args.pick)
    emit(args, result, describe_tally(result))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from masuka.image.compare import list_comparisons

    rows = list_comparisons(open_studio(args), args.user)
    emit(args, {"comparisons": rows}, "\n".join(f"{r['id']:>4} {r['title']}  ({r['model']})" for r in rows)
         or "no comparisons")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from masuka.image.compare import delete_comparison

    delete_comparison(open_studio(args), args.user, args.id)
    emit(args, {"deleted": args.id}, f"comparison {args.id} deleted; its images stay in History")
    return 0
