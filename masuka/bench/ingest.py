"""Dataset ingest: seconds to validate, convert, resize, hash and record a batch of 12 MP JPEG photos.

Synthetic photos (smooth colour fields with sensor-like noise, 4000×3000) are written to a temporary folder
once, then ingested into a fresh dataset of a temporary data dir on every run: with one thread per core,
and with a single thread (runs interleaved) to show what the cores add.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from masuka.cli import at_least


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=200, help="photos per batch")
    parser.add_argument("--runs", type=at_least(1), default=3, help="timed ingests each way (medians reported)")
    parser.add_argument("--size", type=int, default=1024, help="dataset target size (longest side)")
    parser.add_argument("--megapixels", type=float, default=12.0, help="size of each synthetic photo")


def make_photo(path: Path, seed: int, megapixels: float) -> None:
    """A JPEG the size and weight of a phone photo: a smooth colour field, shapes and noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    field = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((width, height),
                                                                                    Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 40, width // 6))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    pixels = np.asarray(field, dtype=np.int16) + rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


def run(studio, args: argparse.Namespace) -> dict:
    from masuka.config import Config
    from masuka.datasets.adding import add_images, workers
    from masuka.datasets.library import create_dataset, delete_dataset
    from masuka.studio import Studio

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        paths = [photos / f"photo-{i:04d}.jpg" for i in range(args.images)]
        with ThreadPoolExecutor(workers()) as pool:
            list(pool.map(lambda i: make_photo(paths[i], i, args.megapixels), range(args.images)))
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        bench_studio = Studio.open(Config.from_env(data_dir=Path(tmp) / "data", auth=""))

        def ingest(threads: int, batch: list[Path] = paths) -> float:
            dataset = create_dataset(bench_studio, f"bench-{time.monotonic_ns()}", "bench", "sks",
                                     options={"size": args.size})
            start = time.perf_counter()
            report = add_images(bench_studio, dataset["id"], "bench", batch, threads=threads)
            seconds = time.perf_counter() - start
            delete_dataset(bench_studio, dataset["id"], "bench")
            if len(report.added) != len(batch):
                raise RuntimeError(f"ingest kept {len(report.added)} of {len(batch)}: {report.rejected.listed[:3]}")
            return seconds

        all_cores, one_thread = [], []
        try:
            ingest(workers(), paths[:4])  # warm-up: libraries load on first use
            for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
                all_cores.append(ingest(workers()))
                one_thread.append(ingest(1))
        finally:
            bench_studio.close()
    median, one = statistics.median(all_cores), statistics.median(one_thread)
    return {"images": args.images, "megapixels": args.megapixels, "batch_mb": round(megabytes),
            "threads": workers(), "median_s": round(median, 2), "min_s": round(min(all_cores), 2),
            "images_per_s": round(args.images / median, 1), "one_thread_median_s": round(one, 2),
            "speedup_vs_one_thread": round(one / median, 2), "runs": args.runs}
