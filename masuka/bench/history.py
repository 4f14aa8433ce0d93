"""History queries on a generated 100,000-row store: first page, filtered page, full-text search, dashboard."""

from __future__ import annotations

import argparse
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from masuka.bench import timed
from masuka.cli import at_least
from masuka.video.catalog import REMOTE_PROVIDERS

WORDS = ("fox cat dog castle forest river neon city portrait watercolor snow desert robot dragon garden ocean "
         "sunset night rain mountain cyberpunk studio photo painting cinematic lighting red blue golden").split()
MODELS = ("flux-dev", "flux-schnell", "sdxl", "sd35-large")
STATUSES = ("completed",) * 8 + ("failed", "cancelled")
JOB_KINDS = ("train", "caption", "download")


def fill(store, rows: int = 100_000, owners: tuple[str, ...] = ("alice", "bob"), days: int = 365,
         seed: int = 0) -> None:
    """Bulk-insert ``rows`` rows: 95% generations (images and some videos), 5% jobs, spread over ``days``."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=days)
    step = timedelta(days=days) / rows

    def stamp(index: int) -> str:
        return (start + step * index).isoformat(timespec="milliseconds")

    generations, jobs = [], []
    for index in range(rows):
        owner, status, model = rng.choice(owners), rng.choice(STATUSES), rng.choice(MODELS)
        if index % 20 == 19:
            jobs.append({"owner": owner, "kind": rng.choice(JOB_KINDS), "status": status, "model": model,
                         "title": f"job {index}", "created_at": stamp(index), "started_at": stamp(index),
                         "finished_at": stamp(index + 1)})
            continue
        video = index % 10 == 3
        generations.append({
            "owner": owner, "kind": "video" if video else "image", "status": status, "model": model,
            "prompt": " ".join(rng.choices(WORDS, k=8)), "negative_prompt": "", "seed": index, "width": 1024,
            "height": 1024, "steps": 28, "guidance": 3.5, "created_at": stamp(index),
            "duration_s": round(rng.uniform(2, 40), 2), "provider": rng.choice(REMOTE_PROVIDERS) if video else None,
            "cost_usd": round(rng.uniform(0.1, 2), 2) if video else None,
            "loras": [{"name": f"style{index % 7}", "path": "", "weight": 0.8}] if index % 3 == 0 else [],
        })
    store.insert_many("generations", generations)
    store.insert_many("jobs", jobs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated store")
    parser.add_argument("--runs", type=at_least(1), default=5, help="timed repetitions of each query (median reported)")


def run(studio, args: argparse.Namespace) -> dict:
    from masuka.config import Config
    from masuka.history.browse import Filters, browse, dashboard
    from masuka.studio import Studio

    with tempfile.TemporaryDirectory() as tmp:
        config = Config.from_env(data_dir=Path(tmp) / "data", auth="alice:a,bob:b")
        bench = Studio.open(config)
        try:
            fill(bench.store, args.rows)
            queries = {
                "first_page": lambda: browse(bench, "alice", False),
                "first_page_admin": lambda: browse(bench, "admin", True),
                "filtered_page": lambda: browse(bench, "alice", False, Filters(kinds=["image"], model="sdxl",
                                                                               status="completed", lora="style3")),
                "date_range_page_5": lambda: browse(bench, "alice", False, Filters(since=_ago(60), until=_ago(30)),
                                                    page=5),
                "fts_search": lambda: browse(bench, "alice", False, Filters(text="neon dragon")),
                "dashboard_30_days": lambda: dashboard(bench, "alice", False, 30),
                "dashboard_all_time": lambda: dashboard(bench, "alice", False, None),
            }
            figures = {f"{name}_median_ms": round(timed(query, runs=args.runs)["median_s"] * 1000, 2)
                       for name, query in queries.items()}
        finally:
            bench.close()
    return {"rows": args.rows, **figures}


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()
