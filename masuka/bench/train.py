"""Training: seconds per step and peak memory of a real run, against a bare diffusers + peft step on the same model.

The run is a real one (dataset rows, job row, metrics written per step) in a temporary data dir; its speed is
the median wall-clock time between step records, so stop checks and metric writes count. The bare step is the
same loss on the same peft LoRA with torch AdamW and nothing else: no accelerate, batching, reporting or store.
Rounds of bare steps and runs alternate so that changes in machine load hit both alike; medians over all
rounds are reported.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from masuka.cli import at_least
from masuka.models.synthetic import TINY_ARCHITECTURES

WARMUP_STEPS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny-flux",
                        help="tiny-<architecture> (tiny-flux, tiny-sdxl, tiny-z_image, …), or a catalog id / repo id / "
                             "pipeline folder")
    parser.add_argument("--resolution", type=int, help="default: 64 for tiny models, else the preset's")
    parser.add_argument("--preset", help="GPU memory preset (12gb, 16gb, 24gb, 40gb)")
    parser.add_argument("--steps", type=at_least(WARMUP_STEPS + 2), default=30,
                        help=f"training steps a run, at least {WARMUP_STEPS + 2} ({WARMUP_STEPS} warm-up steps)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rounds", type=at_least(1), default=3, help="alternating rounds of bare steps and a run")


def run(studio, args: argparse.Namespace) -> dict:
    import torch

    from masuka.config import Config
    from masuka.models.synthetic import save_tiny_pipeline
    from masuka.studio import Studio
    from masuka.training.options import TrainOptions
    from masuka.training.runs import check_training, run_status, start_training

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        tiny = model.removeprefix("tiny-") if model.removeprefix("tiny-") in TINY_ARCHITECTURES else None
        if tiny:
            model = str(save_tiny_pipeline(tiny, Path(tmp) / "model"))
        resolution = args.resolution or (64 if tiny else None)
        bench_studio = Studio.open(Config.from_env(data_dir=Path(tmp) / "data", auth=""))
        _dataset(bench_studio, args.images, resolution or 512)
        options = TrainOptions(dataset="bench", base=model, steps=args.steps, rank=args.rank, resolution=resolution,
                               preset=args.preset, save_every=0, caption_dropout=0.0)
        resolution_used = check_training(bench_studio, options)[0].resolution
        loop_times, bare_times, metrics = [], [], []
        for _round in range(args.rounds):  # alternated, so changes in machine load hit both alike
            bare_times += _bare_step_times(bench_studio, options, runs=args.steps - WARMUP_STEPS)
            run_id = start_training(bench_studio, options)
            bench_studio.runner().wait(run_id)
            status = run_status(bench_studio, run_id)
            if status["status"] != "completed":
                raise RuntimeError(f"the benchmark run {status['status']}: {status['error']}")
            metrics = bench_studio.store.find("job_metrics", "job_id = ?", [run_id], order_by="step")
            stamps = [datetime.fromisoformat(m["at"]) for m in metrics][WARMUP_STEPS:]
            loop_times += [(b - a).total_seconds() for a, b in pairwise(stamps)]
        bench_studio.close()
    loop_s, bare_s = statistics.median(loop_times), statistics.median(bare_times)
    figures = {"loop_s_per_step": round(loop_s, 4), "bare_s_per_step": round(bare_s, 4),
               "overhead_pct": round(100 * (loop_s / bare_s - 1), 1), "steps": args.steps, "rounds": args.rounds,
               "resolution": resolution_used, "final_loss": round(status["final_loss"], 4)}
    if torch.cuda.is_available():
        figures["peak_vram_gb"] = round(max(m["vram_gb"] or 0 for m in metrics), 2)
    figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return figures


def _dataset(studio, images: int, side: int) -> None:
    """A dataset of generated images, recorded as the Datasets tab records one."""
    import numpy as np
    from PIL import Image

    dataset_id = studio.store.insert("datasets", {"name": "bench", "trigger": "zxq", "template": "", "options": {}})
    folder = studio.config.datasets_dir / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(images):
        path = folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
        studio.store.insert("dataset_images", {"dataset_id": dataset_id, "processed_path": studio.config.relative(path),
                                               "caption": f"zxq, picture {index}"})


def _bare_step_times(studio, options, runs: int) -> list[float]:
    """Seconds of plain forward + backward + AdamW steps with peft LoRA on the same model, loss and data."""
    import torch
    from diffusers import DiffusionPipeline
    from peft import LoraConfig

    from masuka.gpu import device_plan
    from masuka.training.architectures import trainer_for
    from masuka.training.data import load_pixels
    from masuka.training.runs import check_training

    filled, spec, architecture, data = check_training(studio, options)
    where = device_plan()
    pipe = DiffusionPipeline.from_pretrained(spec.source, dtype=where.dtype, use_safetensors=True).to(where.device)
    pipe.set_progress_bar_config(disable=True)
    arch = trainer_for(architecture)(pipe, filled, spec.max_sequence_length)
    path, caption = data.items[0]
    with torch.no_grad():
        pixels, original = load_pixels(path, filled.resolution, arch.size_multiple)
        latents = arch.encode_image(pipe, pixels.to(where.device, where.dtype))
        text = arch.encode_text(pipe, [caption], where.device)
    model = getattr(pipe, arch.model_attr)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=filled.rank, lora_alpha=filled.alpha, init_lora_weights="gaussian",
                                 target_modules=arch.target_modules))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=filled.lr)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = arch.loss(model, latents, text, [original], generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if where.device == "cuda":
            torch.cuda.synchronize()

    samples = []
    for _ in range(WARMUP_STEPS):
        step()
    for _ in range(runs):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return samples
