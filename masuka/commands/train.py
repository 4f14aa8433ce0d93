"""``python -m masuka train``: train a LoRA on a dataset, with progress on stderr; ``--resume`` continues a run.

SIGINT/SIGTERM save a checkpoint and mark the run ``interrupted`` (a remote run goes on at its service and the
app follows it again when it starts). ``--gpus N`` re-launches the same command data-parallel through
``accelerate launch --num_processes N``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from masuka import jobs
from masuka.cli import emit, open_studio, progress_line
from masuka.errors import InvalidInput
from masuka.training.backends import BACKENDS, LOCAL
from masuka.training.options import OPTIMIZERS, PRESETS, SCHEDULERS, TrainOptions

POLL_S = 0.2


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("train", parents=[common], help="train a LoRA on a dataset")
    parser.add_argument("--backend", choices=BACKENDS, default=LOCAL,
                        help="where it trains: this GPU (local) or a remote service (fal, replicate)")
    parser.add_argument("--destination", default="", metavar="OWNER/MODEL",
                        help="replicate: your model that receives the trained LoRA")
    parser.add_argument("--dataset", help="dataset name (Datasets tab) or id")
    parser.add_argument("--base", help="base model: catalog id, diffusers repo id or local pipeline folder")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--preset", choices=list(PRESETS), help="GPU memory preset")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank)")
    parser.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--resolution", type=int, help="training side in pixels (images go to aspect buckets)")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adamw")
    parser.add_argument("--scheduler", choices=list(SCHEDULERS), default="constant", help="LR scheduler")
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--caption-dropout", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sample-prompt", action="append", default=[], help="repeatable")
    parser.add_argument("--sample-every", type=int, default=0, help="sample images every K steps (0: never)")
    parser.add_argument("--sample-steps", type=int, help="inference steps of each sample")
    parser.add_argument("--save-every", type=int, default=250, help="checkpoint every K steps (0: only at the end)")
    parser.add_argument("--keep-last", type=int, default=2, help="checkpoints kept")
    parser.add_argument("--train-text-encoder", action="store_true", help="also train text-encoder LoRA (SDXL)")
    parser.add_argument("--name", default="", help="LoRA file name (default: dataset-architecture-runN)")
    parser.add_argument("--push-to-hub", default="", metavar="REPO", help="upload to this private Hub repo")
    parser.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stopped or interrupted run")
    parser.add_argument("--gpus", type=int, default=1, help="data-parallel processes (accelerate launch)")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)  # a worker of a multi-GPU launch
    parser.set_defaults(handler=run)


def options_from(args: argparse.Namespace) -> TrainOptions:
    if not args.dataset or not args.base:
        raise InvalidInput("train needs --dataset and --base (or --resume RUN_ID).")
    return TrainOptions(
        dataset=args.dataset, base=args.base, steps=args.steps, preset=args.preset, lr=args.lr, rank=args.rank,
        alpha=args.alpha, batch_size=args.batch_size, grad_accum=args.grad_accum, resolution=args.resolution,
        optimizer=args.optimizer, scheduler=args.scheduler, warmup_steps=args.warmup_steps,
        caption_dropout=args.caption_dropout, seed=args.seed, sample_prompts=args.sample_prompt,
        sample_every=args.sample_every, sample_steps=args.sample_steps, save_every=args.save_every,
        keep_last=args.keep_last, train_text_encoder=args.train_text_encoder, name=args.name, gpus=args.gpus,
        push_to_hub=args.push_to_hub)


def run(args: argparse.Namespace) -> int:
    from masuka.training.runs import create_run, resume_run, submit_run

    studio = open_studio(args)
    if args.run:
        return _worker(studio, args.run)
    if args.resume:
        run_id = resume_run(studio, args.resume, submit=False)
    else:
        options = options_from(args)
        if args.backend != LOCAL:
            from masuka.training.backends.remote import price_line

            progress_line(args, price_line(args.backend, options.base, options.steps))
        run_id = create_run(studio, options, backend=args.backend, destination=args.destination)
    gpus = jobs.get(studio.store, run_id).params.get("gpus", 1)
    interrupt = _interrupt_on_signals()
    if gpus > 1:
        child = subprocess.Popen(_launch_command(args, run_id, gpus), start_new_session=True)
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


def _worker(studio, run_id: int) -> int:
    """One process of ``accelerate launch``: rank 0 owns the row through the job runner, the others just train."""
    from masuka.training.runs import RunContext, execute_run, submit_run

    interrupt = _interrupt_on_signals()
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
            str(port), "-m", "masuka", "train", "--run", str(run_id), *data_dir]


def _interrupt_on_signals() -> threading.Event:
    event = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: event.set())
    return event


def _forward(interrupt: threading.Event, child: subprocess.Popen) -> None:
    interrupt.wait()
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)


def _follow(studio, args: argparse.Namespace, run_id: int, exited, interrupt: threading.Event) -> dict:
    """Print new log lines and step progress until the run leaves queued/running (or its processes exit).

    A signal while the run still waits for the GPU marks it ``interrupted`` at once (there is nothing to save).
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
    emit(args, {"run": run_id, "status": status["status"], "lora": status["lora"], "steps": status["step"],
                "final_loss": status["final_loss"]},
         f"run {run_id} {status['status']}" + (f": {status['lora']}" if status["lora"] else ""))
    return 0 if status["status"] == "completed" else 1
