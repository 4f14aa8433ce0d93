"""Start-up: seconds from launching ``python app.py`` to its first HTTP 200, against a bare one-tab Gradio app
launched the same way in the same run."""

from __future__ import annotations

import argparse
import compileall
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from masuka.cli import at_least

ROOT = Path(__file__).resolve().parents[2]
BARE_APP = """
import sys
import gradio as gr
with gr.Blocks() as demo:
    with gr.Tab("One"):
        gr.Textbox()
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=at_least(1), default=5, help="launches of each app (median reported)")


def first_200(command: list[str], port: int, env: dict[str, str], timeout: float = 120) -> float:
    """Seconds from spawning ``command`` until ``http://127.0.0.1:port/`` answers 200."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.02)
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode} before serving")
        raise TimeoutError(f"{command} did not serve within {timeout}s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(studio, args: argparse.Namespace) -> dict:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    # both apps start from compiled bytecode, as any launch after the first does: pip compiled Gradio's when it
    # installed it, and MASUKA's is compiled here, since with PYTHONDONTWRITEBYTECODE set every launch would
    # compile all of MASUKA's modules again
    compileall.compile_dir(ROOT / "masuka", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_app.py"
        bare.write_text(BARE_APP)
        data = Path(tmp) / "data"
        bare_times, app_times = [], []
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
            bare_times.append(first_200([sys.executable, str(bare), str(port := _port())], port, env))
            app_times.append(first_200([sys.executable, "app.py", "--port", str(port := _port()),
                                        "--data-dir", str(data)], port, env))
    bare_s, app_s = statistics.median(bare_times), statistics.median(app_times)
    return {"bare_gradio_median_s": round(bare_s, 3), "masuka_median_s": round(app_s, 3),
            "ratio": round(app_s / bare_s, 3), "runs": args.runs}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
