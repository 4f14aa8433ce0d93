"""``python -m masuka doctor``: the installed core libraries, whether they fit requirements.txt's ranges and
accept each other, the extras, and whether every ``MASUKA_*`` variable set holds a value MASUKA can use."""

from __future__ import annotations

import argparse

from masuka.cli import emit

CORE = ("torch", "diffusers", "transformers", "peft", "accelerate", "gradio", "huggingface-hub")


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("doctor", parents=[common],
                            help="check the install: library versions, run-time conflicts, optional extras")
    parser.add_argument("--against", metavar="LOCK",
                        help="also list installed packages whose version differs from this lock file (exit 2 if any)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from masuka.compat import installed, moved, problems, range_problems
    from masuka.config import Config
    from masuka.environment import check_environment
    from masuka.errors import InvalidInput, reason
    from masuka.extras import extras

    try:
        lock = Path(args.against).read_text(encoding="utf-8") if args.against else None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"The lock file {args.against} cannot be read ({reason(error)}).") from None
    versions = {name: installed(name) for name in CORE}
    found = range_problems(CORE) + problems()
    # what serve reads first (its folders are not made), then the variables read at first use
    for check in (lambda: Config.read_env(args.data_dir), lambda: check_environment(probe_device=True)):
        try:
            check()
        except InvalidInput as error:
            found.append(str(error))
    device, cuda = describe_device()
    optional = [{"name": e.name, "version": e.version, "enables": e.enables,
                 "unusable": "needs CUDA, not found" if e.version and e.needs_cuda and not cuda else None}
                for e in extras()]
    lines = [f"{name:<16} {version or 'not installed'}" for name, version in versions.items()]
    lines.append(f"{'device':<16} {device}")
    lines += [f"problem: {text}" for text in found] or ["no version conflicts"]
    drift = moved(lock) if lock is not None else []
    lines += [f"moved since the lock: {line}" for line in drift]
    lines += [f"extra {e['name']:<12} {e['version'] or '-':<10} {e['enables']}"
              + (f" (installed; {e['unusable']})" if e["unusable"] else "") for e in optional]
    emit(args, {"versions": versions, "device": device, "problems": found, "extras": optional, "moved": drift},
         "\n".join(lines))
    return 2 if found or drift else 0


def describe_device() -> tuple[str, bool]:
    """What models run on, in words (the GPU's name and memory), and whether torch finds a CUDA device."""
    from masuka.errors import InvalidInput
    from masuka.gpu import usable_device

    try:
        import torch
    except ImportError:
        return "unknown (torch is not installed)", False
    cuda = torch.cuda.is_available()
    found = "cuda" if cuda else "mps" if torch.backends.mps.is_available() else None
    try:
        device = usable_device()
    except InvalidInput:  # MASUKA_DEVICE names a device that is not there: listed among the problems
        device = found or "cpu"
    if device == "cuda":
        card = torch.cuda.get_device_properties(torch.cuda.current_device())
        return f"cuda: {card.name}, {card.total_memory / 2**30:.0f} GB", cuda
    if device == "mps":
        return "mps (Apple GPU)", cuda
    if found:
        return f"cpu (MASUKA_DEVICE=cpu, though {found} was found)", cuda
    return "cpu (no CUDA or MPS found: generation will be slow)", cuda
