"""Load: concurrent ``gradio_client`` users on loopback against a live app with a tiny model; every request
completes or is refused with a clear queue-full message, GPU jobs never overlap, memory stays flat."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REFUSAL = "Queue is full"
WARMUP_SEED = 10**9
#: each simulated user's HTTP settings: twenty clients asking for the API description at once (about 0.3 MB each)
#: can take longer than httpx's 5 s default on a busy two-core machine, which is load, not a refusal
CLIENT_HTTP = {"timeout": 60.0}


@dataclass
class Outcome:
    user: int
    seed: int
    latency_s: float
    ok: bool
    message: str = ""


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    video_jobs: list[int] = field(default_factory=list)
    video_refusals: list[str] = field(default_factory=list)

    def figures(self, rows: list[dict]) -> dict:
        served = [o for o in self.outcomes if o.ok]
        latencies = sorted(o.latency_s for o in served)
        rows = [r for r in rows if r["seed"] != WARMUP_SEED]
        by_seed = {r["seed"]: r for r in rows if r["kind"] == "image"}
        waits = [o.latency_s - (by_seed[o.seed]["duration_s"] or 0) for o in served if o.seed in by_seed]
        return {
            "requests": len(self.outcomes), "served": len(served),
            "refused_queue_full": sum(REFUSAL in o.message for o in self.outcomes),
            "other_errors": sum(not o.ok and REFUSAL not in o.message for o in self.outcomes),
            "p50_latency_s": round(_percentile(latencies, 50), 3),
            "p95_latency_s": round(_percentile(latencies, 95), 3),
            "p50_queue_wait_s": round(_percentile(sorted(waits), 50), 3),
            "p95_queue_wait_s": round(_percentile(sorted(waits), 95), 3),
            "history_rows_completed": sum(r["status"] == "completed" for r in rows if r["kind"] == "image"),
            "video_jobs_started": len(self.video_jobs), "video_refusals": len(self.video_refusals),
            "gpu_overlaps": count_overlaps(rows),
            "rss_start_mb": round(self.rss_mb[0], 1) if self.rss_mb else None,
            "rss_mid_mb": round(self.rss_mb[len(self.rss_mb) // 2], 1) if self.rss_mb else None,
            "rss_end_mb": round(self.rss_mb[-1], 1) if self.rss_mb else None,
        }


def count_overlaps(rows: list[dict]) -> int:
    """Pairs of GPU jobs whose recorded [started_at, finished_at] intervals overlap."""
    spans = sorted((_ts(r["started_at"]), _ts(r["finished_at"])) for r in rows
                   if r.get("kind", "image") == "image" and r["started_at"] and r["finished_at"])
    return sum(1 for (_, end), (start, _) in zip(spans, spans[1:]) if start < end)


def drive(url: str, model: str, users: int, requests_per_user: int, steps: int = 1, size: int = 64,
          auth: tuple[str, str] | None = None, duration_s: float | None = None,
          video: tuple[str, str] | None = None, server_pid: int | None = None) -> LoadReport:
    """Each user submits its requests one after another (distinct seeds); all users run at once.

    With ``video`` (provider, model) each user first starts one remote video job, which runs in the
    background while its image requests are served. Memory is sampled from ``server_pid`` (default: this
    process, when the app runs in it).
    """
    from gradio_client import Client

    report = LoadReport()
    lock = threading.Lock()
    stop_at = None if duration_s is None else time.monotonic() + duration_s

    def user(index: int) -> None:
        client = Client(url, auth=auth, verbose=False, httpx_kwargs=CLIENT_HTTP)
        if video:
            try:
                job_id, _message = client.predict(f"user {index} video", video[0], video[1], 4, "1280x720", None,
                                                  "", [], api_name="/generate_video")
                with lock:
                    report.video_jobs.append(int(job_id))
            except Exception as error:  # recorded and judged by the caller
                with lock:
                    report.video_refusals.append(str(error))
        for n in range(requests_per_user):
            if stop_at is not None and time.monotonic() > stop_at:
                return
            seed = index * 100_000 + n
            start = time.perf_counter()
            try:
                client.predict(prompt=f"user {index} request {n}", model=model, negative_prompt="", steps=steps,
                               guidance=1.0, width=size, height=size, seed=seed, batch=1, loras=[],
                               api_name="/generate_image")
                outcome = Outcome(index, seed, time.perf_counter() - start, True)
            except Exception as error:  # every failure is recorded and judged by the caller
                outcome = Outcome(index, seed, time.perf_counter() - start, False, str(error))
            with lock:
                report.outcomes.append(outcome)

    # warm-up: the model loads before memory is sampled
    Client(url, auth=auth, verbose=False, httpx_kwargs=CLIENT_HTTP).predict(
        prompt="warm-up", model=model, negative_prompt="", steps=steps, guidance=1.0, width=size, height=size,
        seed=WARMUP_SEED, batch=1, loras=[], api_name="/generate_image")
    sampler_done = threading.Event()

    def sample_memory() -> None:
        while not sampler_done.wait(0.5):
            report.rss_mb.append(_rss_mb(server_pid))

    report.rss_mb.append(_rss_mb(server_pid))
    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sampler_done.set()
    report.rss_mb.append(_rss_mb(server_pid))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=15, help="requests per user (bounded)")
    parser.add_argument("--minutes", type=float, default=5.0, help="stop submitting after this long")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)


def run(studio, args: argparse.Namespace) -> dict:
    """The app runs as its own process (``python app.py``), so its memory is measured apart from the clients."""
    import os
    import subprocess
    import sys

    from masuka.keys import service
    from masuka.models.synthetic import save_tiny_pipeline
    from masuka.store import Store
    from masuka.testing.video import KEY, FakeProvider, make_mp4

    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_pipeline("flux", Path(tmp) / "tiny-flux")
        provider = FakeProvider("openai", make_mp4(Path(tmp) / "clip.mp4").read_bytes())
        port, data = _free_port(), Path(tmp) / "data"
        openai = service("openai")
        env = {**os.environ, openai.base_url_env: provider.base, openai.key_env[0]: KEY,
               "MASUKA_QUEUE_SIZE": str(args.queue_size), "MASUKA_AUTH": ""}
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", str(data)], cwd=root,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_serving(url)
            report = drive(url, str(model), args.users, args.requests, steps=args.steps,
                           duration_s=args.minutes * 60, video=("openai", "sora-2"), server_pid=app.pid)
            store = Store(data / "masuka.db")
            finished = wait_for_jobs(store, report.video_jobs, timeout=300)
            rows = store.find("generations", order_by="id")
            store.close()
        finally:
            app.terminate()
            app.wait(timeout=60)
            provider.close()
    return {"users": args.users, **report.figures(rows), "video_jobs_completed": finished,
            "video_create_requests": provider.creates}


def _wait_until_serving(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_jobs(store, job_ids: list[int], timeout: float) -> int:
    """Wait until the given jobs leave queued/running; returns how many completed."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        rows = [store.get("jobs", job_id) for job_id in job_ids]
        if all(row["status"] not in ("queued", "running") for row in rows):
            break
        pause.wait(0.1)
    return sum(store.get("jobs", job_id)["status"] == "completed" for job_id in job_ids)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _rss_mb(pid: int | None = None) -> float:
    import resource

    with open(f"/proc/{pid or 'self'}/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
