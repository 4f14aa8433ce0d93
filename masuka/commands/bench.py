"""``python -m masuka bench KIND``: measure speed and memory on this machine; results are kept in the store."""

from __future__ import annotations

import argparse
import importlib
import json

from masuka.cli import emit, open_studio


def register(sub, common: argparse.ArgumentParser) -> None:
    from masuka.bench import KINDS

    parser = sub.add_parser("bench", parents=[common], help="benchmarks")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in KINDS:
        module = importlib.import_module(f"masuka.bench.{kind}")
        summary = " ".join((module.__doc__ or "").split("\n\n")[0].split())
        kind_parser = kinds.add_parser(kind, parents=[common], help=summary)
        module.add_arguments(kind_parser)
        kind_parser.set_defaults(handler=run, bench=module)


def run(args: argparse.Namespace) -> int:
    from masuka.bench import machine

    if getattr(args.bench, "STANDALONE", False):  # writes its own files; needs no data dir or database
        report = args.bench.run(None, args)
        emit(args, report, args.bench.markdown(report))
        return args.bench.exit_status(report)
    studio = open_studio(args)
    figures = args.bench.run(studio, args)
    params = {k: v for k, v in vars(args).items() if k not in ("handler", "bench", "json", "data_dir", "command")}
    row = {"kind": args.kind, "params": params, "figures": figures, "machine": machine()}
    row["id"] = studio.store.insert("bench_results", row)
    emit(args, row, f"{args.kind} on {row['machine']}:\n" + json.dumps(figures, indent=2))
    return args.bench.exit_status(figures) if hasattr(args.bench, "exit_status") else 0
