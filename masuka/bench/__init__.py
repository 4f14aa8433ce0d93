"""``python -m masuka bench KIND``: figures measured on the user's own machine.

Each kind is a module ``masuka/bench/<kind>.py`` with ``add_arguments(parser)`` and
``run(studio, args) -> dict`` returning figures (medians, ratios, units in the key names), and optionally
``exit_status(figures) -> int`` (1 where a figure broke a regression bound). Results are kept in the
``bench_results`` table and shown in the Models tab.
"""

from __future__ import annotations

import functools
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

KINDS = ["startup", "load", "train", "history", "ingest", "image", "suite"]
#: Host memory a random-weight build needs beyond its weights: a share of them (pinned layers in flight, the
#: allocator's slack) and the process itself (torch, CUDA libraries), GiB.
HOST_MARGIN, HOST_BASE_GB = 1.15, 4.0


def latest_bench_results(studio: Any, limit: int = 200) -> list[dict]:
    """The newest result of each benchmark (kind, model, fast, memory plan, through the app or not), newest
    first, as rows: kind, machine, created_at, params and figures (dicts)."""
    seen: set[tuple] = set()
    latest = []
    for row in studio.store.find("bench_results", order_by="id desc", limit=limit):
        key = (row["kind"], (row["figures"] or {}).get("model"), (row["params"] or {}).get("fast"),
               (row["params"] or {}).get("memory_plan"), bool((row["params"] or {}).get("through_app")))
        if key not in seen:
            seen.add(key)
            latest.append(row)
    return latest


@functools.cache
def host_need_gb(model_id: str, bytes_per_weight: int = 2) -> float:
    """Host GiB catalog model ``model_id``'s random-weight build needs: its weights at ``bytes_per_weight``
    (counted on the meta device), with :data:`HOST_MARGIN` and :data:`HOST_BASE_GB`."""
    import torch

    from masuka.models.synthetic import real_pipeline

    modules = [part for part in real_pipeline(model_id, "meta").components.values()
               if isinstance(part, torch.nn.Module)]
    count = sum(tensor.numel() for module in modules for tensor in (*module.parameters(), *module.buffers()))
    return count * bytes_per_weight / 2**30 * HOST_MARGIN + HOST_BASE_GB


def available_host_gb() -> float:
    """GiB of host memory available now."""
    import psutil  # an accelerate dependency

    return psutil.virtual_memory().available / 2**30


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
