"""``python -m masuka train``: train a LoRA on a dataset, with progress on stderr; ``--resume`` continues a run.

SIGINT/SIGTERM/SIGHUP save a checkpoint and mark the run ``interrupted`` (a remote run goes on at its service and
the app follows it again when it starts); a SIGHUP ignored when the command starts (``nohup``) stays ignored.
``--gpus N`` re-launches a local run data-parallel through ``accelerate launch --num_processes N``: the signals
are forwarded to its processes, and on Linux they are interrupted the same way when the command itself dies
(killed, say), so no training goes on detached.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from masuka import jobs
from masuka.cli import emit, local_or_named, open_studio, progress_line
from masuka.errors import InvalidInput
from masuka.training.backends import BACKENDS, LOCAL
from masuka.training.options import OPTIMIZERS, PRESETS, SCHEDULERS, TrainOptions

POLL_S = 0.2


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("train", parents=[common], help="train a LoRA on a dataset")
    parser.add_argument("--resume", type=int, metavar="RUN_ID",
                        help="continue a stopped or interrupted run, with the options it was created with")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)  # a worker of a multi-GPU launch
    parser.add_argument("--launched-by", type=int, help=argparse.SUPPRESS)  # that launch's ``train --gpus N`` pid
    # left out, a run option is absent from the namespace: TrainOptions' default applies, and --resume sees
    # which ones were given
    group = parser.add_argument_group("run options (not with --resume)", argument_default=argparse.SUPPRESS)
    flags = {action.dest: action.option_strings[0] for action in (
        group.add_argument("--backend", choices=BACKENDS,
                           help="where it trains: this GPU (local, the default) or a remote service (fal, replicate)"),
        group.add_argument("--destination", metavar="OWNER/MODEL",
                           help="replicate: your model that receives the trained LoRA"),
        group.add_argument("--dataset", help="dataset name (Datasets tab) or id"),
        group.add_argument("--base", type=local_or_named,
                           help="base model: catalog id, diffusers repo id or local pipeline folder"),
        group.add_argument("--steps", type=int, help="default 1000"),
        group.add_argument("--preset", choices=list(PRESETS), help="GPU memory preset"),
        group.add_argument("--rank", type=int, help="default 16"),
        group.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank)"),
        group.add_argument("--lr", type=float, help="learning rate (default 1e-4)"),
        group.add_argument("--batch-size", type=int),
        group.add_argument("--grad-accum", type=int, help="gradient accumulation steps (default 1)"),
        group.add_argument("--resolution", type=int, help="training side in pixels (images go to aspect buckets)"),
        group.add_argument("--optimizer", choices=list(OPTIMIZERS), help="default adamw"),
        group.add_argument("--scheduler", choices=list(SCHEDULERS),
                           help="LR scheduler (default constant; with warm-up steps, constant_with_warmup)"),
        group.add_argument("--warmup-steps", type=int, help="default 0"),
        group.add_argument("--caption-dropout", type=float, help="default 0.05"),
        group.add_argument("--seed", type=int, help="default 42; -1 draws one"),
        group.add_argument("--sample-prompt", dest="sample_prompts", action="append", metavar="TEXT",
                           help="repeatable"),
        group.add_argument("--sample-every", type=int, help="sample images every K steps (0: never, the default)"),
        group.add_argument("--sample-steps", type=int, help="inference steps of each sample"),
        group.add_argument("--save-every", type=int, help="checkpoint every K steps (0: only at the end; default 250)"),
        group.add_argument("--keep-last", type=int, help="checkpoints kept (default 2)"),
        group.add_argument("--train-text-encoder", action="store_true", help="also train text-encoder LoRA (SDXL)"),
        group.add_argument("--name", help="LoRA file name (default: dataset-architecture-runN)"),
        group.add_argument("--push-to-hub", metavar="REPO", help="upload to this private Hub repo"),
        group.add_argument("--gpus", type=int, help="data-parallel processes (accelerate launch; default 1)"),
    )}
    parser.set_defaults(handler=run, run_flags=flags)


def options_from(args: argparse.Namespace) -> TrainOptions:
    given = {name: getattr(args, name) for name in TrainOptions.__dataclass_fields__ if hasattr(args, name)}
    if not given.get("dataset") or not given.get("base"):
        raise InvalidInput("train needs --dataset and --base (or --resume RUN_ID).")
    return TrainOptions(**given)


def run(args: argparse.Namespace) -> int:
    from masuka.training.runs import create_run, resume_run, submit_run

    given = [flag for dest, flag in args.run_flags.items() if hasattr(args, dest)]
    if args.resume is not None and given:
        raise InvalidInput(f"--resume continues run {args.resume} with the options it was created with: leave out "
                           f"{', '.join(given)}, or start a new run to change them.")
    studio = open_studio(args)
    if args.run:
        return _worker(studio, args.run, args.launched_by)
    if args.resume is not None:
        run_id = resume_run(studio, args.resume, submit=False)
    else:
        options = options_from(args)
        backend = getattr(args, "backend", LOCAL)
        if backend != LOCAL:
            from masuka.training.backends.remote import price_line

            progress_line(args, price_line(backend, options.base, options.steps))
        run_id = create_run(studio, options, backend=backend, destination=getattr(args, "destination", ""))
    params = jobs.get(studio.store, run_id).params
    gpus = params.get("gpus", 1) if params.get("backend", LOCAL) == LOCAL else 1  # remote: the service's GPUs
    interrupt = interrupt_on_signals()
    if gpus > 1:
        child = subprocess.Popen(_launch_command(args, run_id, gpus), start_new_session=True,
                                 preexec_fn=_signal_when_parent_dies(_is_parent(os.getpid()), before_exec=True))
        interrupt_child = threading.Thread(target=_forward, args=(interrupt, child), daemon=True)
        interrupt_child.start()
        row = _follow(studio, args, run_id, child.poll, interrupt)
        if child.wait() != 0 and row["status"] in ("queued", "running"):
            jobs.finish(studio.store, run_id, "failed", f"the training processes exited with code "
                        f"{child.returncode}; see the messages above")
    else:
        submit_run(studio, run_id, interrupt)
        _follow(studio, args, run_id, lambda: None, interrupt)
    return _report(studio, args, run_id)


def _worker(studio, run_id: int, command: int | None) -> int:
    """One process of ``accelerate launch``: rank 0 owns the row through the job runner, the others just train."""
    from masuka.training.runs import RunContext, execute_run, submit_run

    interrupt = interrupt_on_signals()
    _die_with_launcher(command)  # the launcher killed outright: this process saves and ends too
    if int(os.environ.get("RANK", "0")) == 0:
        submit_run(studio, run_id, interrupt)
        studio.runner().wait(run_id)
    else:
        execute_run(studio, RunContext(studio.store, run_id, interrupt), main=False)
    return 0


def _launch_command(args: argparse.Namespace, run_id: int, gpus: int) -> list[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), "-m", "masuka", "train", "--run", str(run_id), "--launched-by", str(os.getpid()), *data_dir]


def interrupt_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed) set from now on, for work that stops
    between steps, instead of an exception wherever the main thread happens to be. A SIGHUP ignored at the call
    (``nohup``) stays ignored: the work goes on when the terminal closes."""
    event = threading.Event()
    for number in INTERRUPTING:
        if number == getattr(signal, "SIGHUP", None) and signal.getsignal(number) == signal.SIG_IGN:
            continue
        signal.signal(number, lambda *_: event.set())
    return event


