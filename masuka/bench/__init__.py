"""``python -m masuka bench KIND``: figures measured on the user's own machine.

Each kind is a module ``masuka/bench/<kind>.py`` with ``add_arguments(parser)`` and
``run(studio, args) -> dict`` returning figures (medians, ratios, units in the key names). Results are kept
in the ``bench_results`` table and shown in the Models tab.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

KINDS = ["startup", "load", "train", "history", "ingest", "image", "suite"]


def latest_bench_results(studio: Any, limit: int = 200) -> list[dict]:
    """The newest result of each benchmark (kind and model), newest first, as rows: kind, machine,
    created_at, params and figures (dicts)."""
    seen: set[tuple] = set()
    latest = []
    for row in studio.store.find("bench_results", order_by="id desc", limit=limit):
        key = (row["kind"], (row["figures"] or {}).get("model"), (row["params"] or {}).get("fast"),
               (row["params"] or {}).get("memory_plan"))
        if key not in seen:
            seen.add(key)
            latest.append(row)
    return latest


def machine() -> str:
    """One line naming the CPU/GPU the figures were taken on."""
    description = f"{platform.machine()} {platform.processor() or platform.system()}, {_cores()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            description += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return description


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def timed(func: Callable[[], object], runs: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median, min and max seconds of ``func`` over ``runs`` after ``warmup`` calls."""
    for _ in range(warmup):
        func()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "runs": runs}