INTERRUPTING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
PR_SET_PDEATHSIG = 1


def _is_parent(pid: int) -> Callable[[], bool]:
    return lambda: os.getppid() == pid


def _parent_of(pid: int) -> int | None:
    """The parent pid of process ``pid`` (from /proc), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _die_with_launcher(command: int | None) -> None:
    """In a worker of ``train --gpus N``: be interrupted when the ``accelerate launch`` process that started it
    dies (and so when the command dies, which ends that process). Whether it already died during this process's
    start-up (seconds of imports) is told by the pid of the command (``--launched-by``), not by a parent pid read
    late (it would name whichever process adopted this one): the parent must still be the command's child."""
    if command is not None:
        _signal_when_parent_dies(lambda: _parent_of(os.getppid()) == command)()
    else:  # started by hand: the parent it has now
        _signal_when_parent_dies(_is_parent(os.getppid()))()


def _signal_when_parent_dies(parent_alive: Callable[[], bool], before_exec: bool = False) -> Callable[[], None]:
    """A function that asks Linux to send the calling process SIGTERM when its parent dies, however it dies
    (SIGKILL included); does nothing elsewhere. ``parent_alive`` tells, once the request is made, whether the
    parent meant is still the parent. One already gone ends a process about to exec (``before_exec``: as
    ``preexec_fn``, where it is one system call) at once, and sends any other the SIGTERM itself."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if not parent_alive():  # it died before the request was made
            if before_exec:
                os._exit(1)
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _forward(interrupt: threading.Event, child: subprocess.Popen) -> None:
    interrupt.wait()
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)


def _follow(studio, args: argparse.Namespace, run_id: int, exited, interrupt: threading.Event) -> dict:
    """Print new log lines and step progress until the run leaves queued/running (or its processes exit).

    A signal while the run is still queued marks it ``interrupted`` at once; one while it waits for the GPU is
    seen by the run itself within a fraction of a second (there is nothing to save either way).
    """
    last_line, printed_step = None, -1
    while True:
        row = jobs.get(studio.store, run_id)
        lines = (row["log"] or "").splitlines()
        for line in lines[lines.index(last_line) + 1:] if last_line in lines else lines:
            progress_line(args, line)
            last_line = line
        step, total = row["step"] or 0, row["total"] or 0
        if step != printed_step and (step in (1, total) or step - printed_step >= max(1, total // 20)):
            metrics = studio.store.find("job_metrics", "job_id = ? and step = ?", [run_id, step], limit=1)
            if metrics:
                m = metrics[0]
                progress_line(args, f"step {step}/{total} loss {m['loss']:.4f} lr {m['lr']:.2e} "
                                    f"{m['sec_per_step']:.2f} s/step")
                printed_step = step
        if row["status"] not in ("queued", "running") or exited() is not None:
            return row
        if interrupt.is_set() and row["status"] == "queued":
            jobs.finish(studio.store, run_id, "interrupted", "Interrupted before it started.")
            return jobs.get(studio.store, run_id)
        time.sleep(POLL_S)


def _report(studio, args: argparse.Namespace, run_id: int) -> int:
    from masuka.training.runs import run_status

    status = run_status(studio, run_id)
    if status["error"]:
        progress_line(args, f"{status['status']}: {status['error']}")
    if status["hub_error"]:
        progress_line(args, f"upload to the Hub failed: {status['hub_error']}")
    emit(args, {"run": run_id, "status": status["status"], "lora": status["lora"], "steps": status["step"],
                "final_loss": status["final_loss"]},
         f"run {run_id} {status['status']}" + (f": {status['lora']}" if status["lora"] else ""))
    return 0 if status["status"] == "completed" else 1
